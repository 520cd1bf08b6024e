"""Operator actions over HTTP: pause and resume a destination, acknowledge (silence) an alert.

``POST /destinations/{name}/pause`` holds the destination's deliveries (its jobs wait in the queue; no
worker claims them) until ``until`` or, without it, until ``POST /destinations/{name}/resume``. ``GET
/destinations`` and ``GET /jobs`` show the pause. ``POST /alerts/acknowledge`` silences an alert (by
its ``key``, from any dashboard's ``alerts[]``) for some hours; every dashboard then shows
``acknowledged_by``, ``acknowledged_at`` and ``acknowledged_until``. Each is recorded in the audit trail
(``/console/audit``) with the token's name. Role: operator.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from cavra.api.checked import CheckedRoute
from cavra.api.deps import Principal, RuntimeDep, require
from cavra.api.schemas import error_responses
from cavra.errors import CavraError
from cavra.governance import service as governance

router = APIRouter(tags=["operations"], route_class=CheckedRoute)

OperatorAuth = Annotated[Principal, Depends(require("operator"))]
DestinationName = Annotated[str, Path(min_length=1, max_length=63, description="the destination's name")]


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: datetime | None = Field(
        default=None, description="ISO 8601 (UTC if no offset), at most 7 days ahead; none: until resumed"
    )


class PauseOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    destination: str
    paused: bool
    pause: dict[str, Any] | None = Field(default=None, description="by, at, until (null: until resumed)")


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=600, description="the alert's key (from a dashboard)")
    hours: float = Field(default=4, gt=0, le=168, description="how long it stays silenced")


class AcknowledgeOut(BaseModel):
    key: str
    who: str
    at: str
    until: str


async def _audited(
    runtime: Any, auth: Principal, action: str, target: str, detail: dict[str, Any], work: Any
) -> dict[str, Any]:
    """Run ``work(store)`` off the event loop and record it (done, or refused with the error)."""
    store = await runtime.astore()

    def run() -> dict[str, Any]:
        try:
            result: dict[str, Any] = work(store)
        except CavraError as exc:
            governance.record_action(
                store,
                who=auth.name,
                role=auth.role,
                action=action,
                target=target,
                outcome=f"refused: {exc}",
                detail=detail,
            )
            raise
        governance.record_action(
            store,
            who=auth.name,
            role=auth.role,
            action=action,
            target=target,
            outcome="done",
            detail={**detail, "result": result},
        )
        return result

    return await asyncio.to_thread(run)


@router.post(
    "/destinations/{name}/pause",
    response_model=PauseOut,
    responses=error_responses(401, 403, 422, 503),
    summary="Pause a destination: its jobs wait until it is resumed (or until a time)",
)
async def pause(
    name: DestinationName, runtime: RuntimeDep, auth: OperatorAuth, body: PauseIn | None = None
) -> dict[str, Any]:
    """An operator's pause, its own state apart from the provider's Retry-After and the breaker; queued
    jobs stay queued. Recorded in the audit trail. Role: operator."""
    until = None if body is None else body.until
    detail = {"until": None if until is None else until.isoformat()}
    return await _audited(
        runtime,
        auth,
        "pause_destination",
        name,
        detail,
        lambda store: governance.pause_destination(store, name, who=auth.name, until=until),
    )


@router.post(
    "/destinations/{name}/resume",
    response_model=PauseOut,
    responses=error_responses(401, 403, 422, 503),
    summary="Resume a paused destination: its queued jobs run again",
)
async def resume(name: DestinationName, runtime: RuntimeDep, auth: OperatorAuth) -> dict[str, Any]:
    """Ends an operator's pause (``was_paused`` says whether one lasted). Recorded in the audit trail.
    Role: operator."""
    return await _audited(
        runtime,
        auth,
        "resume_destination",
        name,
        {},
        lambda store: governance.resume_destination(store, name),
    )


@router.post(
    "/alerts/acknowledge",
    response_model=AcknowledgeOut,
    responses=error_responses(401, 403, 422, 503),
    summary="Acknowledge (silence) a dashboard alert for some hours",
)
async def acknowledge(body: AcknowledgeIn, runtime: RuntimeDep, auth: OperatorAuth) -> dict[str, Any]:
    """The alert stays listed (its condition has not cleared) with ``acknowledged_by``, ``_at`` and
    ``_until`` on every dashboard. Recorded in the audit trail. Role: operator."""
    until = datetime.now(UTC) + timedelta(hours=body.hours)
    return await _audited(
        runtime,
        auth,
        "silence_alert",
        body.key,
        {"hours": body.hours},
        lambda store: governance.silence_alert(store, body.key, who=auth.name, until=until),
    )
