"""The ``cavra`` command line."""
