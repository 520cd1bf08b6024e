"""Connectors: pure translators from (event, settings, context) to HTTP requests and verdicts."""
