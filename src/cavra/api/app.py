"""The FastAPI application factory: ``create_app(settings) -> FastAPI``.

Routes live in :mod:`cavra.api.routes`; each parses input, calls one service function and renders the
answer. The factory loads the connector config (an explicit file that cannot load is an error at once),
installs the request envelope (:mod:`cavra.api.middleware`) and the error handlers, and ties the runtime's
resources to the application lifespan: on shutdown it waits for in-flight deliveries, then closes the
transport and the store. The OpenAPI document states the answers the envelope may give to any request
(421 for a ``Host`` that is not served) and to any state-changing one (403 cross-site, 415 not JSON).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from cavra import __version__
from cavra.api.deps import Runtime
from cavra.api.errors import install_error_handlers
from cavra.api.guards import REQUEST_HEADER, STATE_CHANGING
from cavra.api.middleware import RequestContext
from cavra.api.routes import destinations, events, health, history, integrations, operate, queue, release
from cavra.api.schemas import ErrorOut
from cavra.api.settings import ApiSettings
from cavra.console import routes as console
from cavra.console.access import Sessions

DESCRIPTION = """
Deliver CAVRA governance evidence to SIEM, ChatOps, ITSM and endpoint-management providers, and review the
redacted, persisted proof of every delivery (`cavra.connector.delivery.v1`).

**Access.** Send `Authorization: Bearer <token>`. Roles: `auditor` reads history, dashboards and evidence;
`operator` also delivers and publishes; `admin` also manages integrations and configuration. With no
tokens configured the server runs in protected mode: it answers loopback clients only, without tokens.

**Browsers.** A loopback server (and any server given `--allowed-host`) answers only loopback `Host` names
and the allowed ones (421 otherwise). `POST`, `PUT`, `PATCH` and `DELETE` requests must not look like ones
a page on another site can send: a body must be `application/json` (415); in protected mode a request
without a body must send `Content-Type: application/json` or `X-CAVRA-Request: 1` (403); an `Origin` of
another site is refused (403).

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
    {
        "name": "events",
        "description": "Publish events through the routes; test the routes without sending (operator).",
    },
    {"name": "history", "description": "Delivery history, dashboards and evidence (auditor)."},
    {
        "name": "operations",
        "description": "Pause and resume a destination, acknowledge an alert; each audited (operator).",
    },
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
    app.state.console_sessions = Sessions()
    install_error_handlers(app)
    app.add_middleware(
        RequestContext,
        max_body_bytes=cfg.max_body_bytes,
        protected_mode=cfg.tokens.protected_mode,
        allowed_hosts=cfg.checked_hosts,
    )
    # a missing or extra trailing slash is redirected by the 404 handler, with a relative Location
    app.router.redirect_slashes = False
    for module in (integrations, destinations, operate, release, events, history, queue, health, console):
        app.include_router(module.router)
    _document_envelope(app, host_check=cfg.checked_hosts is not None)
    return app


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }


def _document_envelope(app: FastAPI, *, host_check: bool) -> None:
    """Add the envelope's own answers to every operation of the OpenAPI document (once, when built)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        for item in spec.get("paths", {}).values():
            for method, op in item.items():
                answers = op.setdefault("responses", {})
                if host_check:
                    answers.setdefault("421", _error("The Host is neither loopback nor allowed"))
                if method.upper() in STATE_CHANGING:
                    answers.setdefault(
                        "403",
                        _error(
                            "Refused: an Origin of another site, or no body and neither "
                            f"Content-Type: application/json, Authorization nor {REQUEST_HEADER}"
                        ),
                    )
                    answers.setdefault("415", _error("The body is not JSON"))
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
