"""The outbox (DESIGN principle 4): delivery jobs, their idempotency keys, the long retry schedule, waiting.

A delivery request becomes one job per provider, written to the store (with any record it depends on, in
the same transaction) before anything is sent. Workers (:mod:`cavra.delivery.worker`) claim due jobs with a
lease, run one *attempt run* (the engine's short retries), and complete the job: the run's delivery record
and the job's new state are written in one transaction. A run that still fails with a retryable error is
rescheduled on :class:`Schedule` (minutes to hours, never sooner than the provider's ``Retry-After``) until
``max_runs`` or ``max_age``; then the job is a dead letter with its reason. A rejected delivery (a 4xx, a
payload too large) fails at once: sending it again would not help.

Idempotency: a job's key is the caller's ``Idempotency-Key`` (scoped to the request and the provider) or a
stable key derived from the event identity and the target, so a repeated request returns the first job:
as it is when it is queued and not yet run, running, or succeeded (nothing is delivered twice); re-armed to
run now (same id, attempts and records; :func:`cavra.store.jobs.rearmable`) when its last run failed (it
is failed, dead, or queued for a retry), and the caller waits for that new run.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cavra.delivery.record import ProviderDelivery
from cavra.errors import ConfigError, ConflictError, InputError
from cavra.events import event_id_of
from cavra.store import Store
from cavra.store.base import CompletionNote
from cavra.store.jobs import (
    DEAD,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Enqueued,
    Job,
    JobOutcome,
    NewJob,
    RecordPut,
)

log = logging.getLogger("cavra.queue")

#: Seconds a claim leases a job for; the worker extends the lease while the run lasts.
DEFAULT_LEASE_SECONDS = 60.0
#: Seconds a face waits for the first attempt run before it answers 202 with the job id.
DEFAULT_WAIT_SECONDS = 30.0
#: Longest idempotency key a caller may send.
MAX_KEY_LENGTH = 255

#: ``payload["on_complete"]`` name -> the note a job's completion runs in its own transaction, right after
#: the run's record is stored (e.g. the outcome on the integration record): the record and the note are
#: written together or not at all. Filled by the modules that own those records.
COMPLETION_NOTES: dict[str, CompletionNote] = {}


def register_completion_note(name: str, note: CompletionNote) -> None:
    """Run ``note(records, stored)`` in the completion of each run of a job whose payload names
    ``on_complete=name``."""
    COMPLETION_NOTES[name] = note


def completion_note(job: Job) -> CompletionNote | None:
    return COMPLETION_NOTES.get(str(job.payload.get("on_complete") or ""))


# --- the long retry schedule ------------------------------------------------------------------------------
ENV_PREFIX = "CAVRA_QUEUE_"


@dataclass(frozen=True)
class Schedule:
    """When a job whose attempt run failed (retryably) runs again, and when it becomes a dead letter.

    Run ``n`` failed → next run after ``min(max_delay, base_delay * factor**(n-1))`` seconds, ±``jitter``,
    and never sooner than the provider's ``Retry-After``. Dead after ``max_runs`` runs, or when the next
    run would start more than ``max_age`` seconds after the job was created.
    """

    base_delay: float = 60.0
    factor: float = 2.0
    max_delay: float = 6 * 3600.0
    max_runs: int = 12
    max_age: float = 24 * 3600.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.base_delay < 0 or self.max_delay < self.base_delay or self.factor < 1:
            raise ConfigError("queue schedule: need 0 <= base_delay <= max_delay and factor >= 1")
        if self.max_runs < 1 or self.max_age <= 0 or not 0 <= self.jitter < 1:
            raise ConfigError("queue schedule: need max_runs >= 1, max_age > 0 and 0 <= jitter < 1")

    def delay(self, run: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds before the run after run ``run`` (1-based)."""
        r = rng or random
        base = min(self.max_delay, self.base_delay * self.factor ** max(0, run - 1))
        delay = base * (1 + r.uniform(-self.jitter, self.jitter))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def next_run(self, job: Job, now: datetime, retry_after: float | None = None) -> datetime | None:
        """When ``job`` (whose run ``job.attempts`` just failed) runs again; ``None``: it is a dead letter."""
        if job.attempts >= self.max_runs:
            return None
        at = now + timedelta(seconds=self.delay(job.attempts, retry_after))
        if (at - job.created_at).total_seconds() > self.max_age:
            return None
        return at

    def why_dead(self, job: Job, now: datetime) -> str:
        if job.attempts >= self.max_runs:
            return f"dead letter after {job.attempts} attempt runs (max {self.max_runs})"
        return (
            f"dead letter: the next run would start more than {_span(self.max_age)} after the job was queued"
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Schedule:
        """``CAVRA_QUEUE_BACKOFF_BASE``, ``_BACKOFF_FACTOR``, ``_BACKOFF_MAX`` (seconds), ``_MAX_RUNS``,
        ``_MAX_AGE`` (seconds); keyword overrides (e.g. CLI flags, ``None`` = not given) win."""
        env = os.environ if environ is None else environ
        names = {
            "base_delay": "BACKOFF_BASE",
            "factor": "BACKOFF_FACTOR",
            "max_delay": "BACKOFF_MAX",
            "max_runs": "MAX_RUNS",
            "max_age": "MAX_AGE",
        }
        values: dict[str, Any] = {}
        for attr, suffix in names.items():
            raw = env.get(ENV_PREFIX + suffix)
            if raw:
                try:
                    values[attr] = int(raw) if attr == "max_runs" else float(raw)
                except ValueError:
                    raise ConfigError(f"{ENV_PREFIX}{suffix}: must be a number, got {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


# --- jobs -------------------------------------------------------------------------------------------------
def _digest(*parts: object) -> str:
    text = "\0".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def idempotency_key(
    kind: str,
    provider: str,
    event: Mapping[str, Any],
    *,
    given: str | None = None,
    scope: str | None = None,
) -> str:
    """The job key: the caller's key (scoped to ``scope`` and the provider) or one derived from the event's
    identity and the target. Raises InputError for an empty or overlong caller key."""
    if given is not None:
        key = given.strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InputError(f"Idempotency-Key: must be 1-{MAX_KEY_LENGTH} printable characters")
        return f"idem_{_digest(kind, scope, key, provider)}"
    return f"evt_{_digest(kind, scope, event_id_of(event), provider)}"


def delivery_job(
    event: Mapping[str, Any],
    provider: str,
    *,
    kind: str,
    retries: int = 1,
    timeout_seconds: float | None = None,
    subject_kind: str | None = None,
    subject_id: str | None = None,
    integration_id: str | None = None,
    on_complete: str | None = None,
    key: str | None = None,
    replay_of: str | None = None,
    run_after: datetime | None = None,
    provider_type: str | None = None,
) -> NewJob:
    """A job delivering ``event`` to destination ``provider`` (a destination's name: the key of its entry in
    the connectors file; ``provider_type`` its provider, shown by the job's public view); its records are
    stored under metadata kind ``kind``.

    The payload holds the event and options only: the target (URL, credentials) is resolved from the
    connector config when the job runs, so no secret is ever written to the queue.
    """
    ev = dict(event)
    ev.setdefault("event_id", event_id_of(event))
    scope = "/".join(str(p) for p in (subject_kind, subject_id, integration_id) if p)
    payload: dict[str, Any] = {
        "event": ev,
        "options": {"retries": retries, "timeout_seconds": timeout_seconds},
        "subject_kind": subject_kind,
        "subject_id": subject_id,
        "integration_id": integration_id,
        "on_complete": on_complete,
    }
    if provider_type is not None and provider_type != provider:
        payload["provider"] = provider_type
    return NewJob(
        idempotency_key=idempotency_key(kind, provider, ev, given=key, scope=scope),
        kind=kind,
        provider=provider,
        payload=payload,
        run_after=run_after,
        replay_of=replay_of,
    )


def check_reuse(requested: Sequence[NewJob], got: Sequence[Enqueued]) -> None:
    """An existing job returned for a key must be the same request (event and provider); else 409."""
    for new, result in zip(requested, got, strict=True):
        if result.created:
            continue
        old = result.job
        same_event = old.event.get("event_id") == dict(new.payload.get("event") or {}).get("event_id")
        if old.provider != new.provider or old.kind != new.kind or not same_event:
            raise ConflictError(
                f"the idempotency key of job {old.id} was already used for a different request "
                f"({old.kind}, {old.provider}, event {old.event.get('event_id')})"
            )


# --- outcomes ---------------------------------------------------------------------------------------------
def retryable(result: ProviderDelivery) -> bool:
    """A failed run worth running again later: its last attempt asked for a retry (5xx, 429, timeout…)."""
    return bool(result.attempts) and result.attempts[-1].verdict == "retry"


def outcome_for(
    job: Job,
    result: ProviderDelivery | None,
    schedule: Schedule,
    now: datetime,
    *,
    config_error: str | None = None,
) -> JobOutcome:
    """The job's state after a run: ``result`` is the delivery, or ``None`` when the target could not be
    resolved (``config_error``; retried on the schedule: an operator can fix the config meanwhile)."""
    if result is not None and result.status in ("delivered", "pending"):
        return JobOutcome(SUCCEEDED)
    error = config_error or (str(result.error) if result is not None and result.error else "failed")
    if result is not None and not retryable(result):
        return JobOutcome(FAILED, error)
    retry_after = result.attempts[-1].retry_after if result is not None and result.attempts else None
    at = schedule.next_run(job, now, retry_after)
    if at is None:
        return JobOutcome(DEAD, f"{schedule.why_dead(job, now)}: {error}")
    return JobOutcome(QUEUED, error, at)


# --- waking workers and waiters ---------------------------------------------------------------------------
@dataclass
class Signals:
    """In-process notifications: a job's run ended (wakes waiters) and jobs were enqueued (wakes workers).

    Waiters also poll the store, so jobs run by other processes are seen too; signals only cut latency.
    """

    _waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = field(default_factory=dict)
    _workers: list[Callable[[], None]] = field(default_factory=list)

    def job_done(self, job_id: str) -> None:
        for loop, event in list(self._waiters.get(job_id, ())):
            loop.call_soon_threadsafe(event.set)

    def enqueued(self) -> None:
        for wake in list(self._workers):
            wake()

    def add_worker(self, wake: Callable[[], None]) -> None:
        self._workers.append(wake)

    def remove_worker(self, wake: Callable[[], None]) -> None:
        if wake in self._workers:
            self._workers.remove(wake)

    async def wait(
        self,
        store: Store,
        job_ids: Sequence[str],
        *,
        timeout: float,
        until: Callable[[Job], bool] | None = None,
    ) -> list[Job]:
        """The jobs once each satisfies ``until`` (default: a run has ended, i.e. it has a record) or when
        ``timeout`` passes, whichever is first."""
        ready = until or (lambda j: j.delivery_id is not None or j.final)
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        for jid in job_ids:
            self._waiters.setdefault(jid, set()).add(entry)
        deadline = time.monotonic() + timeout
        interval = 0.02
        try:
            while True:
                jobs = await asyncio.to_thread(_get_jobs, store, job_ids)
                left = deadline - time.monotonic()
                if all(ready(j) for j in jobs) or left <= 0:
                    return jobs
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), timeout=min(interval, left))
                except TimeoutError:
                    interval = min(interval * 2, 0.5)
        finally:
            for jid in job_ids:
                waiters = self._waiters.get(jid)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[jid]


def _get_jobs(store: Store, job_ids: Sequence[str]) -> list[Job]:
    jobs = []
    for jid in job_ids:
        job = store.get_job(jid)
        if job is None:
            raise InputError(f"job {jid} not found")
        jobs.append(job)
    return jobs


#: The process's signals (the API's in-process worker and its deliver routes share them).
SIGNALS = Signals()


# --- submitting -------------------------------------------------------------------------------------------
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
    signals: Signals = SIGNALS,
) -> Submission:
    """Enqueue (idempotently, with ``records`` in the same transaction) and, when ``wait``, wait up to
    ``timeout`` for each job's first attempt run; the stored records of the runs that ended come back."""
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
