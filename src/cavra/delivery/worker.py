"""The worker: claims due outbox jobs with a lease and runs them through the delivery engine.

``cavra worker`` runs one in its own process; ``cavra serve`` runs one inside the API process. Any number
of workers may share a store (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one short write transaction
per claim). A worker

* claims at most as many jobs as it has free slots (``concurrency``), oldest due first, skipping providers
  whose breaker is open or that asked to wait; due jobs of a batching target (Splunk HEC, Datadog,
  Sentinel) are claimed together, up to the target's batch size, and take one slot: they go in as few
  requests as the provider's limits allow, and each job still gets its own record;
* extends the leases of the jobs it runs every ``lease_seconds / 3`` (a run may take longer than a lease);
* runs each job (:class:`cavra.delivery.jobrun.JobRunner`): resolves the target from the connector config
  *now*, asks the guard, delivers, and completes the job: its delivery record and its new state
  (succeeded, failed, dead, or queued again on the schedule) in one store transaction (runs that finish
  while one is written are written together, in the next);
* on a graceful stop, stops claiming, lets running jobs finish for ``shutdown_timeout`` seconds and gives
  back (releases) the ones still running. Killed outright (SIGKILL), it loses nothing: its leases expire
  and other workers claim the jobs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cavra.config import LoadedConfig
from cavra.delivery.completer import Completer
from cavra.delivery.engine import batching
from cavra.delivery.guard import Guard, GuardSettings
from cavra.delivery.jobrun import JobRunner
from cavra.delivery.queue import DEFAULT_LEASE_SECONDS
from cavra.delivery.runs import RunObserver, WorkerStats, default_owner, group_jobs
from cavra.delivery.runtime import DeliveryRuntime
from cavra.delivery.schedule import Schedule
from cavra.delivery.settle import resumed_since
from cavra.errors import CavraError, ConfigError
from cavra.store import Store, StoredDelivery
from cavra.store.jobs import Job
from cavra.transport import AiohttpTransport, Transport

__all__ = ["ConfigSource", "Worker", "resumed_since"]

log = logging.getLogger("cavra.worker")

ConfigSource = LoadedConfig | Callable[[], LoadedConfig | None] | None


class Worker(JobRunner):
    """One worker; ``await worker.run()`` until :meth:`stop` (or, with ``once``, until nothing is due).

    ``runtime``: the service's delivery runtime (its completion notes, signals and access tokens; made by
    :func:`cavra.governance.notes.delivery_runtime`). Without one the worker has a runtime of its own that
    knows no completion note: a job naming one fails, naming the note, and is not sent."""

    def __init__(
        self,
        store: Store,
        config: ConfigSource,
        *,
        runtime: DeliveryRuntime | None = None,
        owner: str | None = None,
        concurrency: int = 4,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        schedule: Schedule | None = None,
        guard: GuardSettings | Guard | None = None,
        transport: Transport | None = None,
        retry_base_delay: float | None = None,
        poll_interval: float = 1.0,
        shutdown_timeout: float = 30.0,
        observer: RunObserver | None = None,
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
        self.runtime = runtime if runtime is not None else DeliveryRuntime()
        self.signals = self.runtime.signals
        self.notes = self.runtime.notes
        self.observer = observer or RunObserver()
        self.tokens = self.runtime.tokens
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
        if only is None and not claimed:  # a worker (not a face's run): records owed to group members
            await self._recover_groups()
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
