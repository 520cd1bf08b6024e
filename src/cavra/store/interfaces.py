"""The store's interfaces, one per seam: what each part of the program needs from the store.

:class:`cavra.store.base.Store` composes them, and every backend implements all four. A caller that needs
one seam can say so in its signature (``queue: JobQueue``); adding an operation means adding it to the
seam it belongs to (or a new interface composed into ``Store``), to :class:`~cavra.store.sql.SqlStore`,
and one delegating line to :class:`~cavra.store.delegate.DelegatingStore` (the JSON file).

* :class:`RecordStore`: plain records (integrations, exports, executions...), latest state by id;
* :class:`DeliveryChain`: the tamper-evident chain of delivery records and its signed checkpoints;
* :class:`DeliveryLog`: the provider index of the chain, for history and dashboards (and its aggregates);
* :class:`JobQueue`: the outbox (jobs, leases, completions) and the per-destination shared state.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from cavra.store.chain import ChainHead, ChainIter, ChainReport, HeadClaim, verify_entries

if TYPE_CHECKING:
    from cavra.store.base import (
        CompletionNote,
        Cursor,
        DeliveryFilter,
        EventTypeStats,
        FailureStreak,
        ProviderDeliveryRow,
        ProviderStats,
        RecordAccess,
        StoredDelivery,
        StoredRecord,
        UnpublishedExport,
    )
    from cavra.store.checkpoint import Checkpoint
    from cavra.store.jobs import (
        ClaimNew,
        Destination,
        Enqueued,
        Job,
        JobFilter,
        JobOutcome,
        NewJob,
        QueueStats,
        RecordPut,
    )

T = TypeVar("T")


class RecordStore(abc.ABC):
    """Plain records: the latest state of a thing by ``(kind, record_id)``; not chained."""

    @abc.abstractmethod
    def put_record(self, kind: str, record_id: str, body: dict[str, Any]) -> None:
        """Create or replace a record (``created_at`` is kept on replace)."""

    @abc.abstractmethod
    def get_record_entry(self, kind: str, record_id: str) -> StoredRecord | None: ...

    @abc.abstractmethod
    def list_record_entries(self, kind: str) -> list[StoredRecord]:
        """Records of a kind, oldest first."""

    @abc.abstractmethod
    def delete_record(self, kind: str, record_id: str) -> bool: ...

    def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        entry = self.get_record_entry(kind, record_id)
        return None if entry is None else entry.body

    @abc.abstractmethod
    def with_records(self, work: Callable[[RecordAccess], T]) -> T:
        """Run ``work(records)`` in one write transaction: what it reads and writes through ``records`` is
        one atomic read-modify-write (across threads and processes)."""

    def update_record(
        self, kind: str, record_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> bool:
        """Read-modify-write a record in one transaction: ``change(body)`` answers the new body, or ``None``
        to leave it as it is. ``False`` when there is no such record (``change`` is not called)."""

        def work(records: RecordAccess) -> bool:
            body = records.get(kind, record_id)
            if body is None:
                return False
            new = change(body)
            if new is not None:
                records.put(kind, record_id, new)
            return True

        from cavra.store.base import check_kind

        check_kind(kind)
        return self.with_records(work)

    def list_records(self, kind: str) -> list[dict[str, Any]]:
        return [entry.body for entry in self.list_record_entries(kind)]


class DeliveryChain(abc.ABC):
    """The chain of stored ``cavra.connector.delivery.v1`` records (see ``docs/store.md``)."""

    @abc.abstractmethod
    def append_delivery(
        self,
        record: dict[str, Any],
        *,
        metadata_kind: str,
        subject_kind: str | None = None,
        subject_id: str | None = None,
        integration_id: str | None = None,
        created_at: datetime | None = None,
    ) -> StoredDelivery:
        """Store a ``cavra.connector.delivery.v1`` record at the head of the chain and index its providers."""

    @abc.abstractmethod
    def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        """The stored document (record, ``id``, ``metadata_kind``, ``created_at``, hashes...) or ``None``."""

    @abc.abstractmethod
    def chain(self) -> ChainIter:
        """The chain for verification, read consistently."""

    def verify_chain(self, claims: Sequence[HeadClaim] = ()) -> ChainReport:
        """Walk the chain; report the first altered, missing or reordered delivery record (and check the
        signed head ``claims``: see :mod:`cavra.store.checkpoint`)."""
        return verify_entries(self.chain(), claims)

    def signed_head(self) -> tuple[ChainHead, dict[str, Any] | None]:
        """The chain head and the newest signed checkpoint kept beside it (its JSON object, or ``None``),
        read together."""
        walk = self.chain()
        entries = walk.entries
        try:
            return walk.head, walk.checkpoint
        finally:
            close = getattr(entries, "close", None)
            if close is not None:
                close()

    @abc.abstractmethod
    def store_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Keep ``checkpoint`` as the chain's newest if it signs the current head (compared under the write
        lock); ``False`` when the head has moved (nothing written)."""


