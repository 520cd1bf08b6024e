"""Deliver through the outbox, now: what a face calls instead of "deliver, then store the record".

:func:`deliver_jobs` writes the jobs (and the records they depend on) in one transaction, then runs the
new jobs' first attempt run at once in this process, claimed with a lease like any worker's, and waits up
to ``timeout`` for it. So a face keeps its synchronous answer (the stored record), and nothing is lost if
the process dies mid-delivery: the lease expires and a worker (``cavra worker``, or ``cavra serve``'s)
runs the job. A job that is rescheduled, held back by a breaker, or not finished within the wait is left
to the workers; the face answers 202 with :meth:`Submission.accepted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cavra.delivery.idempotency import check_reuse
from cavra.delivery.queue import DEFAULT_LEASE_SECONDS, DEFAULT_WAIT_SECONDS, Submission
from cavra.delivery.runtime import DeliveryRuntime
from cavra.delivery.worker import ConfigSource, Worker
from cavra.errors import InputError
from cavra.store import Store, StoredDelivery
from cavra.store.jobs import QUEUED, RUNNING, ClaimNew, Enqueued, Job, NewJob, RecordPut
from cavra.transport import Transport


def _release_unrun(
    runtime: DeliveryRuntime, store: Store, owner: str, written: asyncio.Future[list[Enqueued]]
) -> None:
    """The request ended (an error, or it was cancelled) before its claimed jobs were handed to a run: once
    the enqueue is written, give them back to the queue (their attempt uncounted) for the workers, instead
    of leaving them leased to nobody until the lease expires."""

    def give_back(f: asyncio.Future[list[Enqueued]]) -> None:
        if f.cancelled() or f.exception() is not None:
            return
        ids = [e.job.id for e in f.result() if e.claimed]
        if ids:
            runtime.keep(
                asyncio.ensure_future(asyncio.to_thread(store.release_jobs, owner, ids, uncount=True))
            )

    written.add_done_callback(give_back)


def first_run_over(job: Job) -> bool:
    """A face can answer: a run stored its record, or the job finished, or it waits for a later time."""
    if job.delivery_id is not None or job.final:
        return True
    return job.state == QUEUED and job.run_after > datetime.now(UTC)


def rerun_over(job: Job, attempts_before: float) -> bool:
    """A job re-armed with ``attempts_before`` attempt runs has run again (and the run has ended)."""
    return job.attempts > attempts_before and job.state != RUNNING


async def deliver_jobs(
    store: Store,
    config: ConfigSource,
    jobs: Sequence[NewJob],
    *,
    runtime: DeliveryRuntime,
    records: Sequence[RecordPut] = (),
    wait: bool = True,
    timeout: float = DEFAULT_WAIT_SECONDS,
    transport: Transport | None = None,
    retry_base_delay: float | None = None,
) -> Submission:
    """Enqueue ``jobs`` (idempotently; ``records`` in the same transaction) and, when ``wait``, run the new
    ones now (in ``runtime``: its notes, tokens, guard, signals and shared writers) and wait up to
    ``timeout`` seconds for their first attempt run.

    A repeated request (same idempotency keys) runs nothing and answers the first request's records, but
    a job whose last run failed is re-armed by the store and run again now (the answer is the new run's).
    ``submission.done``: every job has its record (``submission.documents``); otherwise answer 202.
    """
    if not jobs:
        raise InputError("nothing to deliver: no provider selected")
    inline = wait and timeout > 0
    claim: ClaimNew | None = None
    worker: Worker | None = None
    if inline:  # made first: nothing is claimed yet if this fails
        claim, worker = await _inline_worker(store, config, len(jobs), transport, retry_base_delay, runtime)
    written = runtime.shared(store)[0].request(jobs, records=records, claim=claim)
    try:
        enqueued = await asyncio.shield(written)
        check_reuse(jobs, enqueued)
    except BaseException:  # a conflict, or the request was cancelled: nobody will run what was claimed
        if claim is not None:
            _release_unrun(runtime, store, claim.owner, written)
        raise
    # from here to the inline run's start nothing awaits: the claimed jobs reach it
    current = [e.job for e in enqueued]
    if not inline:
        runtime.signals.enqueued()  # the workers take them
    else:
        answered, current = await _run_inline(store, worker, enqueued, timeout=timeout, runtime=runtime)
        if answered is not None:
            return answered
    documents = await asyncio.to_thread(_documents, store, current)
    return Submission(current, [e.created for e in enqueued], documents)


def _document(stored: StoredDelivery) -> dict[str, Any]:
    doc = stored.to_dict()
    return {**doc, "delivery_id": doc.get("id")}


def _documents(store: Store, jobs: Sequence[Job]) -> list[dict[str, Any] | None]:
    docs: list[dict[str, Any] | None] = []
    for job in jobs:
        doc = store.get_delivery(job.delivery_id) if job.delivery_id else None
        docs.append(None if doc is None else {**doc, "delivery_id": doc.get("id")})
    return docs


def combined_record(sub: Submission) -> dict[str, Any]:
    """One ``cavra.connector.delivery.v1``-shaped answer for a request that made several jobs (one per
    provider): each job's stored record's ``deliveries`` and ``errors``, each item naming its
    ``delivery_id`` and ``job_id``. It is a view: each provider's record is stored on its own."""
    docs = [d for d in sub.documents if d is not None]
    if len(sub.jobs) == 1 and docs:
        return docs[0]
    deliveries: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for job, doc in zip(sub.jobs, sub.documents, strict=True):
        if doc is None:
            continue
        ids = {"delivery_id": doc.get("id"), "job_id": job.id}
        deliveries.extend({**item, **ids} for item in doc.get("deliveries") or [])
        errors.extend({**item, **ids} for item in doc.get("errors") or [])
    first = docs[0] if docs else {}
    return {
        "schema_version": first.get("schema_version", "cavra.connector.delivery.v1"),
        "event_type": first.get("event_type"),
        "event_id": first.get("event_id"),
        "session_id": first.get("session_id"),
        "success": sub.done and bool(docs) and all(d.get("success") for d in docs),
        "delivered_count": sum(int(d.get("delivered_count") or 0) for d in docs),
        "failed_count": sum(int(d.get("failed_count") or 0) for d in docs),
        "deliveries": deliveries,
        "errors": errors,
        "delivery_ids": [d.get("id") for d in docs],
        "jobs": [j.to_dict() for j in sub.jobs],
    }


async def _inline_worker(
    store: Store,
    config: ConfigSource,
    size: int,
    transport: Transport | None,
    retry_base_delay: float | None,
    runtime: DeliveryRuntime,
) -> tuple[ClaimNew, Worker]:
    """The claim under which the new jobs are written for this process's inline run (no claim transaction),
    and the worker that runs them."""
    guard = runtime.guard(store)
    guard.use_config(config() if callable(config) else config)
    await guard.refresh()
    paused = tuple(guard.paused(datetime.now(UTC)))
    claim = ClaimNew(runtime.inline_owner(), DEFAULT_LEASE_SECONDS, paused)
    from cavra.metrics import METRICS

    worker = Worker(
        store,
        config,
        runtime=runtime,
        owner=claim.owner,
        guard=guard,
        concurrency=size,
        transport=transport,
        retry_base_delay=retry_base_delay,
        poll_interval=0.05,
        observer=METRICS,
        completer=runtime.shared(store)[1],
    )
    return claim, worker


async def _run_inline(
    store: Store,
    worker: Worker | None,
    enqueued: Sequence[Enqueued],
    *,
    timeout: float,
    runtime: DeliveryRuntime,
) -> tuple[Submission | None, list[Job]]:
    """Run the new (and re-armed) jobs now and wait up to ``timeout`` for their first attempt run: the
    answer when the inline run alone answers it, else the jobs as they are when the wait ends."""
    current = [e.job for e in enqueued]
    # new jobs, and jobs re-armed after a failed run (a repeated request runs them again)
    fresh = [e.job.id for e in enqueued if e.created or e.rearmed]
    claimed = [e.job for e in enqueued if e.claimed]
    since = {e.job.id: e.job.attempts for e in enqueued if e.rearmed}
    signals = runtime.signals
    inline_over = asyncio.Event()
    if not fresh:
        worker = None
    if worker is not None:
        taken = {j.id for j in claimed}
        run = worker.run(once=True, only=[jid for jid in fresh if jid not in taken], claimed=claimed)
        task = asyncio.create_task(run, name="cavra inline delivery")
        runtime.keep(task)

        def over(t: asyncio.Task[Any]) -> None:
            inline_over.set()
            for jid in fresh:
                signals.job_done(jid)  # wake the wait below

        task.add_done_callback(over)
    else:
        inline_over.set()
    if worker is not None and set(fresh) == {j.id for j in current}:
        # every job is this request's: answer from what the inline run stored, without reading it back
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(inline_over.wait()), timeout=timeout)
        known: dict[str, tuple[StoredDelivery, Job]] = dict(worker.results)
        if all(j.id in known for j in current):
            current = [known[j.id][1] for j in current]
            docs: list[dict[str, Any] | None] = [_document(known[j.id][0]) for j in current]
            return Submission(current, [e.created for e in enqueued], docs), current
        timeout = max(0.0, timeout - (time.monotonic() - started))

    def answerable(j: Job) -> bool:
        # still queued after the inline run: held back (breaker, pause) for the workers to take later
        if inline_over.is_set() and j.state == QUEUED:
            return True
        if j.id in since:  # re-armed: its earlier record is there; wait for the new run
            return rerun_over(j, since[j.id])
        return first_run_over(j)

    return None, await signals.wait(store, [j.id for j in current], timeout=timeout, until=answerable)
