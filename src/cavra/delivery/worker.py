"""The worker: claims due outbox jobs with a lease and runs them through the delivery engine.

``cavra worker`` runs one in its own process; ``cavra serve`` runs one inside the API process. Any number
of workers may share a store (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one short write transaction
per claim). A worker

* claims at most as many jobs as it has free slots (``concurrency``), oldest due first, skipping providers
  whose breaker is open or that asked to wait; due jobs of a batching target (Splunk HEC, Datadog,
  Sentinel) are claimed together, up to the target's batch size, and take one slot: they go in as few
  requests as the provider's limits allow, and each job still gets its own record;
* extends the leases of the jobs it runs every ``lease_seconds / 3`` (a run may take longer than a lease);
* runs each job: resolves the target from the connector config *now* (no secret is in the queue), asks the
  guard (breaker, pause, rate limit), calls :func:`cavra.delivery.engine.deliver_one`, and completes the
  job: its delivery record and its new state (succeeded, failed, dead, or queued again on the schedule)
  in one store transaction (runs that finish while one is written are written together, in the next);
* on a graceful stop, stops claiming, lets running jobs finish for ``shutdown_timeout`` seconds and gives
  back (releases) the ones still running. Killed outright (SIGKILL), it loses nothing: its leases expire
  and other workers claim the jobs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.config import LoadedConfig, Target
from cavra.connectors.base import TokenCache
from cavra.delivery.completer import Completer
from cavra.delivery.engine import batching, deliver_batch, deliver_one
from cavra.delivery.guard import Guard, GuardSettings
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.queue import (
    DEFAULT_LEASE_SECONDS,
    SIGNALS,
    Schedule,
    Signals,
    completion_note,
    outcome_for,
)
from cavra.delivery.record import ProviderDelivery, build_record
from cavra.delivery.runs import (
    RunObserver,
    WorkerStats,
    default_owner,
    group_jobs,
    policy_for,
    schedule_for,
    target_for,
)
from cavra.errors import CavraError, ConfigError
from cavra.store import Store, StoredDelivery
from cavra.store.jobs import Job, JobOutcome
from cavra.transport import AiohttpTransport, Transport

log = logging.getLogger("cavra.worker")

ConfigSource = LoadedConfig | Callable[[], LoadedConfig | None] | None


class Worker:
    """One worker; ``await worker.run()`` until :meth:`stop` (or, with ``once``, until nothing is due)."""

    def __init__(
        self,
        store: Store,
        config: ConfigSource,
        *,
        owner: str | None = None,
        concurrency: int = 4,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        schedule: Schedule | None = None,
        guard: GuardSettings | Guard | None = None,
        transport: Transport | None = None,
        retry_base_delay: float | None = None,
        poll_interval: float = 1.0,
        shutdown_timeout: float = 30.0,
        signals: Signals = SIGNALS,
        observer: RunObserver | None = None,
        tokens: TokenCache | None = None,
        completer: Completer | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"--concurrency: must be at least 1, got {concurrency}")
        if lease_seconds < 0.3:
            raise ConfigError(f"--lease-seconds: must be at least 0.3, got {lease_seconds:g}")
        self.store = store
        self._config = config
        self.owner = owner or default_owner()
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.schedule = schedule or Schedule.from_environment()
        self.guard = (
            guard if isinstance(guard, Guard) else Guard(store, guard or GuardSettings.from_environment())
        )
        self._transport = transport
        self._own_transport = transport is None
        self.retry_base_delay = retry_base_delay
        self.poll_interval = poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.signals = signals
        self.observer = observer or RunObserver()
        self.tokens = tokens if tokens is not None else TokenCache()
        self.stats = WorkerStats()
        #: job id -> the task running it (a batch's jobs share one task); one slot per task
        self._active: dict[str, asyncio.Task[None]] = {}
        self._slots: dict[asyncio.Task[None], list[str]] = {}
        self._completing: set[str] = set()
        if completer is not None and (completer.store is not store or completer.owner != self.owner):
            raise ValueError("a shared completer must be for this worker's store and owner")
        self._completer = completer or Completer(store, self.owner)
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._only: list[str] | None = None
        #: with ``only``: job id -> (its stored record, the job after the run), for the face to answer from
        self.results: dict[str, tuple[StoredDelivery, Job]] = {}
        self._task: asyncio.Task[WorkerStats] | None = None

    # --- control -----------------------------------------------------------------------------------------
    def config(self) -> LoadedConfig | None:
        return self._config() if callable(self._config) else self._config

    def stop(self) -> None:
        """Ask for a graceful stop (safe from a signal handler)."""
        self._stopping = True
        self._wakeup.set()

    def wake(self) -> None:
        self._wakeup.set()

    async def start(self) -> None:
        """Run in the background (``cavra serve``); :meth:`close` stops it gracefully."""
        self._task = asyncio.create_task(self.run(), name=f"cavra-worker {self.owner}")

    async def close(self) -> None:
        self.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = AiohttpTransport()
        return self._transport

    # --- the loop ----------------------------------------------------------------------------------------
    async def run(
        self, *, once: bool = False, only: list[str] | None = None, claimed: Sequence[Job] = ()
    ) -> WorkerStats:
        """Claim and run jobs until stopped; with ``once``, return when nothing is due and nothing runs.

        ``only``: claim these jobs and no others (a face running a request's jobs at once); each one is
        claimed at most once, and what its run stored is kept in :attr:`results`. ``claimed``: jobs already
        claimed for this worker's owner (``Store.enqueue_jobs(..., claim=...)``), run first."""
        self._stopping = False
        self._only = None if only is None else list(only)
        if claimed:
            self.stats.claimed += len(claimed)
            self._launch(list(claimed))
        self.signals.add_worker(self.wake)
        beat = asyncio.create_task(self._heartbeat())
        log.info(
            "worker %s started (concurrency %d, lease %gs)", self.owner, self.concurrency, self.lease_seconds
        )
        try:
            while not self._stopping:
                self._wakeup.clear()
                claimed = await self._claim()
                if once and not claimed and not self._active:
                    break
                if claimed and len(self._slots) < self.concurrency:
                    continue  # there may be more due jobs
                # all slots busy, or nothing due: wait for a free slot, a wake-up or the next poll
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self.poll_interval)
        finally:
            self.signals.remove_worker(self.wake)
            await self._shutdown()
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            if self._own_transport and self._transport is not None:
                await self._transport.close()
                self._transport = None
            log.info("worker %s stopped: %s", self.owner, self.stats)
        return self.stats

    async def _claim(self) -> list[Job]:
        free = self.concurrency - len(self._slots)
        if free <= 0 or self._stopping:
            return []
        if self._only is not None and not self._only:
            return []  # every job asked for has been claimed once
        try:
            self.guard.use_config(self.config())
            await self.guard.refresh()
            paused = self.guard.paused(datetime.now(UTC))
            jobs = await asyncio.to_thread(
                self.store.claim_jobs,
                self.owner,
                limit=free,
                lease_seconds=self.lease_seconds,
                exclude_providers=paused,
                job_ids=self._only,
            )
        except CavraError as exc:
            log.error("worker %s cannot claim jobs: %s", self.owner, exc)
            return []
        if self._only is not None:
            taken = {j.id for j in jobs}
            self._only = [jid for jid in self._only if jid not in taken]
        else:
            jobs.extend(await self._top_up(jobs, paused))
        self.stats.claimed += len(jobs)
        self._launch(jobs)
        return jobs

    def _launch(self, jobs: list[Job]) -> None:
        """Start claimed jobs: a batching target's jobs in groups of its batch size, the rest one by one."""
        groups = group_jobs(jobs)
        sizes = self._batch_sizes(groups)
        for key, members in groups.items():
            size = sizes.get(key, 1)
            for start in range(0, len(members), size):
                self._spawn(members[start : start + size])

    async def _top_up(self, jobs: list[Job], paused: list[str]) -> list[Job]:
        """More due jobs of each batching provider just claimed, up to its batch size. A store error here
        keeps what was claimed already (it runs now) and just claims nothing more."""
        groups = group_jobs(jobs)
        extra: list[Job] = []
        for key, size in self._batch_sizes(groups).items():
            more = size - len(groups[key])
            if more <= 0:
                continue
            try:
                extra += await asyncio.to_thread(
                    self.store.claim_jobs,
                    self.owner,
                    limit=more,
                    lease_seconds=self.lease_seconds,
                    exclude_providers=paused,
                    providers=[key[0]],
                )
            except CavraError as exc:
                log.error("worker %s cannot claim more %s jobs for a batch: %s", self.owner, key[0], exc)
                break
        return extra

    def _batch_sizes(self, groups: dict[tuple[str, str], list[Job]]) -> dict[tuple[str, str], int]:
        """The batch size of each group's target (only groups whose target batches)."""
        sizes: dict[tuple[str, str], int] = {}
        for key, members in groups.items():
            try:
                size = batching(self._target(key[0], dict(members[0].payload.get("options") or {})))
            except ConfigError:
                continue  # the job fails with the config error when it runs
            if size > 1:
                sizes[key] = size
        return sizes

    def _spawn(self, jobs: list[Job]) -> None:
        name = f"job {jobs[0].id}" + (f" +{len(jobs) - 1}" if len(jobs) > 1 else "")
        task = asyncio.create_task(self._run_jobs(jobs), name=name)
        self._slots[task] = [j.id for j in jobs]
        for job in jobs:
            self._active[job.id] = task
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        for jid in self._slots.pop(task, []):
            if self._active.get(jid) is task:
                del self._active[jid]
        self._wakeup.set()

    async def _heartbeat(self) -> None:
        interval = max(0.1, self.lease_seconds / 3)
        beats = 0
        while True:
            await asyncio.sleep(interval)
            beats += 1
            if beats % 3 == 0:  # about once a lease: dead workers' jobs show as queued again
                with contextlib.suppress(CavraError):
                    await asyncio.to_thread(self.store.reclaim_expired)
            ids = list(self._active)
            if not ids:
                continue
            try:
                held = set(
                    await asyncio.to_thread(
                        self.store.extend_leases, self.owner, ids, lease_seconds=self.lease_seconds
                    )
                )
            except CavraError as exc:
                log.error("worker %s cannot extend its leases: %s", self.owner, exc)
                continue
            for lost in set(ids) - held - self._completing:
                if lost in self._active:
                    log.warning(
                        "worker %s lost the lease of job %s (another worker may run it)", self.owner, lost
                    )

    async def _shutdown(self) -> None:
        if not self._active:
            return
        log.info(
            "worker %s: waiting up to %gs for %d running jobs",
            self.owner,
            self.shutdown_timeout,
            len(self._active),
        )
        _done, late = await asyncio.wait(list(self._slots), timeout=self.shutdown_timeout)
        cancel = {
            jid: t for jid, t in list(self._active.items()) if t in late and jid not in self._completing
        }
        for task in cancel.values():
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if cancel:
            try:
                n = await asyncio.to_thread(self.store.release_jobs, self.owner, list(cancel))
            except CavraError as exc:
                log.error("worker %s cannot release its jobs (their leases will expire): %s", self.owner, exc)
            else:
                self.stats.released += n
                log.info("worker %s released %d unfinished jobs", self.owner, n)

    # --- one job -----------------------------------------------------------------------------------------
    async def _run_jobs(self, jobs: list[Job]) -> None:
        try:
            if len(jobs) == 1:
                await self._execute(jobs[0])
            else:
                await self._execute_batch(jobs)
        except asyncio.CancelledError:
            raise
        except CavraError as exc:  # the store failed: the lease expires and the job runs again
            log.error("job %s: %s", jobs[0].id, exc)
        except Exception:  # a bug must not kill the worker; the job's lease expires and it runs again
            log.exception("job %s: unexpected error", jobs[0].id)

    async def _execute(self, job: Job) -> None:
        t0 = time.monotonic()
        result: ProviderDelivery | None = None
        config_error: str | None = None
        options: dict[str, Any] = dict(job.payload.get("options") or {})
        try:
            target = self._target(job.provider, options)
        except ConfigError as exc:
            config_error = str(exc)
        else:
            admission = await self.guard.admit(job)
            if admission.defer is not None:
                await self._defer([job], admission.defer, admission.reason)
                return
            if admission.wait > 0:
                await asyncio.sleep(admission.wait)
            resumed = await asyncio.to_thread(resumed_since, self.store, job) if job.attempts > 1 else None
            result = await deliver_one(
                target,
                job.event,
                policy=self._policy(options),
                transport=self.transport,
                tokens=self.tokens,
                resumed_since=resumed,
            )
            await self.guard.report(job, result)
        await self._settle(job, result, config_error, t0)

    async def _execute_batch(self, jobs: list[Job]) -> None:
        """Jobs of one batching target: one admission (a request is what the rate limit counts), as few
        requests as the provider's limits allow, one record per job."""
        t0 = time.monotonic()
        first = jobs[0]
        options: dict[str, Any] = dict(first.payload.get("options") or {})
        try:
            target = self._target(first.provider, options)
        except ConfigError as exc:
            now = datetime.now(UTC)
            await asyncio.gather(*(self._settle(job, None, str(exc), t0, now) for job in jobs))
            return
        admission = await self.guard.admit(first)
        if admission.defer is not None:
            await self._defer(jobs, admission.defer, admission.reason)
            return
        if admission.wait > 0:
            await asyncio.sleep(admission.wait)
        results = await deliver_batch(
            target,
            [job.event for job in jobs],
            policy=self._policy(options),
            transport=self.transport,
            tokens=self.tokens,
        )
        sent = [r for r in results if r.attempts]
        if sent:  # the provider's health follows the request, not each event in it
            await self.guard.report(first, max(sent, key=lambda r: r.attempt_count))
        now = datetime.now(UTC)
        await asyncio.gather(
            *(self._settle(job, r, None, t0, now) for job, r in zip(jobs, results, strict=True))
        )

    async def _settle(
        self,
        job: Job,
        result: ProviderDelivery | None,
        config_error: str | None,
        t0: float,
        now: datetime | None = None,
    ) -> None:
        """Store the run's record and the job's new state; then tell whoever waits. ``now``: one time for
        all the jobs of a batch, so that those rescheduled come due together (and go out as a batch)."""
        event = job.event
        config = self.config()
        if result is not None:
            record = build_record(event, [result])
        else:
            record = build_record(
                event,
                [],
                config_errors={job.provider: f"not sent: {config_error}"},
                provider_of=None if config is None else config.provider_of,
            )
        schedule = schedule_for(config, job.provider, self.schedule)
        outcome = outcome_for(job, result, schedule, now or datetime.now(UTC), config_error=config_error)
        self._completing.add(job.id)
        try:
            note = completion_note(job)
            stored, after, held = await self._completer.complete(job.id, record, outcome, note)
        finally:
            self._completing.discard(job.id)
        self._count(outcome, held)
        if self._only is not None:
            self.results[job.id] = (stored, after)
        self.observer.run_finished(job, result, outcome, time.monotonic() - t0)
        self.signals.job_done(job.id)

    def _target(self, provider: str, options: dict[str, Any]) -> Target:
        return target_for(self.config(), provider, options)

    def _policy(self, options: dict[str, Any]) -> RetryPolicy:
        return policy_for(options, self.retry_base_delay)

    async def _defer(self, jobs: list[Job], seconds: float, reason: str | None) -> None:
        at = datetime.now(UTC) + timedelta(seconds=max(0.0, seconds))
        ids = [j.id for j in jobs]
        n = await asyncio.to_thread(self.store.release_jobs, self.owner, ids, run_after=at, uncount=True)
        self.stats.deferred += n
        log.info(
            "%d job(s) to %s wait %.1fs: %s", len(jobs), jobs[0].provider, seconds, reason or "held back"
        )

    def _count(self, outcome: JobOutcome, held: bool) -> None:
        if not held:
            self.stats.lease_lost += 1
            return
        name = {"succeeded": "succeeded", "failed": "failed", "dead": "dead", "queued": "rescheduled"}[
            outcome.state
        ]
        setattr(self.stats, name, getattr(self.stats, name) + 1)


