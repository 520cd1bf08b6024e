"""Release governance records and their connector deliveries.

Registering a record (``POST /promotion-executions``, ``/rollback-executions``,
``/endpoint-management-exports``) needs the operator role; reading one (``GET …/{id}``) the auditor role.
Delivering (``POST /promotion-executions/{id}/audit-export/deliver``, ``/rollback-executions/{id}/deliver``,
``/endpoint-management-exports/{id}/publish``) needs the operator role. The request is queued as one
outbox job per provider; the route waits up to ``wait_seconds`` for the first attempt run and answers the
stored ``cavra.connector.delivery.v1`` record, or 202 with the job ids and their status URLs
(``/jobs/{id}``) when ``"wait": false`` or the deadline passes. An ``Idempotency-Key`` header makes a
repeated request answer the first request's jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Path

from cavra.api.checked import CheckedRoute
from cavra.api.deps import AuditorDep, OperatorDep, Runtime, RuntimeDep, StoreDep
from cavra.api.routes.queue import ACCEPTED_RESPONSE, IdempotencyKey, accepted_answer
from cavra.api.schemas import DeliveryRecordOut, RecordOut, ReleaseDeliverIn, error_responses
from cavra.governance import service as governance
from cavra.governance.records import EndpointExport, PromotionExecution, RollbackExecution


async def _deliver(
    runtime: Runtime,
    deliver: Callable[..., Coroutine[Any, Any, dict[str, Any]]],
    record_id: str,
    body: ReleaseDeliverIn,
    idempotency_key: str | None,
    **extra: Any,
) -> Any:
    """Run one of the façade's release deliveries for a stored record; 202 when it is still queued."""
    await runtime.astore()
    config = runtime.require_config()
    result = await runtime.run_delivery(
        lambda: runtime.service.deliver(
            deliver,
            config,
            record_id,
            provider=body.provider,
            retries=body.retries,
            idempotency_key=idempotency_key,
            wait=body.wait,
            wait_seconds=body.wait_seconds,
            **extra,
        )
    )
    return accepted_answer(result) if governance.is_accepted(result) else result


router = APIRouter(tags=["release"], route_class=CheckedRoute)

RecordId = Annotated[str, Path(min_length=1, max_length=160, description="the record id")]
_READ = error_responses(401, 403, 404, 503)
_WRITE = error_responses(401, 403, 413, 422, 503)
_DELIVER = {**ACCEPTED_RESPONSE, **error_responses(401, 403, 404, 409, 413, 422, 503)}


# --- promotion executions ------------------------------------------------------------------------------
@router.post(
    "/promotion-executions",
    response_model=RecordOut,
    status_code=201,
    dependencies=[OperatorDep],
    responses=_WRITE,
    summary="Register a promotion execution",
)
def register_promotion(body: PromotionExecution, store: StoreDep) -> dict[str, Any]:
    """Create or replace the record (``execution_id`` ``rpe_…``). Role: operator."""
    return governance.register_record(store, "promotion_execution", body.model_dump(mode="json"))


@router.get(
    "/promotion-executions/{execution_id}",
    response_model=RecordOut,
    dependencies=[AuditorDep],
    responses=_READ,
    summary="Read a promotion execution",
)
def get_promotion(execution_id: RecordId, store: StoreDep) -> dict[str, Any]:
    return governance.get_record(store, "promotion_execution", execution_id)


@router.post(
    "/promotion-executions/{execution_id}/audit-export/deliver",
    response_model=DeliveryRecordOut,
    dependencies=[OperatorDep],
    responses=_DELIVER,
    summary="Deliver a promotion execution's audit event",
)
async def deliver_promotion(
    execution_id: RecordId,
    body: ReleaseDeliverIn,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Persisted as ``metadata_kind=release-connector-delivery``. Role: operator."""
    return await _deliver(runtime, governance.deliver_promotion_audit, execution_id, body, idempotency_key)


# --- rollback executions -------------------------------------------------------------------------------
@router.post(
    "/rollback-executions",
    response_model=RecordOut,
    status_code=201,
    dependencies=[OperatorDep],
    responses=_WRITE,
    summary="Register a rollback execution",
)
def register_rollback(body: RollbackExecution, store: StoreDep) -> dict[str, Any]:
    """Create or replace the record (``execution_id`` ``rre_…``). Role: operator."""
    return governance.register_record(store, "rollback_execution", body.model_dump(mode="json"))


@router.get(
    "/rollback-executions/{execution_id}",
    response_model=RecordOut,
    dependencies=[AuditorDep],
    responses=_READ,
    summary="Read a rollback execution",
)
def get_rollback(execution_id: RecordId, store: StoreDep) -> dict[str, Any]:
    return governance.get_record(store, "rollback_execution", execution_id)


@router.post(
    "/rollback-executions/{execution_id}/deliver",
    response_model=DeliveryRecordOut,
    dependencies=[OperatorDep],
    responses=_DELIVER,
    summary="Deliver a rollback execution event",
)
async def deliver_rollback(
    execution_id: RecordId,
    body: ReleaseDeliverIn,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Persisted as ``metadata_kind=release-connector-delivery``. Role: operator."""
    return await _deliver(runtime, governance.deliver_rollback_execution, execution_id, body, idempotency_key)


# --- endpoint-management exports -----------------------------------------------------------------------
@router.post(
    "/endpoint-management-exports",
    response_model=RecordOut,
    status_code=201,
    dependencies=[OperatorDep],
    responses=_WRITE,
    summary="Register an endpoint-management export manifest",
)
def register_export(body: EndpointExport, store: StoreDep) -> dict[str, Any]:
    """Artifact paths are relative to the server's exports directory (``--exports-dir``). Role: operator."""
    return governance.register_record(store, "endpoint_export", body.model_dump(mode="json"))


@router.get(
    "/endpoint-management-exports/{export_id}",
    response_model=RecordOut,
    dependencies=[AuditorDep],
    responses=_READ,
    summary="Read an endpoint-management export manifest",
)
def get_export(export_id: RecordId, store: StoreDep) -> dict[str, Any]:
    return governance.get_record(store, "endpoint_export", export_id)


@router.post(
    "/endpoint-management-exports/{export_id}/publish",
    response_model=DeliveryRecordOut,
    dependencies=[OperatorDep],
    responses=_DELIVER,
    summary="Publish an endpoint-management export",
)
async def publish_export(
    export_id: RecordId,
    body: ReleaseDeliverIn,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """The export must be approved and meant for the provider, and every artifact must match its size
    and SHA-256; a refusal is recorded as a failed publication and answered 422. Persisted as
    ``metadata_kind=endpoint-management-publication-delivery``. Role: operator."""
    return await _deliver(
        runtime,
        governance.publish_endpoint_export,
        export_id,
        body,
        idempotency_key,
        base_dir=runtime.exports_dir,
    )
