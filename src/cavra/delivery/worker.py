"""The worker: claims due outbox jobs with a lease and runs them through the delivery engine.

``cavra worker`` runs one in its own process; ``cavra serve`` runs one inside the API process. Any number
of workers may share a store (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one short write transaction
per claim). A worker

* claims at most as many jobs as it has free slots (``concurrency``), oldest due first, skipping providers
  whose breaker is open or that asked to wait;
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
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.config import LoadedConfig, Target
from cavra.connectors.base import TokenCache
from cavra.delivery.engine import deliver_one
from cavra.delivery.guard import Guard, GuardSettings
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.queue import (
    COMPLETION_HOOKS,
    DEFAULT_LEASE_SECONDS,
    SIGNALS,
    Schedule,
    Signals,
    outcome_for,
)
from cavra.delivery.record import ProviderDelivery, build_record
from cavra.errors import CavraError, ConfigError
from cavra.store import Store, StoredDelivery
from cavra.store.jobs import Job, JobOutcome
from cavra.transport import AiohttpTransport, Transport

log = logging.getLogger("cavra.worker")

ConfigSource = LoadedConfig | Callable[[], LoadedConfig | None] | None
#: most job completions written in one store transaction
MAX_BATCH = 64


@dataclass
class _Finished:
    job_id: str
    record: dict[str, Any]
    outcome: JobOutcome
    done: asyncio.Future[tuple[StoredDelivery, Job, bool]]


class RunObserver:
    """What a worker reports after each run (metrics implement it; the default does nothing)."""

    def run_finished(
        self, job: Job, result: ProviderDelivery | None, outcome: JobOutcome, seconds: float
    ) -> None:  # pragma: no cover - interface
        return None


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def resolve_target(config: LoadedConfig | None, provider: str) -> Target:
    """The configured target of ``provider``, or ConfigError saying why there is none."""
    if config is None:
        raise ConfigError("no connector config: the worker needs --config FILE or $CAVRA_CONNECTOR_CONFIG")
    if provider in config.targets:
        return config.targets[provider]
    if provider in config.errors:
        raise ConfigError(config.errors[provider])
    raise ConfigError(
        f"{config.source}: provider {provider!r} is not configured (connectors.{provider} is missing)"
    )


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    rescheduled: int = 0
    dead: int = 0
    deferred: int = 0
    released: int = 0
    lease_lost: int = 0


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
        guard: GuardSettings | None = None,
        transport: Transport | None = None,
        retry_base_delay: float | None = None,
        poll_interval: float = 1.0,
        shutdown_timeout: float = 30.0,
        signals: Signals = SIGNALS,
        observer: RunObserver | None = None,
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
        self.guard = Guard(store, guard or GuardSettings.from_environment())
        self._transport = transport
        self._own_transport = transport is None
        self.retry_base_delay = retry_base_delay
        self.poll_interval = poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.signals = signals
        self.observer = observer or RunObserver()
        self.tokens = TokenCache()
        self.stats = WorkerStats()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._completing: set[str] = set()
        self._finished: list[_Finished] = []
        self._finished_ready = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._only: list[str] | None = None
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
    async def run(self, *, once: bool = False, only: list[str] | None = None) -> WorkerStats:
        """Claim and run jobs until stopped; with ``once``, return when nothing is due and nothing runs.

        ``only``: claim these jobs and no others (a face running a request's jobs at once)."""
        self._stopping = False
        self._only = only
        self.signals.add_worker(self.wake)
        beat = asyncio.create_task(self._heartbeat())
        completer = asyncio.create_task(self._completer())
        log.info(
            "worker %s started (concurrency %d, lease %gs)", self.owner, self.concurrency, self.lease_seconds
        )
        try:
            while not self._stopping:
                self._wakeup.clear()
                claimed = await self._claim()
                if once and not claimed and not self._active:
                    break
                if claimed and len(self._active) < self.concurrency:
                    continue  # there may be more due jobs
                # all slots busy, or nothing due: wait for a free slot, a wake-up or the next poll
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self.poll_interval)
        finally:
            self.signals.remove_worker(self.wake)
            await self._shutdown()
            for task in (beat, completer):
                task.cancel()
            await asyncio.gather(beat, completer, return_exceptions=True)
            if self._own_transport and self._transport is not None:
                await self._transport.close()
                self._transport = None
            log.info("worker %s stopped: %s", self.owner, self.stats)
        return self.stats

    async def _claim(self) -> list[Job]:
        free = self.concurrency - len(self._active)
        if free <= 0 or self._stopping:
            return []
        try:
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
        for job in jobs:
            self.stats.claimed += 1
            task = asyncio.create_task(self._run_job(job), name=f"job {job.id}")
            self._active[job.id] = task
            task.add_done_callback(self._on_done)
        return jobs

    def _on_done(self, task: asyncio.Task[None]) -> None:
        for jid, t in list(self._active.items()):
            if t is task:
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
        _done, late = await asyncio.wait(list(self._active.values()), timeout=self.shutdown_timeout)
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
    async def _run_job(self, job: Job) -> None:
        try:
            await self._execute(job)
        except asyncio.CancelledError:
            raise
        except CavraError as exc:  # the store failed: the lease expires and the job runs again
            log.error("job %s: %s", job.id, exc)
        except Exception:  # a bug must not kill the worker; the job's lease expires and it runs again
            log.exception("job %s: unexpected error", job.id)

    async def _execute(self, job: Job) -> None:
        t0 = time.monotonic()
        result: ProviderDelivery | None = None
        config_error: str | None = None
        event = job.event
        options: dict[str, Any] = dict(job.payload.get("options") or {})
        try:
            target = self._target(job.provider, options)
        except ConfigError as exc:
            config_error = str(exc)
        else:
            admission = await self.guard.admit(job)
            if admission.defer is not None:
                await self._defer(job, admission.defer, admission.reason)
                return
            if admission.wait > 0:
                await asyncio.sleep(admission.wait)
            result = await deliver_one(
                target, event, policy=self._policy(options), transport=self.transport, tokens=self.tokens
            )
            await self.guard.report(job, result)
        if result is not None:
            record = build_record(event, [result])
        else:
            record = build_record(event, [], config_errors={job.provider: f"not sent: {config_error}"})
        outcome = outcome_for(job, result, self.schedule, datetime.now(UTC), config_error=config_error)
        self._completing.add(job.id)
        try:
            stored, after, held = await self._complete(job, record, outcome)
        finally:
            self._completing.discard(job.id)
        self._count(outcome, held)
        self.observer.run_finished(job, result, outcome, time.monotonic() - t0)
        hook = COMPLETION_HOOKS.get(str(job.payload.get("on_complete") or ""))
        if hook is not None:
            try:
                await asyncio.to_thread(hook, self.store, after, stored)
            except Exception:
                log.exception("job %s: completion hook %s failed", job.id, job.payload.get("on_complete"))
        self.signals.job_done(job.id)

    async def _complete(
        self, job: Job, record: dict[str, Any], outcome: JobOutcome
    ) -> tuple[StoredDelivery, Job, bool]:
        """Hand the run to the completer, which writes every run finished meanwhile in one transaction."""
        done: asyncio.Future[tuple[StoredDelivery, Job, bool]] = asyncio.get_running_loop().create_future()
        self._finished.append(_Finished(job.id, record, outcome, done))
        self._finished_ready.set()
        return await asyncio.shield(done)

    async def _completer(self) -> None:
        while True:
            await self._finished_ready.wait()
            self._finished_ready.clear()
            batch, self._finished = self._finished[:MAX_BATCH], self._finished[MAX_BATCH:]
            if self._finished:
                self._finished_ready.set()
            if batch:
                await self._write_batch(batch)

    async def _write_batch(self, batch: list[_Finished]) -> None:
        items = [(f.job_id, f.record, f.outcome) for f in batch]
        try:
            results = await asyncio.to_thread(self.store.complete_jobs, self.owner, items)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].done.set_exception(exc)
                return
            for one in batch:  # one bad item must not fail the others: write them one by one
                await self._write_batch([one])
            return
        for f, result in zip(batch, results, strict=True):
            f.done.set_result(result)

    def _target(self, provider: str, options: dict[str, Any]) -> Target:
        target = resolve_target(self.config(), provider)
        timeout = options.get("timeout_seconds")
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
            target = replace(target, options=replace(target.options, timeout=float(timeout)))
        return target

    def _policy(self, options: dict[str, Any]) -> RetryPolicy:
        retries = options.get("retries", 1)
        n = (
            retries
            if isinstance(retries, int) and not isinstance(retries, bool) and 0 <= retries <= 10
            else 1
        )
        base = self.retry_base_delay
        if base is None:
            return RetryPolicy(retries=n)
        return RetryPolicy(retries=n, base_delay=base, max_delay=max(base, base * 8))

    async def _defer(self, job: Job, seconds: float, reason: str | None) -> None:
        at = datetime.now(UTC) + timedelta(seconds=max(0.0, seconds))
        n = await asyncio.to_thread(self.store.release_jobs, self.owner, [job.id], run_after=at, uncount=True)
        self.stats.deferred += n
        log.info("job %s to %s waits %.1fs: %s", job.id, job.provider, seconds, reason or "held back")

    def _count(self, outcome: JobOutcome, held: bool) -> None:
        if not held:
            self.stats.lease_lost += 1
            return
        name = {"succeeded": "succeeded", "failed": "failed", "dead": "dead", "queued": "rescheduled"}[
            outcome.state
        ]
        setattr(self.stats, name, getattr(self.stats, name) + 1)
