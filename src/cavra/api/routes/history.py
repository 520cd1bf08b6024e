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

from cavra.api.deps import AuditorDep, StoreDep
from cavra.api.schemas import Dashboard, DeliveryRecordOut, HistoryPage, error_responses
from cavra.errors import NotFoundError
from cavra.governance import service as governance

router = APIRouter(tags=["history"], dependencies=[AuditorDep])

_ERRORS = error_responses(401, 403, 422, 503)

Provider = Annotated[str | None, Query(max_length=200, description="a provider name")]
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
    found = store.get_delivery(delivery_id)
    if found is None:
        raise NotFoundError(f"delivery {delivery_id!r} not found")
    return found
