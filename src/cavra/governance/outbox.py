"""How the governance façade delivers: through the outbox (:mod:`cavra.delivery.submit`).

A delivery request becomes one job per provider, written to the store (with a new record it depends on,
in the same transaction) before anything is sent. The façade then waits for the jobs' first attempt run
(up to ``wait_seconds``; by default until it ends) and answers the stored ``cavra.connector.delivery.v1``
record, or, when the caller does not wait or the deadline passes, the 202 body of
:meth:`cavra.delivery.queue.Submission.accepted` (``{"status": "accepted", "job_id", "status_url",
"jobs"}``); :func:`is_accepted` tells the two apart.

Records that note a delivery's outcome (an integration's ``last_delivery``, an export's publication) are
updated by completion notes (:mod:`cavra.governance.notes`), which run in the job's completion
transaction, whichever worker runs it: a caller that sees the record sees the note. The jobs run in the
caller's delivery runtime (:class:`cavra.delivery.runtime.DeliveryRuntime`: the server's, shared by its
requests and its worker); a caller without one (a one-off CLI command) gets a new one for the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cavra.config import LoadedConfig
from cavra.delivery.idempotency import delivery_job
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.runtime import DeliveryRuntime
from cavra.delivery.submit import combined_record, deliver_jobs
from cavra.errors import InputError
from cavra.governance.notes import delivery_runtime
from cavra.store import Store
from cavra.store.jobs import RecordPut
from cavra.transport import Transport

#: How long a façade caller that does not name a deadline waits: until the first run ends (the CLI).
UNTIL_DONE = 24 * 3600.0
#: Longest per-attempt timeout a caller may ask for.
MAX_TIMEOUT_SECONDS = 300.0


def check_timeout(timeout_seconds: float | None) -> None:
    if timeout_seconds is not None and not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise InputError(
            f"timeout_seconds: must be more than 0 and at most {MAX_TIMEOUT_SECONDS:g}, "
            f"got {timeout_seconds:g}"
        )


def check_wait(wait_seconds: float | None) -> None:
    if wait_seconds is not None and wait_seconds < 0:
        raise InputError(f"wait_seconds: must not be negative, got {wait_seconds:g}")


def is_accepted(answer: Mapping[str, Any]) -> bool:
    """The answer is the 202 body (the jobs are queued or still running), not a delivery record."""
    return answer.get("status") == "accepted" and "schema_version" not in answer


@dataclass(frozen=True)
class Request:
    """One delivery request of the façade: what to send where, and how its records are filed."""

    event: Mapping[str, Any]
    #: destination names (one job each)
    providers: Sequence[str]
    kind: str
    retries: int
    subject_kind: str | None = None
    subject_id: str | None = None
    integration_id: str | None = None
    on_complete: str | None = None
    timeout_seconds: float | None = None
    idempotency_key: str | None = None


async def submit(
    store: Store,
    config: LoadedConfig,
    request: Request,
    *,
    runtime: DeliveryRuntime | None = None,
    records: Sequence[RecordPut] = (),
    wait: bool = True,
    wait_seconds: float | None = None,
    transport: Transport | None = None,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Enqueue one job per provider (with ``records``, in one transaction), run them now and wait.

    Answers the stored record (several providers: :func:`combined_record`'s view) once every job's first
    run has ended, else the 202 body. ``policy`` only sets the short retries' backoff base (tests)."""
    check_wait(wait_seconds)
    jobs = [
        delivery_job(
            request.event,
            provider,
            kind=request.kind,
            retries=request.retries,
            timeout_seconds=request.timeout_seconds,
            subject_kind=request.subject_kind,
            subject_id=request.subject_id,
            integration_id=request.integration_id,
            on_complete=request.on_complete,
            key=request.idempotency_key,
            provider_type=config.provider_type(provider),
        )
        for provider in request.providers
    ]
    sub = await deliver_jobs(
        store,
        config,
        jobs,
        runtime=delivery_runtime() if runtime is None else runtime,
        records=records,
        wait=wait,
        timeout=UNTIL_DONE if wait_seconds is None else wait_seconds,
        transport=transport,
        retry_base_delay=None if policy is None else policy.base_delay,
    )
    if not sub.done:
        return sub.accepted()
    return combined_record(sub)
