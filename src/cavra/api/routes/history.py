"""Delivery history, dashboards and evidence (role: auditor).

``GET /release-connector-deliveries``, ``GET /endpoint-management-publications`` and
``GET /integration-deliveries`` (SIEM and ChatOps deliveries through ``/integrations``) page through provider
deliveries, newest first (``limit`` and the opaque ``cursor`` of the previous page's ``next_cursor``);
their ``/dashboard`` routes summarise them with alerts. ``GET /deliveries/{id}`` is one stored delivery
record with every attempt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cavra.api.checked import CheckedRoute
from cavra.api.deps import AuditorDep, Principal, StoreDep, require
from cavra.api.schemas import Dashboard, DeliveryRecordOut, HistoryPage, error_responses
from cavra.governance import service as governance

router = APIRouter(tags=["history"], dependencies=[AuditorDep], route_class=CheckedRoute)
OperatorAuth = Annotated[Principal, Depends(require("operator"))]

_ERRORS = error_responses(401, 403, 422, 503)

Provider = Annotated[str | None, Query(max_length=200, description="a provider (the type: slack)")]
Destination = Annotated[
    str | None, Query(max_length=200, description="a destination's name (slack-release; default ones: slack)")
]
Success = Annotated[bool | None, Query(description="true: delivered; false: not delivered")]
EventType = Annotated[str | None, Query(max_length=200, description="the event type")]
Since = Annotated[datetime | None, Query(description="ISO 8601 time (UTC if no offset); at or after it")]
Until = Annotated[datetime | None, Query(description="ISO 8601 time (UTC if no offset); before it")]
EventId = Annotated[str | None, Query(max_length=200, description="the event id")]
Status = Annotated[Literal["delivered", "failed", "pending"] | None, Query(description="delivery status")]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]


@dataclass(frozen=True)
class HistoryQuery:
    """The history filters, shared by both history routes (empty values mean "any")."""

    provider: Provider = None
    destination: Destination = None
    success: Success = None
    event_type: EventType = None
    event_id: EventId = None
    status: Status = None
    since: Since = None
    until: Until = None
    limit: Limit = 50
    cursor: Cursor = None

    def filters(self) -> dict[str, Any]:
        given = {k: (v or None) if isinstance(v, str) else v for k, v in asdict(self).items()}
        return {k: v for k, v in given.items() if v is not None}


QueryDep = Annotated[HistoryQuery, Depends()]


@router.get(
    "/release-connector-deliveries",
    response_model=HistoryPage,
    responses=_ERRORS,
    summary="Release connector delivery history",
)
def release_history(store: StoreDep, query: QueryDep) -> dict[str, Any]:
    """Deliveries indexed as ``metadata_kind=release-connector-delivery``, newest first."""
    return governance.connector_delivery_history(store, **query.filters())


@router.get(
    "/release-connector-deliveries/dashboard",
    response_model=Dashboard,
    responses=_ERRORS,
    summary="Release connector delivery dashboard and alerts",
)
def release_dashboard(store: StoreDep) -> dict[str, Any]:
    return governance.connector_delivery_dashboard(store)


@router.get(
    "/endpoint-management-publications",
    response_model=HistoryPage,
    responses=_ERRORS,
    summary="Endpoint-management publication history",
)
def publication_history(store: StoreDep, query: QueryDep) -> dict[str, Any]:
    """Publication deliveries of endpoint-management exports, newest first."""
    return governance.endpoint_publication_history(store, **query.filters())


@router.get(
    "/endpoint-management-publications/dashboard",
    response_model=Dashboard,
    responses=_ERRORS,
    summary="Endpoint-management publication dashboard and alerts",
)
def publication_dashboard(store: StoreDep) -> dict[str, Any]:
    return governance.endpoint_publication_dashboard(store)


@router.get(
    "/integration-deliveries",
    response_model=HistoryPage,
    responses=_ERRORS,
    summary="Integration (SIEM and ChatOps) delivery history",
)
def integration_history(store: StoreDep, query: QueryDep) -> dict[str, Any]:
    """Deliveries made through ``/integrations/{id}/deliver`` (``metadata_kind=integration-delivery``),
    newest first."""
    return governance.integration_delivery_history(store, **query.filters())


@router.get(
    "/integration-deliveries/dashboard",
    response_model=Dashboard,
    responses=_ERRORS,
    summary="Integration delivery dashboard and alerts",
)
def integration_dashboard(store: StoreDep) -> dict[str, Any]:
    return governance.integration_delivery_dashboard(store)


@router.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryRecordOut,
    responses=error_responses(401, 403, 404, 503),
    summary="One stored delivery record with its attempts",
)
def get_delivery(
    delivery_id: Annotated[str, Path(min_length=1, max_length=128)], store: StoreDep
) -> dict[str, Any]:
    return governance.get_delivery(store, delivery_id)


class ReplayIn(BaseModel):
    """Which finished jobs to replay: the history's filters and a time window (of the jobs' creation)."""

    model_config = ConfigDict(extra="forbid")

    since: datetime = Field(description="ISO 8601 (UTC if no offset): jobs created at or after it")
    until: datetime | None = Field(default=None, description="jobs created before it (default: now)")
    states: list[Literal["failed", "dead"]] = Field(
        default=["failed", "dead"], min_length=1, description="which finished jobs"
    )
    provider: str | None = Field(default=None, max_length=200)
    metadata_kind: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=1000, ge=1, le=1000)
    dry_run: bool = Field(default=False, description="count what would be queued; queue nothing")


class ReplayOut(BaseModel):
    matched: int
    queued: int
    already_replayed: int
    dry_run: bool
    items: list[dict[str, Any]]


@router.post(
    "/deliveries/replay",
    response_model=ReplayOut,
    responses=error_responses(401, 403, 422, 503),
    summary="Replay every failed (or dead) delivery job in a time window, each once",
)
def replay_deliveries(body: ReplayIn, store: StoreDep, auth: OperatorAuth) -> dict[str, Any]:
    """Queues a new job (``replay_of`` = the record) for each finished job matching the filters; answers
    how many it queued. Recorded in the audit trail (``/console/audit``). Role: operator."""
    result = governance.replay_failed(
        store,
        states=tuple(dict.fromkeys(body.states)),
        provider=body.provider,
        metadata_kind=body.metadata_kind,
        since=body.since,
        until=body.until,
        limit=body.limit,
        dry_run=body.dry_run,
    )
    governance.record_action(
        store,
        who=auth.name,
        role=auth.role,
        action="replay_failed",
        target=body.provider or "every provider",
        outcome="done" if not body.dry_run else "dry run",
        detail={**body.model_dump(mode="json"), "queued": result["queued"], "matched": result["matched"]},
    )
    return result
