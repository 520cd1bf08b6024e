"""The ``--metadata-json FILE`` backend: one JSON document, never half-written, safe for several processes.

Writers take an exclusive lock on ``FILE.lock`` (filelock), re-read the file, change it, write a temporary
file in the same directory, fsync it, rename it over ``FILE`` and fsync the directory. Readers need no lock:
a rename is atomic, so they see the old or the new file, never a mix. A file that is not a CAVRA metadata
document is never overwritten: every operation raises :class:`~cavra.errors.StoreError` naming it.

Layout (one delivery per line, so a diff or ``grep`` shows one record)::

    {"format": "cavra.evidence.metadata.v1", "version": 1,
     "chain": {"count": N, "last_id": "dlv_...", "last_sha256": "..."},
     "checkpoint": {cavra.evidence.checkpoint.v1 of the head: with a checkpoint key only},
     "records": {"<kind>": {"<id>": {"body": {...}, "created_at": "...", "updated_at": "..."}}},
     "deliveries": [ {stored document}, ... ]}
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import filelock

from cavra.errors import StoreError, UnstorableError
from cavra.events import canonical_json
from cavra.store import jsonformat as fmt
from cavra.store import memjobs as mj
from cavra.store import memquery as mq
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
from cavra.store.chain import ChainHead, ChainIter, record_hash
from cavra.store.checkpoint import Checkpoint
from cavra.store.document import build_document, new_delivery_id
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
from cavra.store.memgroups import MemGroups

log = logging.getLogger("cavra.store")

LOCK_TIMEOUT = 60.0
T = TypeVar("T")


@dataclass
class _Snapshot:
    """The parsed file and the (inode, mtime, size) it was read from.

    It is reused only while the file still has that identity *and* starts with the same ``write_id`` (a
    random token every write sets), so a quick rewrite that reuses an inode within one mtime tick is not
    mistaken for the file this process last saw.
    """

    key: tuple[int, int, int] | None
    data: dict[str, Any]
    rows: list[ProviderDeliveryRow] | None = None


class JsonFileStore(Store):
    """The JSON-file store. Open it with ``open_store(metadata_json=PATH)``."""

    backend = "json"

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self._lock_path = Path(f"{self.path}.lock")
        self._lock_timeout = lock_timeout
        self._mutex = threading.RLock()
        self._snap: _Snapshot | None = None
        self._lines: dict[int, tuple[Any, str]] = {}  # serialised deliveries of the current snapshot

    @property
    def location(self) -> str:
        return str(self.path)

    # --- file handling -------------------------------------------------------------------------------
    def check(self) -> None:
        """Read and validate the file now (open_store calls this so a corrupt file fails at once)."""
        self._load()

    def create(self) -> None:
        """Write an empty store file if there is none yet (``cavra db upgrade``); an existing one is kept."""
        if not self.path.exists():
            with self._update():
                pass

    def _load(self) -> _Snapshot:
        """The current file, parsed (or the cached parse, if the file is the one this process last saw)."""
        with self._mutex:
            try:
                fh = open(self.path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                self._snap, self._lines = _Snapshot(None, fmt.empty()), {}
                return self._snap
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot be read ({exc.strerror})") from None
            with fh:
                st = os.fstat(fh.fileno())
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                snap = self._snap
                if (
                    snap is not None
                    and snap.key == key
                    and fmt.write_id(fh.read(200)) == snap.data.get("write_id")
                ):
                    return snap
                fh.seek(0)
                raw = fh.read()
            self._snap = _Snapshot(key, self._parse(raw))
            self._lines = {}
            return self._snap

    def _parse(self, raw: bytes) -> dict[str, Any]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError(f"{self.path}: not UTF-8 text; the metadata file was left unchanged") from None
        if not text.strip():
            return fmt.empty()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreError(
                f"{self.path}: corrupt metadata file, not valid JSON (line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}); it was left unchanged"
            ) from None
        problem = fmt.shape_problem(data)
        if problem:
            raise StoreError(f"{self.path}: not a CAVRA metadata file ({problem}); it was left unchanged")
        return fmt.complete(data)

    @contextmanager
    def _update(self) -> Iterator[dict[str, Any]]:
        """Lock, re-read, let the caller change the document, write it atomically, unlock."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path.parent}: cannot create the directory ({exc.strerror})") from None
        lock = filelock.FileLock(str(self._lock_path), timeout=self._lock_timeout)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise StoreError(
                f"{self.path}: locked by another process ({self._lock_path} held for over "
                f"{self._lock_timeout:g}s)"
            ) from None
        except OSError as exc:
            raise StoreError(f"{self._lock_path}: cannot lock ({exc.strerror})") from None
        try:
            with self._mutex:
                snap = self._load()
                self._snap = None  # the snapshot is being changed; re-read if anything below fails
                yield snap.data
                snap.data["write_id"] = secrets.token_hex(8)
                snap.key, snap.rows = self._write(snap.data), None
                self._snap = snap
        finally:
            lock.release()

    def _write(self, data: dict[str, Any]) -> tuple[int, int, int]:
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(fmt.serialize(data, self._lines))
                fh.flush()
                os.fsync(fh.fileno())
            with suppress(FileNotFoundError):
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            if not self.path.exists():
                os.chmod(tmp, 0o644)
            st = os.stat(tmp)
            os.replace(tmp, self.path)
        except OSError as exc:
            with suppress(OSError):
                os.unlink(tmp)
            raise StoreError(f"{self.path}: cannot be written ({exc.strerror})") from None
        except UnicodeEncodeError:
            with suppress(OSError):
                os.unlink(tmp)
            said = "text that is not valid Unicode (a lone surrogate) cannot be stored"
            raise UnstorableError(f"{self.path}: {said}; the file was left unchanged", said) from None
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _rows(self) -> list[ProviderDeliveryRow]:
        with self._mutex:
            snap = self._load()
            if snap.rows is None:
                snap.rows = mq.rows_of(snap.data["deliveries"])
            return snap.rows

    # --- plain records -------------------------------------------------------------------------------
    def put_record(self, kind: str, record_id: str, body: dict[str, Any]) -> None:
        check_kind(kind)
        now = datetime.now(UTC)
        with self._update() as data:
            self._put(data, kind, record_id, body, now)

    def with_records(self, work: Callable[[RecordAccess], T]) -> T:
        with self._update() as data:
            return work(_Records(self, data))

    def with_groups(self, work: Callable[[GroupAccess], T]) -> T:
        with self._update() as data:
            return work(MemGroups(data))

    @staticmethod
    def _put(data: dict[str, Any], kind: str, record_id: str, body: dict[str, Any], now: datetime) -> None:
        plain = json.loads(json.dumps(body, default=str))
        kind_records = data["records"].setdefault(kind, {})
        old = kind_records.get(record_id)
        stamp = iso(now)
        created = old.get("created_at", stamp) if isinstance(old, dict) else stamp
        kind_records[record_id] = {"body": plain, "created_at": created, "updated_at": stamp}

    def get_record_entry(self, kind: str, record_id: str) -> StoredRecord | None:
        check_kind(kind)
        entry = self._load().data["records"].get(kind, {}).get(record_id)
        return None if entry is None else fmt.record(kind, record_id, entry)

    def list_record_entries(self, kind: str) -> list[StoredRecord]:
        check_kind(kind)
        entries = [fmt.record(kind, rid, e) for rid, e in self._load().data["records"].get(kind, {}).items()]
        return sorted(entries, key=lambda r: (r.created_at, r.record_id))

    def delete_record(self, kind: str, record_id: str) -> bool:
        check_kind(kind)
        if record_id not in self._load().data["records"].get(kind, {}):
            return False
        with self._update() as data:
            return data["records"].get(kind, {}).pop(record_id, None) is not None

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
        with self._update() as data:
            before = fmt.head(data)
            stored = self._append(
                data,
                record,
                metadata_kind=metadata_kind,
                subject_kind=subject_kind,
                subject_id=subject_id,
                integration_id=integration_id,
                created_at=created_at,
            )
            self._sign(data, before)
            return stored

    def _sign(self, data: dict[str, Any], before: ChainHead) -> None:
        """With a checkpoint key, sign the head once per append batch (kept in ``checkpoint``) if the head
        the batch found extends the stored checkpoint (:mod:`cavra.store.checkpoint_signer`)."""
        signer = self.head_signer()
        if signer is None:
            return
        prior = data.get("checkpoint")
        head = fmt.head(data)
        signed = signer.sign(
            canonical_json(prior).decode() if isinstance(prior, dict) else None,
            (before.count, before.last_id, before.last_sha256),
            (head.count, head.last_id, head.last_sha256),
            datetime.now(UTC),
        )
        if signed is not None:
            data["checkpoint"] = json.loads(signed[1])

    def store_checkpoint(self, checkpoint: Checkpoint) -> bool:
        with self._update() as data:
            head = fmt.head(data)
            if (head.count, head.last_id, head.last_sha256) != (
                checkpoint.count,
                checkpoint.last_id,
                checkpoint.head_sha256,
            ):
                return False
            data["checkpoint"] = checkpoint.to_dict()
        return True

    def _append(
        self,
        data: dict[str, Any],
        record: dict[str, Any],
        *,
        metadata_kind: str,
        subject_kind: str | None,
        subject_id: str | None,
        integration_id: str | None,
        created_at: datetime | None = None,
    ) -> StoredDelivery:
        """Append to the document the caller holds under the file lock."""
        created = utc(created_at or datetime.now(UTC))
        delivery_id = new_delivery_id()
        head = fmt.head(data)
        sequence = head.count + 1
        doc = build_document(
            record,
            delivery_id=delivery_id,
            sequence=sequence,
            metadata_kind=metadata_kind,
            created_at=str(iso(created)),
            subject_kind=subject_kind,
            subject_id=subject_id,
            integration_id=integration_id,
            previous_id=head.last_id,
            previous_sha256=head.last_sha256,
        )
        sha = record_hash(doc)
        doc["record_sha256"] = sha
        data["deliveries"].append(doc)
        data["chain"] = {"count": sequence, "last_id": delivery_id, "last_sha256": sha}
        return StoredDelivery(
            delivery_id, sequence, metadata_kind, created, sha, head.last_sha256, json.loads(json.dumps(doc))
        )

    def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        for doc in self._load().data["deliveries"]:
            if isinstance(doc, dict) and doc.get("id") == delivery_id:
                return dict(json.loads(json.dumps(doc)))
        return None

    def chain(self) -> ChainIter:
        data = self._load().data
        stored = data.get("checkpoint")
        return ChainIter(
            entries=(fmt.entry(doc) for doc in data["deliveries"]),
            head=fmt.head(data),
            checkpoint=stored if isinstance(stored, dict) else None,
        )

    # --- queries -------------------------------------------------------------------------------------
    def count_provider_deliveries(self, flt: DeliveryFilter) -> int:
        return len(mq.select(self._rows(), flt))

    def page_provider_deliveries(
        self, flt: DeliveryFilter, *, limit: int, after: Cursor | None = None, offset: int = 0
    ) -> list[ProviderDeliveryRow]:
        return mq.page(mq.select(self._rows(), flt), limit, after, offset)

    def provider_stats(self, flt: DeliveryFilter) -> list[ProviderStats]:
        return mq.provider_stats(mq.select(self._rows(), flt))

    def destination_stats(self, flt: DeliveryFilter) -> list[ProviderStats]:
        return mq.destination_stats(mq.select(self._rows(), flt))

    def event_type_stats(self, flt: DeliveryFilter) -> list[EventTypeStats]:
        return mq.event_type_stats(mq.select(self._rows(), flt))

    def failure_streaks(self, flt: DeliveryFilter, *, per_event: bool = False) -> list[FailureStreak]:
        return mq.failure_streaks(mq.select(self._rows(), flt), per_event=per_event)

    def unpublished_exports(self, *, stored_before: datetime) -> list[UnpublishedExport]:
        exports = [(r.record_id, r.created_at) for r in self.list_record_entries("endpoint_export")]
        return mq.unpublished_exports(exports, self._rows(), stored_before=stored_before)

    def export_counts(self) -> tuple[int, int]:
        return mq.export_counts(self._load().data["records"].get("endpoint_export", {}), self._rows())

    # --- the outbox (cavra.store.memjobs): every change under the file lock, in one file write -------
    def enqueue_jobs(
        self, jobs: Sequence[NewJob], *, records: Sequence[RecordPut] = (), claim: ClaimNew | None = None
    ) -> list[Enqueued]:
        for job in jobs:
            check_metadata_kind(job.kind)
        for put in records:
            check_kind(put.kind)
        now = datetime.now(UTC)
        with self._update() as data:
            for put in records:
                self._put(data, put.kind, put.record_id, dict(put.body), now)
            return mj.enqueue(data, jobs, now, claim)

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
        if not mj.has_due(self._load().data, exclude_providers, job_ids, when, providers):
            return []  # nothing due: no need to take the lock and rewrite the file
        with self._update() as data:
            return mj.claim(
                data,
                owner,
                limit=limit,
                lease_seconds=lease_seconds,
                exclude=exclude_providers,
                job_ids=job_ids,
                providers=providers,
                now=when,
            )

    def extend_leases(self, owner: str, job_ids: Sequence[str], *, lease_seconds: float) -> list[str]:
        if not job_ids:
            return []
        with self._update() as data:
            return mj.extend(data, owner, job_ids, lease_seconds, datetime.now(UTC))

    def complete_jobs(
        self,
        owner: str,
        items: Sequence[tuple[str, dict[str, Any], JobOutcome]],
        *,
        notes: Mapping[str, CompletionNote] | None = None,
    ) -> list[tuple[StoredDelivery, Job, bool]]:
        now = datetime.now(UTC)
        out: list[tuple[StoredDelivery, Job, bool]] = []
        with self._update() as data:
            before = fmt.head(data)
            for job_id, record, outcome in items:
                item = mj.find(data, job_id)
                if item is None:
                    raise StoreError(f"{self.path}: job {job_id} not found")
                job = mj.to_job(item)
                held = job.state == RUNNING and job.lease_owner == owner
                section = job_section(job, outcome, held)
                stored = self._append(data, {**record, "job": section}, **job.append_args())
                out.append((stored, mj.finish(item, outcome, stored.id, now) if held else job, held))
            if out:
                self._sign(data, before)
            for stored, job, _held in out:
                note = (notes or {}).get(job.id)
                if note is not None:
                    self._note(data, note, stored)
        return out

    def _note(self, data: dict[str, Any], note: CompletionNote, stored: StoredDelivery) -> None:
        """Run a completion note; if it fails, undo what it wrote (the records as they were) and log it."""
        before = data["records"]
        data["records"] = {kind: dict(entries) for kind, entries in before.items()}
        try:
            note(_Records(self, data), stored)
        except Exception:
            data["records"] = before
            log.exception("a completion note failed for delivery %s (the record is stored)", stored.id)

    def release_jobs(
        self, owner: str, job_ids: Sequence[str], *, run_after: datetime | None = None, uncount: bool = False
    ) -> int:
        if not job_ids:
            return 0
        with self._update() as data:
            return mj.release(
                data, owner, job_ids, run_after=run_after, uncount=uncount, now=datetime.now(UTC)
            )

    def reclaim_expired(self, *, now: datetime | None = None) -> int:
        when = utc(now or datetime.now(UTC))
        if not mj.stats(self._load().data, when).expired_leases:
            return 0
        with self._update() as data:
            return mj.reclaim(data, when)

    def get_job(self, job_id: str) -> Job | None:
        item = mj.find(self._load().data, job_id)
        return None if item is None else mj.to_job(item)

    def get_job_by_key(self, idempotency_key: str) -> Job | None:
        items = self._load().data.get("jobs") or []
        item = next((i for i in items if i.get("idempotency_key") == idempotency_key), None)
        return None if item is None else mj.to_job(item)

    def list_jobs(self, flt: JobFilter, *, limit: int = 1000) -> list[Job]:
        return mj.select(self._load().data, flt, limit)

    def queue_stats(self, *, now: datetime | None = None) -> QueueStats:
        return mj.stats(self._load().data, utc(now or datetime.now(UTC)))

    def purge_jobs(self, *, states: Sequence[str], finished_before: datetime, dry_run: bool = False) -> int:
        wanted = check_purge_states(states)
        before = utc(finished_before)
        count = mj.purge(self._load().data, wanted, before, dry_run=True)
        if dry_run or not count:
            return count  # nothing to write: the file is not locked nor rewritten
        with self._update() as data:
            return mj.purge(data, wanted, before, dry_run=False)

    def update_destination(self, provider: str, change: Callable[[Destination, datetime], T]) -> T:
        now = datetime.now(UTC)
        with self._update() as data:
            table = data.setdefault("destinations", {})
            dest = mj.to_destination(provider, table.get(provider))
            result = change(dest, now)
            dest.updated_at = now
            table[provider] = mj.from_destination(dest)
        return result

    def list_destinations(self) -> list[Destination]:
        table = self._load().data.get("destinations") or {}
        return [mj.to_destination(p, raw) for p, raw in sorted(table.items())]


class _Records:
    """Plain records of the document being updated (:meth:`JsonFileStore.with_records`, notes)."""

    def __init__(self, store: JsonFileStore, data: dict[str, Any]) -> None:
        self._store = store
        self._data = data

    def get(self, kind: str, record_id: str) -> dict[str, Any] | None:
        check_kind(kind)
        entry = self._data["records"].get(kind, {}).get(record_id)
        return None if entry is None else fmt.record(kind, record_id, entry).body

    def put(self, kind: str, record_id: str, body: dict[str, Any]) -> None:
        check_kind(kind)
        self._store._put(self._data, kind, record_id, body, datetime.now(UTC))
