"""The FastAPI application factory: ``create_app(settings) -> FastAPI``.

Routes live in :mod:`cavra.api.routes`; each parses input, calls one service function and renders the
answer. The factory loads the connector config (an explicit file that cannot load is an error at once),
installs the request envelope (:mod:`cavra.api.middleware`) and the error handlers, and ties the runtime's
resources to the application lifespan: on shutdown it waits for in-flight deliveries, then closes the
transport and the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cavra import __version__
from cavra.api.deps import Runtime
from cavra.api.errors import install_error_handlers
from cavra.api.middleware import RequestContext
from cavra.api.routes import destinations, health, history, integrations, queue, release
from cavra.api.schemas import ErrorOut
from cavra.api.settings import ApiSettings
from cavra.console import routes as console

DESCRIPTION = """
Deliver CAVRA governance evidence to SIEM, ChatOps, ITSM and endpoint-management providers, and review the
redacted, persisted proof of every delivery (`cavra.connector.delivery.v1`).

**Access.** Send `Authorization: Bearer <token>`. Roles: `auditor` reads history, dashboards and evidence;
`operator` also delivers and publishes; `admin` also manages integrations and configuration. With no
tokens configured the server runs in protected mode: it answers loopback clients only, without tokens.

**Errors.** Every error answer is `{"error", "detail", "request_id"}`.
"""

TAGS = [
    {
        "name": "integrations",
        "description": "Integration records and deliveries through them (admin, operator).",
    },
    {
        "name": "destinations",
        "description": "The configured destinations, their health, and test deliveries (auditor, admin).",
    },
    {"name": "release", "description": "Release records and their connector deliveries (operator)."},
    {"name": "history", "description": "Delivery history, dashboards and evidence (auditor)."},
    {"name": "service", "description": "Health, readiness and the loaded configuration."},
]


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the application. Raises ConfigError when an explicit connector config cannot load."""
    cfg = settings or ApiSettings()
    runtime = Runtime(cfg)
    runtime.load_config()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.closing = False
        await runtime.startup()
        try:
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="CAVRA Connectors",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        responses={422: {"model": ErrorOut, "description": "Invalid JSON or fields (the detail names them)"}},
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(
        RequestContext, max_body_bytes=cfg.max_body_bytes, protected_mode=cfg.tokens.protected_mode
    )
    for module in (integrations, destinations, release, history, queue, health, console):
        app.include_router(module.router)
    return app
