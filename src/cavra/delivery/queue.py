"""The outbox (DESIGN principle 4): the package's map, and enqueue-then-wait for the workers' runs.

A delivery request becomes one job per provider, written to the store (with any record it depends on, in
the same transaction) before anything is sent. Workers (:mod:`cavra.delivery.worker`) claim due jobs with a
lease, run one *attempt run* (the engine's short retries), and complete the job: the run's delivery record
and the job's new state are written in one transaction. The pieces, one module each:

* :mod:`cavra.delivery.idempotency`: a job (:func:`delivery_job`) and its idempotency key;
* :mod:`cavra.delivery.schedule`: the long retry schedule and a run's outcome (rescheduled, failed, dead);
* :mod:`cavra.delivery.signals`: in-process wake-ups of workers and waiters;
* :mod:`cavra.delivery.notes`: the completion notes a job may name, registered explicitly;
* :mod:`cavra.delivery.runtime`: the state a process keeps while it delivers (notes, signals, tokens,
  guards, shared writers), made by the service and passed down;
* :mod:`cavra.delivery.submit`: what faces call (enqueue, run now, answer the record or 202).

This module keeps the wait-for-the-workers :func:`submit`, the :class:`Submission` it answers, and the
names above that callers import from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cavra.delivery.idempotency import MAX_KEY_LENGTH, check_reuse, delivery_job, idempotency_key
from cavra.delivery.schedule import ENV_PREFIX, Schedule, outcome_for, retryable
from cavra.delivery.signals import Signals
from cavra.errors import InputError
from cavra.store import Store
from cavra.store.jobs import RUNNING, Job, NewJob, RecordPut

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_WAIT_SECONDS",
    "ENV_PREFIX",
    "MAX_KEY_LENGTH",
    "Schedule",
    "Signals",
    "Submission",
    "check_reuse",
    "delivery_job",
    "idempotency_key",
    "outcome_for",
    "retryable",
    "submit",
]

#: Seconds a claim leases a job for; the worker extends the lease while the run lasts.
DEFAULT_LEASE_SECONDS = 60.0
#: Seconds a face waits for the first attempt run before it answers 202 with the job id.
DEFAULT_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Submission:
    """Jobs of one request after the wait: ``done`` when every job's first run has ended."""

    jobs: list[Job]
    created: list[bool]
    documents: list[dict[str, Any] | None]

    @property
    def done(self) -> bool:
        return all(d is not None for d in self.documents)

    def accepted(self, status_url: Callable[[str], str] = lambda jid: f"/jobs/{jid}") -> dict[str, Any]:
        """The 202 answer: the jobs and where to follow them."""
        first = self.jobs[0]
        return {
            "status": "accepted",
            "job_id": first.id,
            "status_url": status_url(first.id),
            "jobs": [{**j.to_dict(), "status_url": status_url(j.id)} for j in self.jobs],
        }


async def submit(
    store: Store,
    jobs: Sequence[NewJob],
    *,
    records: Sequence[RecordPut] = (),
    wait: bool = True,
    timeout: float = DEFAULT_WAIT_SECONDS,
    signals: Signals,
) -> Submission:
    """Enqueue (idempotently, with ``records`` in the same transaction), wake the workers listening to
    ``signals`` and, when ``wait``, wait up to ``timeout`` for each job's first attempt run (run by those
    workers); the stored records of the runs that ended come back. Faces call
    :func:`cavra.delivery.submit.deliver_jobs`, which runs the jobs itself."""
    if not jobs:
        raise InputError("nothing to deliver: no provider selected")
    enqueued = await asyncio.to_thread(store.enqueue_jobs, list(jobs), records=list(records))
    check_reuse(jobs, enqueued)
    signals.enqueued()
    current = [e.job for e in enqueued]
    if wait and timeout > 0:
        since = {e.job.id: e.job.attempts for e in enqueued if e.rearmed}

        def ready(j: Job) -> bool:
            if j.id in since:  # re-armed after a failed run: wait for its new run, not the old record
                return j.attempts > since[j.id] and j.state != RUNNING
            return j.delivery_id is not None or j.final

        current = await signals.wait(store, [j.id for j in current], timeout=timeout, until=ready)
    documents = await asyncio.to_thread(_documents, store, current)
    return Submission(current, [e.created for e in enqueued], documents)


def _documents(store: Store, jobs: Sequence[Job]) -> list[dict[str, Any] | None]:
    docs: list[dict[str, Any] | None] = []
    for job in jobs:
        doc = store.get_delivery(job.delivery_id) if job.delivery_id else None
        docs.append(None if doc is None else {**doc, "delivery_id": doc.get("id")})
    return docs
