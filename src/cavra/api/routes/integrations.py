"""``/integrations``: register, list, read and delete integrations (admin; reads: auditor), and deliver an
event through an active one (operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from cavra.api.checked import CheckedRoute
from cavra.api.deps import AdminDep, AuditorDep, OperatorDep, RuntimeDep, StoreDep
from cavra.api.routes.queue import ACCEPTED_RESPONSE, IdempotencyKey, accepted_answer
from cavra.api.schemas import (
    Deleted,
    DeliverIn,
    DeliveryRecordOut,
    IntegrationIn,
    IntegrationList,
    IntegrationOut,
    error_responses,
)
from cavra.governance import service as governance

router = APIRouter(tags=["integrations"], route_class=CheckedRoute)

IntegrationId = Annotated[str, Path(min_length=1, max_length=64, description="the integration id")]


@router.post(
    "/integrations",
    response_model=IntegrationOut,
    dependencies=[AdminDep],
    responses=error_responses(401, 403, 413, 422, 503),
    summary="Create or update an integration",
)
def put_integration(body: IntegrationIn, store: StoreDep, runtime: RuntimeDep) -> dict[str, Any]:
    """The provider must be known and the category must match it; ``provider`` may name a destination of
    the connectors file (the integration is bound to it), and ``destination`` must be one of the
    provider's. Role: admin."""
    return governance.upsert_integration(store, body.model_dump(exclude_unset=True), runtime.config)


@router.get(
    "/integrations",
    response_model=IntegrationList,
    dependencies=[AuditorDep],
    responses=error_responses(401, 403, 503),
    summary="List integrations",
)
def list_integrations(store: StoreDep) -> dict[str, Any]:
    """Role: auditor."""
    items = governance.list_integrations(store)
    return {"items": items, "count": len(items)}


@router.get(
    "/integrations/{integration_id}",
    response_model=IntegrationOut,
    dependencies=[AuditorDep],
    responses=error_responses(401, 403, 404, 503),
    summary="Read an integration",
)
def get_integration(integration_id: IntegrationId, store: StoreDep) -> dict[str, Any]:
    """Role: auditor."""
    return governance.get_integration(store, integration_id)


@router.delete(
    "/integrations/{integration_id}",
    response_model=Deleted,
    dependencies=[AdminDep],
    responses=error_responses(401, 403, 404, 503),
    summary="Delete an integration",
)
def delete_integration(integration_id: IntegrationId, store: StoreDep) -> dict[str, Any]:
    """Its past deliveries stay in the evidence store. Role: admin."""
    governance.delete_integration(store, integration_id)
    return {"deleted": True, "id": integration_id}


@router.post(
    "/integrations/{integration_id}/deliver",
    response_model=DeliveryRecordOut,
    dependencies=[OperatorDep],
    responses={**ACCEPTED_RESPONSE, **error_responses(401, 403, 404, 409, 413, 422, 503)},
    summary="Deliver an event through an active integration",
)
async def deliver(
    integration_id: IntegrationId,
    body: DeliverIn,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Queues one outbox job per provider, waits up to ``wait_seconds`` for the first attempt run and
    answers the ``cavra.connector.delivery.v1`` record as stored (``metadata_kind=integration-delivery``).
    A delivery that failed is still a 200 answer: ``success`` and each provider's ``error`` say what
    happened. ``"wait": false``, or a deadline that passes, answers 202 with the job ids and their status
    URLs (``/jobs/{id}``). An ``Idempotency-Key`` header (otherwise a key derived from the event and the
    target) makes a repeated request answer the first request's jobs. Role: operator."""
    await runtime.astore()
    config = runtime.require_config()
    result = await runtime.run_delivery(
        lambda: runtime.service.deliver(
            governance.deliver_integration,
            config,
            integration_id,
            body.event,
            retries=body.retries,
            providers=body.providers,
            timeout_seconds=body.timeout_seconds,
            idempotency_key=idempotency_key,
            wait=body.wait,
            wait_seconds=body.wait_seconds,
        )
    )
    return accepted_answer(result) if governance.is_accepted(result) else result
