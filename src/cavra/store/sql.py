"""The SQL backend (SQLite and PostgreSQL): one schema, SQLAlchemy 2.0 Core, migrations on open.

Appends are serialised per database: SQLite takes the write lock at ``BEGIN IMMEDIATE``; PostgreSQL locks
the ``chain_head`` row with ``SELECT ... FOR UPDATE``. Inside that lock the store reads the head, writes
the document, its provider index rows and the new head, and commits, so any number of processes append
to one intact chain. Reads never block appenders (WAL on SQLite, MVCC on PostgreSQL). Outbox jobs
(:mod:`cavra.store.sqljobs`) use the same write transactions; a job's completion appends its delivery
record and sets the job's state in one of them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from cavra.errors import StoreError, UnstorableError
from cavra.events import canonical_json
from cavra.store import aggquery as agg
from cavra.store import hourly, rawsql
from cavra.store import sqljobs as sj
from cavra.store import sqlquery as q
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
    check_kind,
    check_metadata_kind,
    check_purge_states,
    iso,
    utc,
)
from cavra.store.chain import ChainEntry, ChainHead, ChainIter
from cavra.store.checkpoint import Checkpoint
from cavra.store.checkpoint_signer import HeadSigner
from cavra.store.document import delivery_columns, index_rows, new_delivery_id
from cavra.store.engine import Location, create_engine, scrub
from cavra.store.groups import GroupAccess
from cavra.store.jobs import (
    RUNNING,
    ClaimNew,
    Destination,
    Enqueued,
    Job,
    JobFilter,
    JobOutcome,
    NewJob,
    QueueStats,
    RecordPut,
    job_section,
)
from cavra.store.migrate import current_revision, upgrade_engine
from cavra.store.schema import CHAIN_NAME, chain_head, deliveries, destinations, provider_deliveries, records
from cavra.store.schema import jobs as jobs_table
from cavra.store.sqlappend import Append, append_batch, read_checkpoint, replace_checkpoint
from cavra.store.sqlgroups import SqlGroups

log = logging.getLogger("cavra.store")
T = TypeVar("T")

_BATCH = 500
#: the first schema revision with the aggregate tables
AGGREGATES_REVISION = 5
#: the first schema revision with the chain_checkpoints table
CHECKPOINTS_REVISION = 7
DESTINATIONS_REVISION = 8
HOURLY_REVISION = 10
_INDEX_COLUMNS = [c.name for c in provider_deliveries.c if c.name != "id"]


class SqlStore(Store):
    """SQLite or PostgreSQL store. Open it with :func:`cavra.store.open_store`."""

    def __init__(self, loc: Location, engine: sa.Engine) -> None:
        self.backend = loc.backend
        self._loc = loc
        self.engine = engine
        #: the schema keeps aggregates (revision 0005 or later): appends update them, dashboards read them
        self.aggregates = True
        #: the schema keeps signed checkpoints (revision 0007 or later)
        self.checkpoints = True
        #: the index has the destination column (revision 0008 or later)
        self.destinations = True
        #: the schema keeps hourly counts and operator pauses (revision 0010 or later)
        self.hours = True
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if loc.backend == "sqlite" else nullcontext()
        )

    @classmethod
    def open(cls, loc: Location, *, migrate: bool = True) -> SqlStore:
        """Connect (creating a SQLite file) and, unless ``migrate=False``, upgrade to the newest schema."""
        store = cls(loc, create_engine(loc))
        try:
            with store._errors("cannot open the store"):
                if migrate:
                    upgrade_engine(store.engine)
                else:  # an older schema is written as it is; revision 0005 counts its rows when it comes
                    revision = store.revision()
                    store.aggregates = _has_aggregates(revision)
                    store.checkpoints = _at_least(revision, CHECKPOINTS_REVISION)
                    store.destinations = _at_least(revision, DESTINATIONS_REVISION)
                    store.hours = _at_least(revision, HOURLY_REVISION)
        except BaseException:
            store.close()
            raise
        return store

    def upgrade(self, revision: str = "head") -> str | None:
        """Apply migrations up to ``revision``; return the revision now current."""
        with self._errors("cannot upgrade the store"):
            return upgrade_engine(self.engine, revision)

    def revision(self) -> str | None:
        with self._errors("cannot read the store"), self.engine.connect() as conn:
            return current_revision(conn)

    @property
    def location(self) -> str:
        return self._loc.display

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Database errors as StoreError; those that writing the same data again would repeat (see
        :func:`refuses_data`) as UnstorableError."""
        try:
            yield
        except sa.exc.SQLAlchemyError as exc:
            reason = scrub(str(getattr(exc, "orig", None) or exc), self._loc.url)
            if refuses_data(exc):
                said = f"the {self.backend} store refuses the data: {reason}"
                raise UnstorableError(f"{doing} at {self.location}: {said}", said) from None
            raise StoreError(f"{doing} at {self.location}: {reason}") from None
        except UnicodeEncodeError:
            said = "text that is not valid Unicode (a lone surrogate) is refused"
            raise UnstorableError(f"{doing} at {self.location}: {said}", said) from None

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A transaction that holds the database write lock on SQLite (``BEGIN IMMEDIATE``).

        On SQLite the threads of one process queue on an in-process lock first: SQLite admits one writer,
        and a thread that finds the database locked sleeps in the busy handler (1, 2, 5, 10 ... ms) instead
        of starting when the writer before it commits. Other processes still wait in the busy handler."""
        with self._write_lock, self._errors("cannot write to the store"), self.engine.connect() as conn:
            conn.execution_options(cavra_immediate=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[sa.Connection]:
        with self._errors("cannot read the store"), self.engine.connect() as conn:
            if snapshot and self.backend == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    # --- plain records -------------------------------------------------------------------------------
    def put_record(self, kind: str, record_id: str, body: dict[str, Any]) -> None:
        check_kind(kind)
        with self._write() as conn:
            self._put(conn, kind, record_id, body, datetime.now(UTC))

    def _put(self, conn: sa.Connection, kind: str, record_id: str, body: Any, now: datetime) -> None:
        _UPSERT_RECORD.run(conn, [kind, record_id, canonical_json(body).decode(), now, now])

    def with_records(self, work: Callable[[RecordAccess], T]) -> T:
        with self._write() as conn:
            return work(_Records(self, conn))

    def with_groups(self, work: Callable[[GroupAccess], T]) -> T:
        with self._write() as conn:
            return work(SqlGroups(conn, self.backend))

    def get_record_entry(self, kind: str, record_id: str) -> StoredRecord | None:
        check_kind(kind)
        with self._read() as conn:  # on every deliver request (the integration): driver SQL
            found = _RECORD_ENTRY.rows(conn, [kind, record_id])
        if not found:
            return None
        body, created_at, updated_at = found[0]
        return StoredRecord(kind, record_id, json.loads(body), created_at, updated_at)

    def list_record_entries(self, kind: str) -> list[StoredRecord]:
        check_kind(kind)
        stmt = (
            sa.select(records)
            .where(records.c.kind == kind)
            .order_by(records.c.created_at, records.c.record_id)
        )
        with self._read() as conn:
            return [_record(m) for m in conn.execute(stmt).mappings()]

    def delete_record(self, kind: str, record_id: str) -> bool:
        check_kind(kind)
        stmt = sa.delete(records).where(records.c.kind == kind, records.c.record_id == record_id)
        with self._write() as conn:
            return conn.execute(stmt).rowcount > 0

    # --- the chain -----------------------------------------------------------------------------------
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
        check_metadata_kind(metadata_kind)
        item = Append(record, metadata_kind, subject_kind, subject_id, integration_id, created_at)
        with self._write() as conn:
            return append_batch(
                conn,
                [item],
                aggregates=self.aggregates,
                destinations=self.destinations,
                hours=self.hours,
                signer=self._signer(),
            )[0]

    def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        stmt = sa.select(deliveries).where(deliveries.c.id == delivery_id)
        with self._read() as conn:
            row = conn.execute(stmt).mappings().first()
        if row is None:
            return None
        doc = _document(row)
        if doc is None:
            raise StoreError(f"{self.location}: stored delivery {delivery_id} is not valid JSON")
        return doc

    def _signer(self) -> HeadSigner | None:
        return self.head_signer() if self.checkpoints else None

    def chain(self) -> ChainIter:
        """The walk, started: its head and checkpoint are read (with the first batch) before it returns."""
        walk = ChainIter()
        entries = self._entries(walk)
        first = next(entries, None)
        walk.entries = entries if first is None else _started(first, entries)
        return walk

    def store_checkpoint(self, checkpoint: Checkpoint) -> bool:
        if not self.checkpoints:
            raise StoreError(f"{self.location}: the schema is older than revision 0007; run cavra db upgrade")
        with self._write() as conn:
            return replace_checkpoint(conn, checkpoint)

    def _entries(self, walk: ChainIter) -> Generator[ChainEntry]:
        """Every stored delivery in sequence order, read in batches within one snapshot with the head."""
        head_stmt = sa.select(chain_head).where(chain_head.c.name == CHAIN_NAME)
        with self._read(snapshot=True) as conn:
            m = conn.execute(head_stmt).mappings().one()
            walk.head = ChainHead(int(m["count"]), m["last_id"], m["last_sha256"])
            walk.checkpoint = read_checkpoint(conn) if self.checkpoints else None
            last = 0
            while True:
                batch = list(
                    conn.execute(
                        sa.select(deliveries)
                        .where(deliveries.c.sequence > last)
                        .order_by(deliveries.c.sequence)
                        .limit(_BATCH)
                    ).mappings()
                )
                if not batch:
                    return
                last = int(batch[-1]["sequence"])
                index = self._index_of(conn, [m["id"] for m in batch], destinations=self.destinations)
                yield from (_entry(m, index.get(m["id"], []), self.destinations) for m in batch)

    @staticmethod
    def _index_of(
        conn: sa.Connection, ids: list[str], *, destinations: bool
    ) -> dict[str, list[dict[str, Any]]]:
        """The index rows of ``ids`` (a schema older than revision 0008 has no destination column)."""
        pd = provider_deliveries
        names = [n for n in _INDEX_COLUMNS if destinations or n != "destination"]
        stmt = (
            sa.select(*[pd.c[n] for n in names])
            .where(pd.c.delivery_id.in_(ids))
            .order_by(pd.c.delivery_id, pd.c.position)
        )
        index: dict[str, list[dict[str, Any]]] = {}
        for r in conn.execute(stmt).mappings():
            index.setdefault(r["delivery_id"], []).append(dict(r))
        return index

    # --- queries -------------------------------------------------------------------------------------
    def count_provider_deliveries(self, flt: DeliveryFilter) -> int:
        with self._read() as conn:
            fast = agg.count(conn, flt) if self.aggregates else None
            return fast if fast is not None else int(conn.execute(q.count_stmt(flt)).scalar_one())

    def page_provider_deliveries(
        self, flt: DeliveryFilter, *, limit: int, after: Cursor | None = None, offset: int = 0
    ) -> list[ProviderDeliveryRow]:
        with self._read() as conn:
            return [q.to_row(m) for m in conn.execute(q.page_stmt(flt, limit, after, offset)).mappings()]

    def provider_stats(self, flt: DeliveryFilter) -> list[ProviderStats]:
        with self._read() as conn:
            fast = agg.provider_stats(conn, flt) if self.aggregates else None
            return (
                fast if fast is not None else q.provider_stats(conn.execute(q.provider_stats_stmt(flt)).all())
            )

    def destination_stats(self, flt: DeliveryFilter) -> list[ProviderStats]:
        with self._read() as conn:
            fast = agg.destination_stats(conn, flt) if self.aggregates else None
            if fast is not None:
                return fast
            return q.provider_stats(conn.execute(q.destination_stats_stmt(flt)).all())

    def event_type_stats(self, flt: DeliveryFilter) -> list[EventTypeStats]:
        with self._read() as conn:
            fast = agg.event_type_stats(conn, flt) if self.aggregates else None
            if fast is not None:
                return fast
            return q.event_type_stats(conn.execute(q.event_type_stats_stmt(flt)).all())

    def bucket_counts(
        self, flt: DeliveryFilter, *, start: datetime, step: timedelta, count: int
    ) -> list[tuple[int, int, int]]:
        whole = flt.narrowed(since=start, until=start + count * step)
        if not (self.hours and step % hourly.HOUR == timedelta(0) and hourly.supports(whole)):
            return super().bucket_counts(flt, start=start, step=step, count=count)
        with self._read() as conn:
            per_hour = hourly.hours(conn, whole)
        return hourly.fold(per_hour, start=start, step=step, count=count)

    def failure_streaks(self, flt: DeliveryFilter, *, per_event: bool = False) -> list[FailureStreak]:
        with self._read(snapshot=True) as conn:
            fast = agg.failure_streaks(conn, flt, per_event) if self.aggregates else None
            if fast is None and self.destinations and self.aggregates and not per_event:
                fast = hourly.destination_streak(conn, flt)
            if fast is not None:
                return fast
            rows = conn.execute(q.streaks_stmt(flt, per_event)).all()
            last_ids = [int(r[-1]) for r in rows]
            errors: dict[int, str | None] = {}
            if last_ids:
                errors = {int(i): e for i, e in conn.execute(q.errors_stmt(last_ids)).all()}
        return q.streaks(rows, per_event, errors)

    def unpublished_exports(self, *, stored_before: datetime) -> list[UnpublishedExport]:
        with self._read() as conn:
            return q.unpublished(conn.execute(q.unpublished_stmt(stored_before)).all())

    def export_counts(self) -> tuple[int, int]:
        with self._read() as conn:
            total, delivered = conn.execute(q.export_counts_stmt()).one()
        return int(total), int(delivered)

    # --- the outbox (statements in cavra.store.sqljobs) ----------------------------------------------
    def enqueue_jobs(
        self, jobs: Sequence[NewJob], *, records: Sequence[RecordPut] = (), claim: ClaimNew | None = None
    ) -> list[Enqueued]:
        for job in jobs:
            check_metadata_kind(job.kind)
        for put in records:
            check_kind(put.kind)
        now = datetime.now(UTC)
        with self._write() as conn:
            for put in records:
                self._put(conn, put.kind, put.record_id, dict(put.body), now)
            return sj.enqueue(conn, self.backend, jobs, now, claim)

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
        when = utc(now or datetime.now(UTC))
        with self._write() as conn:
            return sj.claim(
                conn,
                self.backend,
                owner,
                limit=limit,
                lease_seconds=lease_seconds,
                exclude=exclude_providers,
                job_ids=job_ids,
                providers=providers,
                now=when,
            )

    def extend_leases(self, owner: str, job_ids: Sequence[str], *, lease_seconds: float) -> list[str]:
        with self._write() as conn:
            return sj.extend(conn, owner, job_ids, lease_seconds, datetime.now(UTC))

    def complete_jobs(
        self,
        owner: str,
        items: Sequence[tuple[str, dict[str, Any], JobOutcome]],
        *,
        notes: Mapping[str, CompletionNote] | None = None,
    ) -> list[tuple[StoredDelivery, Job, bool]]:
        if not items:
            return []
        now = datetime.now(UTC)
        with self._write() as conn:
            # job rows are locked (and read) in id order, then the chain head (as everywhere): no deadlock
            held = sj.lock_jobs(conn, [job_id for job_id, _r, _o in items])
            finished: list[tuple[Job, bool]] = []
            appends: list[Append] = []
            for job_id, record, outcome in items:
                job = held.get(job_id)
                if job is None:
                    raise StoreError(f"{self.location}: job {job_id} not found")
                delivery_id = new_delivery_id()
                mine = job.state == RUNNING and job.lease_owner == owner
                if mine:
                    job = held[job_id] = sj.finished(job, outcome, delivery_id, now)
                section = job_section(job, outcome, mine)
                appends.append(
                    Append({**record, "job": section}, delivery_id=delivery_id, **job.append_args())
                )
                finished.append((job, mine))
            sj.write_finished(conn, owner, [job for job, mine in finished if mine])
            stored = append_batch(
                conn,
                appends,
                aggregates=self.aggregates,
                destinations=self.destinations,
                hours=self.hours,
                signer=self._signer(),
            )
            for (job_id, _r, _o), one in zip(items, stored, strict=True):
                note = (notes or {}).get(job_id)
                if note is not None:
                    self._note(conn, note, one)
        return [(s, job, mine) for s, (job, mine) in zip(stored, finished, strict=True)]

    def _note(self, conn: sa.Connection, note: CompletionNote, stored: StoredDelivery) -> None:
        """Run a completion note in a savepoint: if its own logic fails, what it wrote is undone and it is
        logged, and the completion (the record and the job's state) is written all the same; if the database
        fails, the completion fails with it (and is written again, note and all, by the caller's retry)."""
        savepoint = conn.begin_nested()
        try:
            note(_Records(self, conn), stored)
        except sa.exc.DBAPIError:
            raise  # the database failed (a deadlock, a lost connection): the whole completion is retried
        except Exception:
            savepoint.rollback()
            log.exception("a completion note failed for delivery %s (the record is stored)", stored.id)
        else:
            savepoint.commit()

    def release_jobs(
        self, owner: str, job_ids: Sequence[str], *, run_after: datetime | None = None, uncount: bool = False
    ) -> int:
        with self._write() as conn:
            return sj.release(
                conn, owner, job_ids, run_after=run_after, uncount=uncount, now=datetime.now(UTC)
            )

    def reclaim_expired(self, *, now: datetime | None = None) -> int:
        with self._write() as conn:
            return sj.reclaim(conn, utc(now or datetime.now(UTC)))

    def get_job(self, job_id: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).mappings().first()
        return None if row is None else sj.to_job(row)

    def get_job_by_key(self, idempotency_key: str) -> Job | None:
        stmt = sa.select(jobs_table).where(jobs_table.c.idempotency_key == idempotency_key)
        with self._read() as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else sj.to_job(row)

    def list_jobs(self, flt: JobFilter, *, limit: int = 1000) -> list[Job]:
        with self._read() as conn:
            return [sj.to_job(m) for m in conn.execute(sj.select_jobs(flt, limit)).mappings()]

    def queue_stats(self, *, now: datetime | None = None) -> QueueStats:
        with self._read(snapshot=True) as conn:
            return sj.stats(conn, utc(now or datetime.now(UTC)))

    def purge_jobs(self, *, states: Sequence[str], finished_before: datetime, dry_run: bool = False) -> int:
        """Count each state's matching jobs in a read transaction, then delete them in chunks of
        :data:`~cavra.store.sqljobs.PURGE_CHUNK`, one write transaction each (SQLite's write lock is held
        for one chunk; workers claim and complete between chunks)."""
        wanted = check_purge_states(states)
        before = utc(finished_before)
        purged = 0
        for state in wanted:
            with self._read() as conn:
                count, last_run_after = sj.purge_count(conn, state, before)
            if dry_run or last_run_after is None:
                purged += count
                continue
            left = count  # no more can match than the count saw (a job that changes since no longer does)
            while left > 0:
                with self._write() as conn:
                    n = sj.purge_chunk(conn, state, before, last_run_after)
                purged += n
                left -= n
                if n < sj.PURGE_CHUNK:
                    break
        return purged

    def update_destination(self, provider: str, change: Callable[[Destination, datetime], T]) -> T:
        with self._write() as conn:
            return sj.update_destination(conn, self.backend, provider, change, datetime.now(UTC))

    def list_destinations(self) -> list[Destination]:
        with self._read() as conn:
            rows = conn.execute(sa.select(destinations).order_by(destinations.c.provider)).mappings()
            return [sj.to_destination(m) for m in rows]


#: create or replace a record, ``created_at`` kept (the same SQL on SQLite and PostgreSQL)
_UPSERT_RECORD = rawsql.insert(
    records,
    ["kind", "record_id", "body", "created_at", "updated_at"],
    ' ON CONFLICT ("kind", "record_id") DO UPDATE SET "body" = excluded."body", '
    '"updated_at" = excluded."updated_at"',
)
_RECORD_ENTRY = rawsql.Raw(
    'SELECT "body", "created_at", "updated_at" FROM records WHERE "kind" = ? AND "record_id" = ?',
    [records.c.kind.type, records.c.record_id.type],
    result=[records.c.body.type, records.c.created_at.type, records.c.updated_at.type],
)
#: a record's body, its row locked (PostgreSQL; SQLite's write transaction holds the database lock)
_RECORD_BODY_LOCKED = {
    backend: rawsql.Raw(
        f'SELECT "body" FROM records WHERE "kind" = ? AND "record_id" = ?{lock}',  # noqa: S608 - constant
        [records.c.kind.type, records.c.record_id.type],
    )
    for backend, lock in (("sqlite", ""), ("postgresql", " FOR UPDATE"))
}


def _started(first: ChainEntry, rest: Generator[ChainEntry]) -> Iterator[ChainEntry]:
    """A walk already started (``first`` read); closing it ends the walk's read transaction."""
    try:
        yield first
        yield from rest
    finally:
        rest.close()


#: SQLSTATE classes of errors the same data repeats: 22 data exception (a NUL character, a value too long or
#: out of range, bad encoding), 54 program limit exceeded (a value too large)
_DATA_SQLSTATE_CLASSES = ("22", "54")


def refuses_data(exc: sa.exc.SQLAlchemyError) -> bool:
    """The database refused the data itself (writing it again fails again), as opposed to a failure that
    may pass (a lost connection, a lock or statement timeout, a deadlock, a full disk)."""
    if isinstance(exc, sa.exc.DataError):  # PostgreSQL class 22, SQLite "string or blob too big"
        return True
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(state, str) and state[:2] in _DATA_SQLSTATE_CLASSES


def _has_aggregates(revision: str | None) -> bool:
    return _at_least(revision, AGGREGATES_REVISION)


def _at_least(revision: str | None, wanted: int) -> bool:
    return revision is not None and revision.isdigit() and int(revision) >= wanted


def _record(m: sa.RowMapping) -> StoredRecord:
    return StoredRecord(m["kind"], m["record_id"], json.loads(m["body"]), m["created_at"], m["updated_at"])


def _entry(m: sa.RowMapping, index: list[dict[str, Any]], destinations: bool = True) -> ChainEntry:
    doc = _document(m)
    expected = None if doc is None else index_rows(doc, m["created_at"])
    if expected is not None and not destinations:  # before revision 0008 the index has no destination
        expected = [{k: v for k, v in row.items() if k != "destination"} for row in expected]
    columns = {k: m[k] for k in delivery_columns({})} | {"created_at": iso(m["created_at"])}
    return ChainEntry(
        delivery_id=m["id"],
        sequence=int(m["sequence"]),
        document=doc,
        columns=columns,
        expected_columns=None if doc is None else delivery_columns(doc),
        index=index,
        expected_index=expected,
    )


def _document(m: sa.RowMapping) -> dict[str, Any] | None:
    try:
        doc = json.loads(m["record"])
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    doc["previous_sha256"] = m["previous_sha256"]
    doc["record_sha256"] = m["record_sha256"]
    return doc


class _Records:
    """Plain records inside one of the store's write transactions (rows locked on PostgreSQL)."""

    def __init__(self, store: SqlStore, conn: sa.Connection) -> None:
        self._store = store
        self._conn = conn

    def get(self, kind: str, record_id: str) -> dict[str, Any] | None:
        check_kind(kind)
        found = _RECORD_BODY_LOCKED[self._store.backend].rows(self._conn, [kind, record_id])
        return None if not found else dict(json.loads(found[0][0]))

    def put(self, kind: str, record_id: str, body: dict[str, Any]) -> None:
        check_kind(kind)
        self._store._put(self._conn, kind, record_id, body, datetime.now(UTC))
