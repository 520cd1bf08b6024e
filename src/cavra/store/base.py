"""The store contract: record kinds, delivery filters, query results and the :class:`Store` interface.

Three backends implement it (:mod:`cavra.store.sql` for SQLite and PostgreSQL, :mod:`cavra.store.jsonfile`
for the seed's ``--metadata-json`` file). Faces never use a backend directly: they call
:func:`cavra.store.open_store` and the service layer calls these methods.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from cavra.errors import InputError
from cavra.store.chain import ChainHead, ChainIter, ChainReport, HeadClaim, verify_entries

if TYPE_CHECKING:
    from cavra.store.checkpoint import Checkpoint
    from cavra.store.checkpoint_keys import CheckpointKey
    from cavra.store.checkpoint_signer import HeadSigner
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

#: Kinds of plain records (latest state by id; not chained).
RECORD_KINDS = (
    "integration",
    "evidence_bundle",
    "promotion_execution",
    "rollback_execution",
    "endpoint_export",
    "endpoint_publication",
    "unrouted_event",
    # operator actions taken through the console, and alert acknowledgements (cavra.governance.actions)
    "console_action",
    "alert_silence",
)

RELEASE_DELIVERY = "release-connector-delivery"
PUBLICATION_DELIVERY = "endpoint-management-publication-delivery"
INTEGRATION_DELIVERY = "integration-delivery"
#: an event published through the routes (``POST /events``), one record per destination
EVENT_DELIVERY = "event-delivery"
#: the evidence that a published event matched no route (a record with no deliveries)
UNROUTED_EVENT = "unrouted-event"
#: a destination test (``cavra destinations test``): stored as evidence, never counted in a dashboard
TEST_DELIVERY = "destination-test-delivery"
#: one grouped message (cavra.grouping): the record lists every member's event id; each member's own
#: record (``event-delivery``) names it in ``group.group_delivery_id``
GROUP_DELIVERY = "group-delivery"
#: How a stored delivery is indexed; history and dashboards select by these.
METADATA_KINDS = (
    RELEASE_DELIVERY,
    PUBLICATION_DELIVERY,
    INTEGRATION_DELIVERY,
    EVENT_DELIVERY,
    UNROUTED_EVENT,
    TEST_DELIVERY,
    GROUP_DELIVERY,
)


def utc(ts: datetime) -> datetime:
    """An aware UTC datetime (naive input is taken as UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 in UTC with microseconds and ``Z`` (the format of every store timestamp)."""
    if ts is None:
        return None
    return utc(ts).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    """Parse a timestamp written by :func:`iso` (or any ISO 8601 text) into aware UTC."""
    return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def check_kind(kind: str) -> str:
    if kind not in RECORD_KINDS:
        raise InputError(f"unknown record kind {kind!r} (expected one of: {', '.join(RECORD_KINDS)})")
    return kind


def check_metadata_kind(kind: str) -> str:
    if kind not in METADATA_KINDS:
        raise InputError(f"unknown metadata kind {kind!r} (expected one of: {', '.join(METADATA_KINDS)})")
    return kind


class RecordAccess(Protocol):
    """Plain records inside a store transaction (:meth:`Store.with_records`, completion notes)."""

    def get(self, kind: str, record_id: str) -> dict[str, Any] | None: ...

    def put(self, kind: str, record_id: str, body: dict[str, Any]) -> None: ...


#: ``note(records, stored)``: run in a job completion's transaction, after its record is stored, to keep a
#: plain record in step with it (an integration's ``last_delivery``, an export's publication outcomes)
CompletionNote = Callable[[RecordAccess, "StoredDelivery"], None]


@dataclass(frozen=True)
class StoredRecord:
    """A plain record with the times the store first and last saw it."""

    kind: str
    record_id: str
    body: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredDelivery:
    """A delivery record as stored: its document (record, store fields, hashes) and place in the chain."""

    id: str
    sequence: int
    metadata_kind: str
    created_at: datetime
    record_sha256: str
    previous_sha256: str
    document: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.document)


@dataclass(frozen=True)
class DeliveryFilter:
    """Which provider deliveries a query covers. ``None`` means "any"; times are ``since <= t < until``."""

    metadata_kinds: tuple[str, ...] | None = None
    provider: str | None = None
    destination: str | None = None
    integration_id: str | None = None
    event_type: str | None = None
    event_type_contains: str | None = None
    event_id: str | None = None
    success: bool | None = None
    status: str | None = None
    subject_kind: str | None = None
    subject_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def narrowed(self, **changes: Any) -> DeliveryFilter:
        return replace(self, **changes)


@dataclass(frozen=True)
class ProviderDeliveryRow:
    """One provider delivery (one ``deliveries[]`` item of a stored record): the unit of history."""

    row_id: int
    delivery_id: str
    provider: str
    success: bool
    status: str
    status_code: int | None
    attempt_count: int
    event_type: str | None
    event_id: str | None
    metadata_kind: str
    integration_id: str | None
    subject_kind: str | None
    subject_id: str | None
    created_at: datetime
    error: str | None
    destination: str | None = None

    @property
    def failed(self) -> bool:
        return not self.success and self.status != "pending"

    def to_item(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "provider": self.provider,
            "destination": self.destination or self.provider,
            "success": self.success,
            "status": self.status,
            "status_code": self.status_code,
            "attempt_count": self.attempt_count,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "metadata_kind": self.metadata_kind,
            "integration_id": self.integration_id,
            "subject_kind": self.subject_kind,
            "subject_id": self.subject_id,
            "created_at": iso(self.created_at),
            "error": self.error,
        }


@dataclass(frozen=True)
class ProviderStats:
    """Aggregates of one provider's deliveries (counted per provider delivery)."""

    provider: str
    total: int
    succeeded: int
    failed: int
    pending: int
    attempts: int
    last_success_at: datetime | None
    last_failure_at: datetime | None
    first_failure_at: datetime | None
    #: set by :meth:`Store.destination_stats`: the destination these figures are about (``provider``: the
    #: provider of its latest delivery)
    destination: str | None = None


@dataclass(frozen=True)
class EventTypeStats:
    event_type: str | None
    total: int
    succeeded: int
    failed: int


@dataclass(frozen=True)
class FailureStreak:
    """Failed deliveries after the latest success of a group (a provider, or a provider and event)."""

    provider: str
    event_id: str | None
    event_type: str | None
    count: int
    since: datetime
    last_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class UnpublishedExport:
    """An endpoint export with no successful publication delivery."""

    export_id: str
    stored_at: datetime
    failed_deliveries: int
    last_error: str | None


@dataclass(frozen=True)
class Cursor:
    """Keyset position: the (created_at, row_id) of the last item of a page."""

    created_at: datetime
    row_id: int


class Store(abc.ABC):
    """The evidence metadata store. Methods are synchronous and safe to call from several threads."""

    #: ``sqlite``, ``postgresql`` or ``json``
    backend: str = ""
    #: signs the chain head at every append batch (``open_store`` sets it from ``CAVRA_CHECKPOINT_KEY`` or
    #: ``CAVRA_CHECKPOINT_KEY_FILE``; see :mod:`cavra.store.checkpoint_keys`); ``None``: no checkpoints
    checkpoint_signer: CheckpointKey | None = None
    #: keys a stored checkpoint may be signed with besides the signer's (an old public key after rotation)
    checkpoint_verifiers: Mapping[str, CheckpointKey] = {}
    _head_signer_cache: HeadSigner | None = None

    def head_signer(self) -> HeadSigner | None:
        """What signs the head at each append batch (``None`` without a key): see
        :mod:`cavra.store.checkpoint_signer`."""
        key = self.checkpoint_signer
        if key is None:
            return None
        cached = self._head_signer_cache
        if cached is None or cached.key is not key:
            from cavra.store.checkpoint_signer import HeadSigner

            cached = self._head_signer_cache = HeadSigner(key, self.checkpoint_verifiers)
        return cached

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the store lives, safe to print (DB URL passwords redacted)."""

    # --- plain records -------------------------------------------------------------------------------
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

        check_kind(kind)
        return self.with_records(work)

    def list_records(self, kind: str) -> list[dict[str, Any]]:
        return [entry.body for entry in self.list_record_entries(kind)]

    # --- chained delivery records --------------------------------------------------------------------
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

    # --- queries for history and dashboards ----------------------------------------------------------
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

    # --- the outbox (cavra.store.jobs; docs/operations.md) --------------------------------------------
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

    # --- lifecycle -----------------------------------------------------------------------------------
    def with_groups(self, work: Callable[[GroupAccess], T]) -> T:
        """Run ``work`` on the group state in one write transaction (:mod:`cavra.store.groups`)."""
        raise InputError(f"{self.location}: this store keeps no notification groups")

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections and locks."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def normalize_kinds(kinds: Sequence[str] | None) -> tuple[str, ...] | None:
    if kinds is None:
        return None
    return tuple(check_metadata_kind(k) for k in kinds)


def check_purge_states(states: Sequence[str]) -> tuple[str, ...]:
    """The states :meth:`Store.purge_jobs` may delete (final ones), deduplicated in order; anything else is
    refused naming the state."""
    from cavra.store.jobs import FINAL_STATES, JOB_STATES

    out: list[str] = []
    for state in states:
        if state not in FINAL_STATES:
            why = "it is still to be delivered" if state in JOB_STATES else "not a job state"
            raise InputError(
                f"state {state!r}: only finished jobs ({', '.join(FINAL_STATES)}) can be purged ({why})"
            )
        if state not in out:
            out.append(state)
    if not out:
        raise InputError(f"no state to purge (give one or more of: {', '.join(FINAL_STATES)})")
    return tuple(out)
