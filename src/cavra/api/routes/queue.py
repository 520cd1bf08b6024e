"""The outbox over HTTP: job status, redelivery, and Prometheus metrics.

``GET /jobs/{id}`` is the status URL a deliver route answers with 202 (auditor). ``POST
/deliveries/{id}/redeliver`` queues a new attempt run of a stored delivery, linked to it (operator; an
``Idempotency-Key`` header makes a repeated request return the first replay). ``GET /metrics`` is the
Prometheus exposition (auditor: configure the scraper with a bearer token).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from cavra.api.checked import CheckedRoute
from cavra.api.deps import AuditorDep, OperatorDep, RuntimeDep
from cavra.api.schemas import DeliveryRecordOut, error_responses
from cavra.app import DEFAULT_WAIT_SECONDS, JOB_STATES, Cavra, JobFilter, Submission
from cavra.errors import NotFoundError
from cavra.governance import service as governance
from cavra.metrics import METRICS

router = APIRouter(tags=["deliveries"], route_class=CheckedRoute)

JobState = Literal["queued", "running", "succeeded", "failed", "dead"]
assert set(JobState.__args__) == set(JOB_STATES)  # type: ignore[attr-defined]


class JobOut(BaseModel):
    """An outbox job: one delivery request for one provider."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    kind: str
    provider: str
    state: JobState
    attempts: int = Field(description="attempt runs started")
    run_after: str | None = Field(description="when it is due (again)")
    last_error: str | None = None
    delivery_id: str | None = Field(default=None, description="its latest delivery record")
    replay_of: str | None = Field(default=None, description="the delivery record it replays")
    event_id: str | None = None
    status_url: str


class JobList(BaseModel):
    items: list[JobOut]
    count: int
    queue: dict[str, int] = Field(description="jobs per state, and 'due': claimable now")
    paused: list[dict[str, Any]] = Field(
        default_factory=list, description="destinations an operator paused: their jobs wait (by, at, until)"
    )


class Accepted(BaseModel):
    """The request is queued; follow ``status_url`` (or the ``Location`` header)."""

    status: Literal["accepted"]
    job_id: str
    status_url: str
    jobs: list[JobOut]


class RedeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: bool = Field(default=True, description="wait for the first attempt run (else answer 202 at once)")
    timeout_seconds: float = Field(
        default=DEFAULT_WAIT_SECONDS, ge=0, le=120, description="longest wait before answering 202"
    )


def status_url(job_id: str) -> str:
    return f"/jobs/{job_id}"


def job_answer(job: Any) -> dict[str, Any]:
    return {**job.to_dict(), "status_url": status_url(job.id)}


def accepted_response(sub: Submission) -> JSONResponse:
    """The 202 answer for a submission whose first run has not ended yet."""
    body = sub.accepted(status_url)
    return JSONResponse(status_code=202, content=body, headers={"Location": body["status_url"]})


def accepted_answer(body: dict[str, Any]) -> JSONResponse:
    """The 202 answer for a façade answer that is :func:`cavra.governance.service.is_accepted`."""
    return JSONResponse(status_code=202, content=body, headers={"Location": body["status_url"]})


#: OpenAPI entry of a deliver route's 202 answer
ACCEPTED_RESPONSE: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "Queued; not finished within the wait (or wait was false)"}
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="repeat-safe request key: a repeated request answers the first request's jobs",
    ),
]


def _responses(extra: dict[int | str, dict[str, Any]], *codes: int) -> dict[int | str, dict[str, Any]]:
    return {**extra, **error_responses(*codes)}


JobId = Annotated[str, Path(min_length=1, max_length=64, description="the job id (job_...)")]
DeliveryId = Annotated[str, Path(min_length=1, max_length=128, description="a stored delivery id")]


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    dependencies=[AuditorDep],
    responses=error_responses(401, 403, 404, 503),
    summary="An outbox job's state (the status URL of a 202 answer)",
)
async def get_job(job_id: JobId, runtime: RuntimeDep) -> dict[str, Any]:
    await runtime.astore()
    job = await asyncio.to_thread(runtime.service.get_job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id!r} not found")
    return job_answer(job)


def _list(service: Cavra, flt: JobFilter, limit: int) -> dict[str, Any]:
    jobs, stats = service.list_jobs(flt, limit=limit)
    queue = {s: stats.count(s) for s in JOB_STATES} | {"due": stats.due}
    paused = governance.paused_destinations(service.store)
    return {"items": [job_answer(j) for j in jobs], "count": len(jobs), "queue": queue, "paused": paused}


@router.get(
    "/jobs",
    response_model=JobList,
    dependencies=[AuditorDep],
    responses=error_responses(401, 403, 422, 503),
    summary="Outbox jobs, oldest first, and the queue's size",
)
async def list_jobs(
    runtime: RuntimeDep,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    provider: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    await runtime.astore()
    flt = JobFilter(states=None if state is None else (state,), provider=provider or None)
    return await asyncio.to_thread(_list, runtime.service, flt, limit)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryRecordOut,
    dependencies=[OperatorDep],
    responses=_responses(
        {202: {"model": Accepted, "description": "Queued; not finished within the wait"}},
        401,
        403,
        404,
        409,
        422,
        503,
    ),
    summary="Deliver a stored delivery's event again, as a new job linked to it",
)
async def redeliver(
    delivery_id: DeliveryId,
    runtime: RuntimeDep,
    body: RedeliverIn | None = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=255, description="repeat-safe request key")
    ] = None,
) -> Any:
    """Answers the new delivery record (``job.replay_of`` = this id) once its first attempt run ends, or
    202 with the job and its status URL. 409 when the delivery's job is still queued or running, or when
    the delivery was not made through the outbox. Role: operator."""
    opts = body or RedeliverIn()
    await runtime.astore()
    config = runtime.require_config()
    sub = await runtime.run_delivery(
        lambda: runtime.service.redeliver(
            delivery_id,
            config,
            idempotency_key=idempotency_key,
            wait=opts.wait,
            timeout=opts.timeout_seconds,
        )
    )
    if sub.done:
        return sub.documents[0]
    return accepted_response(sub)


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[AuditorDep],
    responses=_responses(
        {200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
        401,
        403,
    ),
    summary="Prometheus metrics: deliveries, attempts, latency, queue depth and age, dead letters, breakers",
)
async def metrics(runtime: RuntimeDep) -> Response:
    try:
        METRICS.bind_store(await runtime.astore())
    except Exception:  # the store is down: cavra_store_up 0
        METRICS.bind_store(None)
    text, content_type = await asyncio.to_thread(METRICS.render)
    return Response(text, media_type=content_type)
