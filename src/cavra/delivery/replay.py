"""Replay: deliver again what a stored delivery record delivered, as a new job linked to that record.

``POST /deliveries/{id}/redeliver`` and ``cavra deliveries replay`` both make a *new* job from the job that
produced the record (same event, provider, options and store fields), with ``replay_of`` = the record's id;
the new job's records carry ``job.replay_of`` too, so the audit trail links them. The original job keeps
its state and its one final record.

A bulk replay that lists both a job and its failed replay replays only the replay (the newest link of the
chain); the original is reported as already replayed.

Replays are idempotent: the new job's key is derived from the record it replays (or from the caller's
``Idempotency-Key``), so replaying the same record twice returns the first replay job. To try again after
a replay also failed, replay the replay's newest record. A job that is still queued or running is not
replayed (it will be delivered; a replay would deliver it twice), nor is a record whose job was purged
under retention (``cavra deliveries purge``: the record stays, the event it delivered is gone with the job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cavra.delivery.idempotency import idempotency_key as make_key
from cavra.delivery.queue import DEFAULT_WAIT_SECONDS, Submission
from cavra.delivery.runtime import DeliveryRuntime
from cavra.delivery.submit import deliver_jobs
from cavra.delivery.worker import ConfigSource
from cavra.errors import ConflictError, InputError, NotFoundError
from cavra.store import Store
from cavra.store.base import utc
from cavra.store.jobs import DEAD, FAILED, FINAL_STATES, Enqueued, Job, JobFilter, NewJob
from cavra.transport import Transport

#: most jobs one ``cavra deliveries replay`` run enqueues
MAX_REPLAY = 10_000


def replay_job(job: Job, delivery_id: str, *, key: str | None = None) -> NewJob:
    """The new job replaying ``job``'s record ``delivery_id``."""
    if not job.final:
        raise ConflictError(
            f"job {job.id} is still {job.state} (it will be delivered); replay a job once it has finished"
        )
    return NewJob(
        idempotency_key=make_key(job.kind, job.provider, job.event, given=key, scope=f"replay:{delivery_id}"),
        kind=job.kind,
        provider=job.provider,
        payload=dict(job.payload),
        replay_of=delivery_id,
    )


def job_of_delivery(store: Store, delivery_id: str) -> Job:
    """The outbox job that produced a stored delivery record (404 / 409 with the reason)."""
    doc = store.get_delivery(delivery_id)
    if doc is None:
        raise NotFoundError(f"delivery {delivery_id!r} not found")
    section = doc.get("job")
    job_id = section.get("job_id") if isinstance(section, dict) else None
    if not isinstance(job_id, str):
        raise ConflictError(
            f"delivery {delivery_id} was not made through the outbox (it has no job), so its event was not "
            "kept; deliver the event again"
        )
    job = store.get_job(job_id)
    if job is None:  # only retention deletes jobs (Store.purge_jobs); the record stays, its event did not
        raise ConflictError(
            f"delivery {delivery_id}: its job {job_id} was purged under the outbox retention "
            "(cavra deliveries purge), so its event is no longer kept; deliver the event again"
        )
    return job


async def redeliver(
    store: Store,
    delivery_id: str,
    *,
    runtime: DeliveryRuntime,
    config: ConfigSource = None,
    transport: Transport | None = None,
    retry_base_delay: float | None = None,
    idempotency_key: str | None = None,
    wait: bool = True,
    timeout: float = DEFAULT_WAIT_SECONDS,
) -> Submission:
    """``POST /deliveries/{id}/redeliver``: enqueue the replay, run it now (in ``runtime``; ``config``: the
    connector config; ``transport``: the server's) and wait up to ``timeout`` for its first attempt run.

    ``submission.done``: answer ``submission.documents[0]`` (the new record, ``job.replay_of`` = ``id``);
    otherwise answer 202 with ``submission.accepted()``.
    """
    job = await asyncio.to_thread(job_of_delivery, store, delivery_id)
    new = replay_job(job, delivery_id, key=idempotency_key)
    return await deliver_jobs(
        store,
        config,
        [new],
        runtime=runtime,
        wait=wait,
        timeout=timeout,
        transport=transport,
        retry_base_delay=retry_base_delay,
    )


# --- cavra deliveries replay ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayItem:
    """One replayed job: the original, and its replay (``created=False``: it had been replayed already)."""

    original: Job
    replay: Job | None
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.original.id,
            "provider": self.original.provider,
            "state": self.original.state,
            "event_id": self.original.event.get("event_id"),
            "delivery_id": self.original.delivery_id,
            "replay_job_id": None if self.replay is None else self.replay.id,
            "already_replayed": not self.created and self.replay is not None,
        }


def states_for(*, failed: bool, dead: bool, include_succeeded: bool) -> tuple[str, ...]:
    """``--failed`` / ``--dead`` select those; neither selects both; ``--all`` adds succeeded jobs."""
    if include_succeeded:
        return FINAL_STATES
    if failed or dead:
        return tuple(s for s, on in ((FAILED, failed), (DEAD, dead)) if on)
    return (FAILED, DEAD)


def replay(
    store: Store,
    *,
    states: Sequence[str] = (FAILED, DEAD),
    provider: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
    dry_run: bool = False,
) -> list[ReplayItem]:
    """Enqueue a replay of every finished job matching the filters (oldest first), each once."""
    if not 1 <= limit <= MAX_REPLAY:
        raise InputError(f"--limit: must be between 1 and {MAX_REPLAY}, got {limit}")
    unknown = [s for s in states if s not in FINAL_STATES]
    if unknown:
        raise InputError(f"state {unknown[0]!r}: only finished jobs ({', '.join(FINAL_STATES)}) are replayed")
    flt = JobFilter(
        states=tuple(states),
        provider=provider,
        kind=kind,
        since=None if since is None else utc(since),
        until=None if until is None else utc(until),
    )
    jobs = [j for j in store.list_jobs(flt, limit=limit) if j.delivery_id is not None]
    if dry_run or not jobs:
        return [ReplayItem(j, None, False) for j in jobs]
    # a job whose failed replay is listed too is not replayed again: only the newest link of a chain is
    # (replaying both would deliver the event twice: the old replay re-armed, and a replay of it)
    replaced = {j.replay_of: j for j in jobs if j.replay_of is not None}
    todo = [j for j in jobs if j.delivery_id not in replaced]
    news = [replay_job(j, str(j.delivery_id)) for j in todo]
    done: dict[str, Enqueued] = {}
    for start in range(0, len(news), 500):
        chunk = store.enqueue_jobs(news[start : start + 500])
        done.update((j.id, e) for j, e in zip(todo[start : start + 500], chunk, strict=True))
    return [
        ReplayItem(j, done[j.id].job, done[j.id].created)
        if j.id in done
        else ReplayItem(j, replaced[str(j.delivery_id)], False)
        for j in jobs
    ]
