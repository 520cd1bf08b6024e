"""``/destinations``: the destinations of the connectors file with their health (auditor), and a test
delivery to one of them (admin)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path

from cavra.api.checked import CheckedRoute
from cavra.api.deps import AdminDep, AuditorDep, RuntimeDep
from cavra.api.schemas import DeliveryRecordOut, DestinationList, error_responses
from cavra.governance import service as governance

router = APIRouter(tags=["destinations"], route_class=CheckedRoute)

DestinationName = Annotated[str, Path(min_length=1, max_length=63, description="the destination's name")]


@router.get(
    "/destinations",
    response_model=DestinationList,
    dependencies=[AuditorDep],
    responses=error_responses(401, 403, 503),
    summary="The configured destinations, their health and breaker state",
)
async def list_destinations(runtime: RuntimeDep) -> dict[str, Any]:
    """Every destination of the connectors file (loaded, failed to load, or disabled): name, provider,
    category, whether it is enabled, its non-secret settings, its health from real deliveries and the
    circuit-breaker state every worker shares. No URL or credential. Role: auditor."""
    config = runtime.require_config()
    store = await runtime.astore()
    items = await asyncio.to_thread(governance.list_destinations, store, config)
    return {"items": items, "count": len(items)}


@router.post(
    "/destinations/{name}/test",
    response_model=DeliveryRecordOut,
    dependencies=[AdminDep],
    responses=error_responses(401, 403, 404, 422, 503),
    summary="Send a test event to one destination now",
)
async def send_test(name: DestinationName, runtime: RuntimeDep) -> Any:
    """Sends a clearly marked test event (``cavra.destination.test``) to this one destination now, without
    retries, and answers the stored record (``metadata_kind=destination-test-delivery``, never counted in
    a dashboard) with its redacted exchange and ``verdict``. Role: admin."""
    config = runtime.require_config()
    await runtime.astore()
    return await runtime.run_delivery(
        lambda: runtime.service.deliver(governance.send_destination_test, config, name)
    )
