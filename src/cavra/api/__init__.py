"""The HTTP API: a thin FastAPI face over the service layer (``cavra serve``)."""
