"""A store that runs every operation on another store: reads in :meth:`_reading`, writes in :meth:`_writing`.

The JSON-file backend (:mod:`cavra.store.jsonfile`) is one: it keeps its file in an in-memory SQLite
:class:`~cavra.store.sql.SqlStore` and runs that store's code, reloading the file before an operation and
writing it back after a write. A new store operation needs one line here, in its seam's section.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from cavra.store.base import (
    CompletionNote,
    Cursor,
    DeliveryFilter,
    EventTypeStats,
    FailureStreak,
    ProviderDeliveryRow,
    ProviderStats,
    RecordAccess,
    Store,
    StoredDelivery,
    StoredRecord,
    UnpublishedExport,
)
from cavra.store.chain import ChainIter

if TYPE_CHECKING:
    from cavra.store.checkpoint import Checkpoint
    from cavra.store.groups import GroupAccess
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


class DelegatingStore(Store):
    """Every :class:`Store` operation, run on the store :meth:`_reading` or :meth:`_writing` yields."""

    @abc.abstractmethod
    def _reading(self) -> AbstractContextManager[Store]:
        """The store to read from, current (held for the read)."""

    @abc.abstractmethod
    def _writing(self) -> AbstractContextManager[Store]:
        """The store to write to, current and locked; what is written is kept when the block ends."""

    # --- RecordStore ---------------------------------------------------------------------------------
    def put_record(self, kind: str, record_id: str, body: dict[str, Any]) -> None:
        with self._writing() as s:
            s.put_record(kind, record_id, body)

    def get_record_entry(self, kind: str, record_id: str) -> StoredRecord | None:
        with self._reading() as s:
            return s.get_record_entry(kind, record_id)

    def list_record_entries(self, kind: str) -> list[StoredRecord]:
        with self._reading() as s:
            return s.list_record_entries(kind)

    def delete_record(self, kind: str, record_id: str) -> bool:
        with self._writing() as s:
            return s.delete_record(kind, record_id)

    def with_records(self, work: Callable[[RecordAccess], T]) -> T:
        with self._writing() as s:
            return s.with_records(work)

    def with_groups(self, work: Callable[[GroupAccess], T]) -> T:
        with self._writing() as s:
            return s.with_groups(work)

    # --- DeliveryChain -------------------------------------------------------------------------------
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
        with self._writing() as s:
            return s.append_delivery(
                record,
                metadata_kind=metadata_kind,
                subject_kind=subject_kind,
                subject_id=subject_id,
                integration_id=integration_id,
                created_at=created_at,
            )

    def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        with self._reading() as s:
            return s.get_delivery(delivery_id)

    def chain(self) -> ChainIter:
        with self._reading() as s:
            walk = s.chain()
            entries = list(walk.entries)
        return ChainIter(entries=iter(entries), head=walk.head, checkpoint=walk.checkpoint)

    def store_checkpoint(self, checkpoint: Checkpoint) -> bool:
        with self._writing() as s:
            return s.store_checkpoint(checkpoint)

    # --- DeliveryLog ---------------------------------------------------------------------------------
    def count_provider_deliveries(self, flt: DeliveryFilter) -> int:
        with self._reading() as s:
            return s.count_provider_deliveries(flt)

    def page_provider_deliveries(
        self, flt: DeliveryFilter, *, limit: int, after: Cursor | None = None, offset: int = 0
    ) -> list[ProviderDeliveryRow]:
        with self._reading() as s:
            return s.page_provider_deliveries(flt, limit=limit, after=after, offset=offset)

    def provider_stats(self, flt: DeliveryFilter) -> list[ProviderStats]:
        with self._reading() as s:
            return s.provider_stats(flt)

    def destination_stats(self, flt: DeliveryFilter) -> list[ProviderStats]:
        with self._reading() as s:
            return s.destination_stats(flt)

    def event_type_stats(self, flt: DeliveryFilter) -> list[EventTypeStats]:
        with self._reading() as s:
            return s.event_type_stats(flt)

    def bucket_counts(
        self, flt: DeliveryFilter, *, start: datetime, step: timedelta, count: int
    ) -> list[tuple[int, int, int]]:
        with self._reading() as s:
            return s.bucket_counts(flt, start=start, step=step, count=count)

    def failure_streaks(self, flt: DeliveryFilter, *, per_event: bool = False) -> list[FailureStreak]:
        with self._reading() as s:
            return s.failure_streaks(flt, per_event=per_event)

    def unpublished_exports(self, *, stored_before: datetime) -> list[UnpublishedExport]:
        with self._reading() as s:
            return s.unpublished_exports(stored_before=stored_before)

    def export_counts(self) -> tuple[int, int]:
        with self._reading() as s:
            return s.export_counts()

    # --- JobQueue ------------------------------------------------------------------------------------
    def enqueue_jobs(
        self, jobs: Sequence[NewJob], *, records: Sequence[RecordPut] = (), claim: ClaimNew | None = None
    ) -> list[Enqueued]:
        with self._writing() as s:
            return s.enqueue_jobs(jobs, records=records, claim=claim)

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
        with self._writing() as s:
            return s.claim_jobs(
                owner,
                limit=limit,
                lease_seconds=lease_seconds,
                exclude_providers=exclude_providers,
                job_ids=job_ids,
                providers=providers,
                now=now,
            )

    def extend_leases(self, owner: str, job_ids: Sequence[str], *, lease_seconds: float) -> list[str]:
        with self._writing() as s:
            return s.extend_leases(owner, job_ids, lease_seconds=lease_seconds)

    def complete_jobs(
        self,
        owner: str,
        items: Sequence[tuple[str, dict[str, Any], JobOutcome]],
        *,
        notes: Mapping[str, CompletionNote] | None = None,
    ) -> list[tuple[StoredDelivery, Job, bool]]:
        with self._writing() as s:
            return s.complete_jobs(owner, items, notes=notes)

    def release_jobs(
        self, owner: str, job_ids: Sequence[str], *, run_after: datetime | None = None, uncount: bool = False
    ) -> int:
        with self._writing() as s:
            return s.release_jobs(owner, job_ids, run_after=run_after, uncount=uncount)

    def reclaim_expired(self, *, now: datetime | None = None) -> int:
        with self._writing() as s:
            return s.reclaim_expired(now=now)

    def get_job(self, job_id: str) -> Job | None:
        with self._reading() as s:
            return s.get_job(job_id)

    def get_job_by_key(self, idempotency_key: str) -> Job | None:
        with self._reading() as s:
            return s.get_job_by_key(idempotency_key)

    def list_jobs(self, flt: JobFilter, *, limit: int = 1000) -> list[Job]:
        with self._reading() as s:
            return s.list_jobs(flt, limit=limit)

    def queue_stats(self, *, now: datetime | None = None) -> QueueStats:
        with self._reading() as s:
            return s.queue_stats(now=now)

    def purge_jobs(self, *, states: Sequence[str], finished_before: datetime, dry_run: bool = False) -> int:
        with self._writing() as s:
            return s.purge_jobs(states=states, finished_before=finished_before, dry_run=dry_run)

    def update_destination(self, provider: str, change: Callable[[Destination, datetime], T]) -> T:
        with self._writing() as s:
            return s.update_destination(provider, change)

    def list_destinations(self) -> list[Destination]:
        with self._reading() as s:
            return s.list_destinations()
