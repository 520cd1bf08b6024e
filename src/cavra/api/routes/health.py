"""Liveness, readiness and the loaded connector configuration.

``/healthz`` and ``/readyz`` need no token (probes), though protected mode still answers loopback only.
``GET /connectors`` shows what the connector config holds, never a secret (auditor);
``POST /connectors/reload`` re-reads the file and the environment (admin).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cavra import __version__
from cavra.api.checked import CheckedRoute
from cavra.api.deps import AdminDep, AuditorDep, Runtime, RuntimeDep
from cavra.api.errors import error_response
from cavra.api.schemas import ConnectorStatus, ErrorOut, Health, Readiness, error_responses
from cavra.app import iso_millis
from cavra.errors import CavraError

router = APIRouter(tags=["service"], route_class=CheckedRoute)


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}


def _probe_store(runtime: Runtime) -> None:
    runtime.service.probe_store()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": ErrorOut, "description": "The store is not reachable"}},
    summary="Readiness: the store answers",
)
async def readyz(request: Request, runtime: RuntimeDep) -> Any:
    checks: dict[str, str] = {}
    try:
        await asyncio.to_thread(_probe_store, runtime)
        checks["store"] = "ok"
    except CavraError as exc:
        return error_response(request, 503, "not_ready", f"store: {exc}")
    except Exception as exc:
        return error_response(request, 503, "not_ready", f"store: {type(exc).__name__}")
    checks["connectors"] = "ok" if runtime.config is not None else "not configured"
    if runtime.closing:
        return error_response(request, 503, "not_ready", "the server is shutting down")
    return {"status": "ready", "checks": checks}


def _status(runtime: Runtime) -> dict[str, Any]:
    loaded = runtime.config
    if loaded is None:
        return {"source": None, "providers": {}, "errors": {}, "loaded_at": None}
    return {
        "source": loaded.source,
        "providers": {name: t.category for name, t in loaded.targets.items()},
        "errors": {name: runtime.redactor.scrub(msg) for name, msg in loaded.errors.items()},
        "loaded_at": iso_millis(runtime.loaded_at) if runtime.loaded_at else None,
    }


@router.get(
    "/connectors",
    response_model=ConnectorStatus,
    dependencies=[AuditorDep],
    responses=error_responses(401, 403),
    summary="The loaded connector configuration (no secrets)",
)
async def connectors(runtime: RuntimeDep) -> dict[str, Any]:
    return _status(runtime)


@router.post(
    "/connectors/reload",
    response_model=ConnectorStatus,
    dependencies=[AdminDep],
    responses=error_responses(401, 403, 422),
    summary="Re-read the connector config file and its environment variables",
)
async def reload_connectors(runtime: RuntimeDep) -> JSONResponse | dict[str, Any]:
    """A file that cannot load leaves the previous config in place and answers 422. Role: admin."""
    await asyncio.to_thread(runtime.load_config)
    return _status(runtime)
