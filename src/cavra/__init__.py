"""CAVRA Connectors: deliver governance evidence to the systems where people work, and prove it."""

__version__ = "0.1.0"
PRODUCT = "cavra-connectors"
