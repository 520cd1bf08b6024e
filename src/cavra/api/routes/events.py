"""``POST /events`` (operator): publish events through the routes; ``POST /routes/test`` (operator): where an
event would go and what each destination would be sent, redacted, without sending anything.

``POST /events`` routes each event and queues one outbox job per matched destination (one transaction for
the call). By default it answers at once, 202 with ``Location`` (the first job's status URL) and, per
event, the routes and destinations matched and their job ids; ``"wait": true`` runs the jobs now and
answers 200 with each destination's record once the first runs end (202 if ``wait_seconds`` passes). An
event that matches no route is answered ``unrouted`` and recorded (``metadata_kind=unrouted-event``). An
``Idempotency-Key`` header (otherwise a key derived from each event and destination) makes a repeated
request answer the first request's jobs: nothing is sent twice.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cavra.api.checked import CheckedRoute
from cavra.api.deps import OperatorDep, RuntimeDep
from cavra.api.routes.queue import Accepted, IdempotencyKey
from cavra.api.schemas import error_responses
from cavra.app import DEFAULT_WAIT_SECONDS
from cavra.governance import service as governance
from cavra.governance.publish import MAX_EVENTS
from cavra.service import MAX_RETRIES

router = APIRouter(tags=["events"], route_class=CheckedRoute)


class EventsIn(BaseModel):
    """One event (``event``) or many (``events``), not both."""

    model_config = ConfigDict(extra="forbid")

    event: dict[str, Any] | None = Field(default=None, description="one event (event_type required)")
    events: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_EVENTS, description="many events, each routed on its own"
    )
    retries: int = Field(default=1, ge=0, le=MAX_RETRIES, description="retries after the first attempt")
    wait: bool = Field(
        default=False, description="run the jobs now and answer their records (default: 202 at once)"
    )
    wait_seconds: float = Field(
        default=DEFAULT_WAIT_SECONDS, ge=0, le=120, description="longest wait before answering 202"
    )

    @model_validator(mode="after")
    def _one_form(self) -> EventsIn:
        if (self.event is None) == (self.events is None):
            raise ValueError("give either event (one event) or events (a list), not both and not neither")
        return self

    def all_events(self) -> list[object]:
        return [self.event] if self.event is not None else list(self.events or [])


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class RouteOut(_Out):
    index: int
    name: str
    destinations: list[str]


class DestinationJobOut(_Out):
    destination: str
    route: str = Field(description="the route that sent the event there")
    job_id: str
    state: str
    status_url: str
    delivery_id: str | None = None
    record: dict[str, Any] | None = Field(default=None, description="the stored record (when waited)")
    group: dict[str, Any] | None = Field(
        default=None,
        description="state grouped: the group the event joined (group_id, group_key, joined, flush_at); "
        "job_id is the flush job that sends the group's message",
    )


class PublishedEventOut(_Out):
    index: int
    event_id: str
    event_type: str | None
    status: str = Field(description="routed or unrouted")
    routes: list[RouteOut]
    destinations: list[DestinationJobOut]
    skipped: list[dict[str, str]] = Field(description="matched destinations that are disabled")
    delivery_id: str | None = Field(description="an unrouted event: the record of that decision")


class PublishOut(_Out):
    """``cavra.events.publish.v1``."""

    schema_version: str
    status: str = Field(description="accepted (jobs queued or running) or completed")
    events: list[PublishedEventOut]
    event_count: int
    routed: int
    unrouted: int
    job_count: int
    grouped: int | None = Field(default=None, description="destinations whose event joined a group")
    success: bool | None = Field(default=None, description="when completed: every destination delivered")


class RouteTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: dict[str, Any] = Field(description="the event to route (nothing is sent)")


class RouteTestOut(_Out):
    """``cavra.routes.test.v1``."""

    schema_version: str
    event_id: str
    status: str
    routes: list[RouteOut]
    destinations: list[dict[str, Any]]
    sent: bool


@router.post(
    "/events",
    response_model=PublishOut,
    dependencies=[OperatorDep],
    responses={
        202: {"model": Accepted, "description": "Queued: the per-event answer with job ids"},
        **error_responses(401, 403, 409, 413, 422, 503),
    },
    summary="Publish one event or many through the routes",
)
async def publish(body: EventsIn, runtime: RuntimeDep, idempotency_key: IdempotencyKey = None) -> Any:
    """Role: operator."""
    await runtime.astore()
    config = runtime.require_config()
    result = await runtime.run_delivery(
        lambda: runtime.service.deliver(
            governance.publish_events,
            config,
            body.all_events(),
            retries=body.retries,
            idempotency_key=idempotency_key,
            wait=body.wait,
            wait_seconds=body.wait_seconds,
        )
    )
    # the service's answer is already plain JSON: sent as is (the response models document it), not
    # validated again field by field (with "wait" it holds every destination's whole record)
    if result["status"] == "accepted":
        return JSONResponse(status_code=202, content=result, headers={"Location": result["status_url"]})
    return JSONResponse(content=result)


@router.post(
    "/routes/test",
    response_model=RouteTestOut,
    dependencies=[OperatorDep],
    responses=error_responses(401, 403, 413, 422, 503),
    summary="Which routes and destinations an event matches, and the redacted requests (nothing is sent)",
)
async def test_routes(body: RouteTestIn, runtime: RuntimeDep) -> dict[str, Any]:
    """Role: operator (the answer shows destinations' redacted requests)."""
    return governance.test_route(runtime.require_config(), body.event)