class DeliveryLog(abc.ABC):
    """The provider index of the chain: history pages and dashboard figures (from aggregates on SQL)."""

    @abc.abstractmethod
    def count_provider_deliveries(self, flt: DeliveryFilter) -> int: ...

    @abc.abstractmethod
    def page_provider_deliveries(
        self, flt: DeliveryFilter, *, limit: int, after: Cursor | None = None, offset: int = 0
    ) -> list[ProviderDeliveryRow]:
        """Newest first by (created_at, row_id); ``after`` continues past a previous page's last item."""

    @abc.abstractmethod
    def provider_stats(self, flt: DeliveryFilter) -> list[ProviderStats]: ...

    @abc.abstractmethod
    def destination_stats(self, flt: DeliveryFilter) -> list[ProviderStats]:
        """:meth:`provider_stats` per destination (each item's ``destination`` is set)."""

    @abc.abstractmethod
    def event_type_stats(self, flt: DeliveryFilter) -> list[EventTypeStats]: ...

    def bucket_counts(
        self, flt: DeliveryFilter, *, start: datetime, step: timedelta, count: int
    ) -> list[tuple[int, int, int]]:
        """``(total, succeeded, failed)`` per time bucket ``[start + n·step, start + (n+1)·step)``, oldest
        first (the trends). This default asks :meth:`provider_stats` once per bucket; the SQL store reads
        the hourly counts kept on append instead (:mod:`cavra.store.hourly`)."""
        out = []
        for n in range(count):
            since = start + n * step
            stats = self.provider_stats(flt.narrowed(since=since, until=since + step))
            out.append(
                (sum(s.total for s in stats), sum(s.succeeded for s in stats), sum(s.failed for s in stats))
            )
        return out

    @abc.abstractmethod
    def failure_streaks(self, flt: DeliveryFilter, *, per_event: bool = False) -> list[FailureStreak]:
        """Per provider (and event when ``per_event``): failed deliveries after its latest success."""

    @abc.abstractmethod
    def unpublished_exports(self, *, stored_before: datetime) -> list[UnpublishedExport]:
        """Endpoint exports stored before the time and never delivered successfully (as a subject)."""

    @abc.abstractmethod
    def export_counts(self) -> tuple[int, int]:
        """(endpoint exports stored, of which delivered successfully at least once)."""


class JobQueue(abc.ABC):
    """The outbox (:mod:`cavra.store.jobs`; ``docs/operations.md``) and what workers share per destination."""

    @abc.abstractmethod
    def enqueue_jobs(
        self, jobs: Sequence[NewJob], *, records: Sequence[RecordPut] = (), claim: ClaimNew | None = None
    ) -> list[Enqueued]:
        """Write ``records`` and the jobs in one transaction; a job whose idempotency key exists is not
        written again: its existing row is returned (``created=False``). With ``claim``, the new jobs it
        takes are written claimed by its owner (``Enqueued.claimed``), saving the claim's transaction."""

    @abc.abstractmethod
    def claim_jobs(
        self,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        exclude_providers: Sequence[str] = (),
        job_ids: Sequence[str] | None = None,
        providers: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs (queued and due, or running with an expired lease), oldest due
        first; each claim starts an attempt run (``attempts + 1``). No job is leased to two owners.
        ``providers``: only jobs of these providers (a worker filling a SIEM batch)."""

    @abc.abstractmethod
    def extend_leases(self, owner: str, job_ids: Sequence[str], *, lease_seconds: float) -> list[str]:
        """Push the leases ``owner`` still holds; return the ids it still holds."""

    def complete_job(
        self, job_id: str, owner: str, record: dict[str, Any], outcome: JobOutcome
    ) -> tuple[StoredDelivery, Job, bool]:
        """Append the run's delivery record and set the job's outcome in ONE transaction.

        Returns (stored record, job after, held). When ``owner`` no longer holds the lease the record is
        still stored (it is evidence of what was sent) with ``job.lease_lost``, and the job is left alone.
        """
        return self.complete_jobs(owner, [(job_id, record, outcome)])[0]

    @abc.abstractmethod
    def complete_jobs(
        self,
        owner: str,
        items: Sequence[tuple[str, dict[str, Any], JobOutcome]],
        *,
        notes: Mapping[str, CompletionNote] | None = None,
    ) -> list[tuple[StoredDelivery, Job, bool]]:
        """:meth:`complete_job` for several jobs in one transaction (all or none are written).

        ``notes``: job id -> a note run in the same transaction after that job's record is stored; a note
        that fails is logged and undone (its writes only), never failing the completion."""

    @abc.abstractmethod
    def release_jobs(
        self, owner: str, job_ids: Sequence[str], *, run_after: datetime | None = None, uncount: bool = False
    ) -> int:
        """Give leased jobs back to the queue (graceful stop, or a delivery held back by its destination);
        ``uncount`` takes back the attempt run their claim started."""

    @abc.abstractmethod
    def reclaim_expired(self, *, now: datetime | None = None) -> int:
        """Put running jobs whose lease has expired back in the queue (their worker died)."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    def get_job_by_key(self, idempotency_key: str) -> Job | None: ...

    @abc.abstractmethod
    def list_jobs(self, flt: JobFilter, *, limit: int = 1000) -> list[Job]:
        """Jobs matching the filter, oldest first."""

    @abc.abstractmethod
    def queue_stats(self, *, now: datetime | None = None) -> QueueStats: ...

    @abc.abstractmethod
    def purge_jobs(self, *, states: Sequence[str], finished_before: datetime, dry_run: bool = False) -> int:
        """Retention: delete the jobs in ``states`` (final states only: succeeded, failed, dead; a queued or
        running job is refused with :class:`~cavra.errors.InputError`) whose ``updated_at`` (when they
        finished) is before ``finished_before``; return how many (``dry_run``: how many would be, nothing
        changed). Delivery records and the chain are never touched; a purged job's idempotency key is free
        again (a repeated request makes a new job). SQL backends delete in short chunked transactions."""

    @abc.abstractmethod
    def update_destination(self, provider: str, change: Callable[[Destination, datetime], T]) -> T:
        """Atomically read a provider's shared state (a fresh one if none), let ``change`` modify it (it
        gets the current time), write it back, and return what ``change`` returned."""

    @abc.abstractmethod
    def list_destinations(self) -> list[Destination]: ...