def resumed_since(store: Store, job: Job) -> float | None:
    """When the delivery this run continues began (epoch seconds), or ``None`` when the run starts a new one.

    A run continues the delivery of the runs before it, since the last run that *ended* the job: what one of
    them created (an AWX job whose launch answer was lost) may exist, and the connector looks for it from
    then. A repeated request re-arms a finished job: its next run is a new delivery (as a replay is), so an
    earlier delivery's AWX job is not adopted again. Read from the job's latest record (``job.run``,
    ``job.final``; the delivery's ``started_at``):

    * no record yet: every run so far died unrecorded: since the job was created;
    * the latest record ended the job and this is the next run: a new delivery (``None``);
    * it ended the job and a run since died unrecorded: since that record;
    * it did not end the job (rescheduled, lease lost): since that run began.
    """
    if job.delivery_id is None:
        return job.created_at.timestamp()
    try:
        doc = store.get_delivery(job.delivery_id)
    except CavraError:
        return job.created_at.timestamp()  # cannot tell: look back to the start (never launch blindly)
    section = (doc or {}).get("job")
    if not isinstance(doc, dict) or not isinstance(section, dict):
        return job.created_at.timestamp()
    run = section.get("run")
    if section.get("final"):
        if isinstance(run, int) and job.attempts <= run + 1:
            return None
        return _epoch(doc.get("created_at")) or job.created_at.timestamp()
    starts = [_epoch(d.get("started_at")) for d in doc.get("deliveries") or [] if isinstance(d, dict)]
    return (
        min((s for s in starts if s is not None), default=None)
        or _epoch(doc.get("created_at"))
        or (job.created_at.timestamp())
    )


def _epoch(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
