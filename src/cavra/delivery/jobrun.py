"""One claimed job's run, from admission to its stored completion: the half of the worker that runs jobs.

:class:`JobRunner` is the base of :class:`cavra.delivery.worker.Worker` (which claims the jobs, keeps their
leases and stops gracefully). For each job, or each batch of a batching target, it resolves the target
from the connector config *now* (no secret is in the queue), asks the guard (breaker, pause, rate limit),
calls :func:`cavra.delivery.engine.deliver_one` (or ``deliver_batch``) and completes the job: its delivery
record and its new state in one store transaction (:func:`cavra.delivery.settle.write_completion`: retried
while the store fails for a while; the job ended with a cleaned record when the store refuses the record
for good). A claim past ``max_runs`` whose earlier runs never ended the job ends it without sending; so
does a job naming a completion note that the worker's runtime does not know (it fails, naming the note).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.config import LoadedConfig, Target
from cavra.connectors.base import TokenCache
from cavra.delivery.completer import Completer
from cavra.delivery.engine import deliver_batch, deliver_one
from cavra.delivery.guard import Guard
from cavra.delivery.notes import NoteRegistry
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import ProviderDelivery, build_record
from cavra.delivery.runs import RunObserver, WorkerStats, policy_for, schedule_for, target_for
from cavra.delivery.schedule import Schedule, outcome_for
from cavra.delivery.settle import past_max_runs, past_max_runs_outcome, resumed_since, write_completion
from cavra.delivery.signals import Signals
from cavra.errors import CavraError, ConfigError
from cavra.grouping import flush as grouping
from cavra.redaction import Redactor
from cavra.store import GROUP_DELIVERY, Store, StoredDelivery
from cavra.store.jobs import FAILED, SUCCEEDED, Job, JobOutcome
from cavra.transport import Transport

log = logging.getLogger("cavra.worker")


class JobRunner:
    """Runs claimed jobs; the worker that subclasses it sets these attributes."""

    store: Store
    owner: str
    schedule: Schedule
    guard: Guard
    retry_base_delay: float | None
    signals: Signals
    notes: NoteRegistry
    observer: RunObserver
    tokens: TokenCache
    stats: WorkerStats
    #: with ``only``: job id -> (its stored record, the job after the run), for the face to answer from
    results: dict[str, tuple[StoredDelivery, Job]]
    _completer: Completer
    #: jobs whose completion is being written (a lost lease is not reported for them)
    _completing: set[str]
    _only: list[str] | None

    def config(self) -> LoadedConfig | None:
        raise NotImplementedError

    @property
    def transport(self) -> Transport:
        raise NotImplementedError

    async def _run_jobs(self, jobs: list[Job]) -> None:
        try:
            jobs = await self._with_known_notes(jobs)
            jobs = await self._within_max_runs(jobs)
            if not jobs:
                return
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

    def now(self) -> datetime:
        """The time grouping windows are measured by (tests replace it with a controlled clock)."""
        return datetime.now(UTC)

    async def _execute(self, job: Job) -> None:
        t0 = time.monotonic()
        if job.kind == GROUP_DELIVERY:  # a group's flush: take its members, send their one message
            job = await asyncio.to_thread(grouping.prepare, self.store, job, now=self.now())
            if not grouping.has_members(job):  # every member went out with an earlier flush
                await self._finish(job, build_record(job.event, []), JobOutcome(SUCCEEDED), None, t0)
                return
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
        await self._finish(job, record, outcome, result, t0)

    async def _finish(
        self,
        job: Job,
        record: dict[str, Any],
        outcome: JobOutcome,
        result: ProviderDelivery | None,
        t0: float,
        *,
        noted: bool = True,
    ) -> None:
        """Write the completion (:func:`cavra.delivery.settle.write_completion`: retried while the store
        fails for a while; the job ended with a cleaned record when the store refuses the record), with
        the completion note the job names (``noted=False``: without it)."""
        route = job.payload.get("route")
        if isinstance(route, str):  # published through the routes: the record names the route that sent it
            record["route"] = route
        if job.kind == GROUP_DELIVERY:
            record["group"] = grouping.group_section(job)
        self._completing.add(job.id)
        try:
            (stored, after, held), outcome = await write_completion(
                self._completer,
                job,
                record,
                outcome,
                self.notes.for_job(job) if noted else None,
                redactor=self._redactor(job),
                retrying=lambda exc, delay: self._retrying(job, exc, delay),
            )
        finally:
            self._completing.discard(job.id)
        self._count(outcome, held)
        if job.kind == GROUP_DELIVERY and held and after.final:
            await self._member_records(job, stored)
        if self._only is not None:
            self.results[job.id] = (stored, after)
        self.observer.run_finished(job, result, outcome, time.monotonic() - t0)
        self.signals.job_done(job.id)

    async def _with_known_notes(self, jobs: list[Job]) -> list[Job]:
        """The claimed jobs whose completion note (if any) this worker knows; the others fail now, not
        sent, their reason naming the note (:meth:`cavra.delivery.notes.NoteRegistry.unknown`)."""
        notes = self.notes
        for job in jobs:
            name = job.payload.get("on_complete")
            if name and name not in notes:
                break
        else:
            return jobs  # the usual case: no list is made
        keep: list[Job] = []
        for job in jobs:
            name = job.payload.get("on_complete")
            if not name or name in notes:
                keep.append(job)
                continue
            reason = notes.unknown(job)
            log.error("%s", reason)
            record = build_record(job.event, [], config_errors={job.provider: f"not sent: {reason}"})
            await self._finish(job, record, JobOutcome(FAILED, reason), None, time.monotonic(), noted=False)
        return keep

    async def _within_max_runs(self, jobs: list[Job]) -> list[Job]:
        """The claimed jobs that may run; a job past ``max_runs`` whose earlier runs never ended it is
        ended as a dead letter without sending (:func:`cavra.delivery.settle.past_max_runs`)."""
        keep: list[Job] = []
        for job in jobs:
            max_runs = schedule_for(self.config(), job.provider, self.schedule).max_runs  # per destination
            over = job.attempts > max_runs and await asyncio.to_thread(
                past_max_runs, self.store, job, max_runs
            )
            if not over:
                keep.append(job)
                continue
            outcome = past_max_runs_outcome(job, max_runs)
            log.error("job %s: %s", job.id, outcome.error)
            record = build_record(job.event, [], config_errors={job.provider: f"not sent: {outcome.error}"})
            await self._finish(job, record, outcome, None, time.monotonic())
        return keep

    async def _recover_groups(self) -> None:
        """Write the records owed to group members whose flush's worker died before writing them."""
        try:
            written = await asyncio.to_thread(grouping.recover_member_records, self.store)
        except CavraError as exc:
            log.error("worker %s: the records owed to group members: %s", self.owner, exc)
            return
        if written:
            log.warning("worker %s: wrote %d record(s) owed to group members", self.owner, written)

    async def _member_records(self, job: Job, stored: StoredDelivery) -> None:
        """One record per member of a finished group flush, naming the group's record."""
        try:
            await asyncio.to_thread(grouping.member_records, self.store, job, stored)
        except CavraError as exc:  # the group's record names every member: nothing is unaccounted for
            log.error("job %s: the members' records of group delivery %s: %s", job.id, stored.id, exc)

    def _redactor(self, job: Job) -> Redactor:
        try:
            return self._target(job.provider, {}).redactor
        except ConfigError:
            return Redactor()

    def _retrying(self, job: Job, exc: Exception, delay: float) -> None:
        self.stats.completion_retries += 1
        log.warning(
            "job %s: its completion could not be written (%s); trying again in %gs", job.id, exc, delay
        )

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
