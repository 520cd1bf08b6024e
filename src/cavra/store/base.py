"""The store contract: record kinds, delivery filters, query results and the :class:`Store` interface.

:class:`Store` composes the four seams of :mod:`cavra.store.interfaces` (plain records, the delivery chain,
the delivery log, the job queue). One engine implements it: :mod:`cavra.store.sql` for SQLite and
PostgreSQL, which :mod:`cavra.store.jsonfile` runs on an in-memory SQLite database for the seed's
``--metadata-json`` file. Faces never use a backend directly: they call
:func:`cavra.store.open_store` and the service layer calls these methods.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from cavra.errors import InputError
from cavra.store.interfaces import DeliveryChain, DeliveryLog, JobQueue, RecordStore

if TYPE_CHECKING:
    from cavra.store.checkpoint_keys import CheckpointKey
    from cavra.store.checkpoint_signer import HeadSigner
    from cavra.store.groups import GroupAccess

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


class Store(RecordStore, DeliveryChain, DeliveryLog, JobQueue):
    """The evidence metadata store: the four seams of :mod:`cavra.store.interfaces`, a location and a
    lifecycle. Methods are synchronous and safe to call from several threads."""

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

    # --- lifecycle -----------------------------------------------------------------------------------
    def with_groups(self, work: Callable[[GroupAccess], T]) -> T:
        """Run ``work`` on the group state in one write transaction (:mod:`cavra.store.groups`)."""
        raise InputError(f"{self.location}: this store keeps no notification groups")

    def close(self) -> None:
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
