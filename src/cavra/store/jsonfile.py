"""The ``--metadata-json FILE`` backend: the SQL store on an in-memory SQLite database, kept in one file.

The file is loaded into an in-memory SQLite database with the SQL stores' schema (:mod:`cavra.store.schema`,
:mod:`cavra.store.jsonload`), and every operation is the SQL store's own (:class:`~cavra.store.sql.SqlStore`):
one engine for history, dashboards, the chain and the outbox. A process reloads the file when it is not
the one it last read or wrote (its inode, modification time, size or ``write_id`` differ); when the file
only grew by deliveries appended after the ones it holds, just those are loaded.

Writers take an exclusive lock on ``FILE.lock`` (filelock), reload the file if another process changed
it, run the operation on the database, and, if it changed anything, write the whole document to a
temporary file in the same directory, fsync it, rename it over ``FILE`` and fsync the directory. Readers
need no lock: a rename is atomic, so they see the old or the new file, never a mix. A file that is not a
CAVRA metadata document is never overwritten: every operation raises :class:`~cavra.errors.StoreError`
naming it.

Layout (one delivery per line, so a diff or ``grep`` shows one record)::

    {"write_id": "...", "format": "cavra.evidence.metadata.v1", "version": 1,
     "chain": {"count": N, "last_id": "dlv_...", "last_sha256": "..."},
     "checkpoint": {cavra.evidence.checkpoint.v1 of the head: with a checkpoint key only},
     "destinations": {"<provider>": {breaker, pause, rate-limit bucket}},
     "groups": {"slots": [grouping slot rows], "members": [group member rows]}  (grouping only),
     "records": {"<kind>": {"<id>": {"body": {...}, "created_at": "...", "updated_at": "..."}}},
     "deliveries": [ {stored document}, ... ],
     "jobs": [ {outbox job}, ... ]}
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from cavra.errors import StoreError, UnstorableError
from cavra.store import jsonformat as fmt
from cavra.store import jsonload
from cavra.store.chain import ChainHead, ChainIter
from cavra.store.checkpoint_signer import HeadSigner
from cavra.store.delegate import DelegatingStore
from cavra.store.engine import Location, create_engine
from cavra.store.schema import deliveries, metadata
from cavra.store.sql import SqlStore
from cavra.store.sqlappend import read_checkpoint

LOCK_TIMEOUT = 60.0
#: the identity of a missing file
_MISSING = (-1, -1, -1, None)
FileKey = tuple[int, int, int, str | None]


class _MemoryStore(SqlStore):
    """The in-memory database of a JSON-file store: the SQL store's code, its errors naming the file."""

    def __init__(self, outer: JsonFileStore) -> None:
        loc = Location("sqlite", url=make_url("sqlite://"))
        engine = create_engine(loc)
        self._outer = outer
        self._dbapi: Any = None

        @event.listens_for(engine, "connect")
        def _keep(dbapi_connection: Any, _record: Any) -> None:
            self._dbapi = dbapi_connection

        super().__init__(loc, engine)
        with engine.begin() as conn:
            for statement in _schema_ddl():
                conn.exec_driver_sql(statement)

    @property
    def location(self) -> str:
        return self._outer.location

    def head_signer(self) -> HeadSigner | None:
        return self._outer.head_signer()

    def changes(self) -> int:
        """Rows changed on the database so far (a write that changed none leaves the file alone)."""
        return int(self._dbapi.total_changes) if self._dbapi is not None else 0


@functools.cache
def _schema_ddl() -> tuple[str, ...]:
    """``CREATE TABLE`` and ``CREATE INDEX`` of the SQL stores' schema (:mod:`cavra.store.schema`, so every
    table a migration adds) for SQLite, compiled once per process."""
    dialect = sqlite.dialect()
    out: list[str] = []
    for table in metadata.sorted_tables:
        out.append(str(CreateTable(table).compile(dialect=dialect)))
        out.extend(str(CreateIndex(index).compile(dialect=dialect)) for index in table.indexes)
    return tuple(out)


@functools.cache
def _bulk_indexes() -> tuple[tuple[str, str], ...]:
    """(name, ``CREATE INDEX``) of the secondary indexes of the delivery tables: a full load of many
    documents drops them and builds each once at the end (much faster than row by row)."""
    dialect = sqlite.dialect()
    return tuple(
        (str(index.name), str(CreateIndex(index).compile(dialect=dialect)))
        for table in jsonload.DELIVERY_TABLES
        for index in table.indexes
    )


#: documents from which a full load builds the delivery tables' indexes after inserting
BULK_LOAD = 2000


@dataclass
class _Loaded:
    """What the database holds of the file, and how to write it back."""

    #: (inode, mtime, size, write_id) of the file read or written last; ``None``: nothing loaded
    key: FileKey | None = None
    #: the file's delivery documents in file order, then those appended since (the chain walk and the lines)
    docs: list[Any] = field(default_factory=list)
    #: their lines in the file (``None``: not serialised yet)
    lines: list[str | None] = field(default_factory=list)
    #: ids of the documents in the tables (a repeated id is left out)
    ids: set[str] = field(default_factory=set)
    #: the greatest ``deliveries.sequence`` mirrored in ``docs``
    last_sequence: int = 0
    #: top-level members besides the lists, as read (written back as read while unchanged)
    members: dict[str, Any] = field(default_factory=lambda: _members(fmt.empty()))
    #: the head as read (the ``chain`` member is written back as read while the head is unchanged)
    head: ChainHead = field(default_factory=ChainHead)
    #: the records, jobs and destinations as read or written (a reload skips those that did not change)
    sections: dict[str, Any] = field(default_factory=dict)


def _members(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in fmt.LISTED}


class JsonFileStore(DelegatingStore):
    """The JSON-file store. Open it with ``open_store(metadata_json=PATH)``."""

    backend = "json"

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self._lock_path = Path(f"{self.path}.lock")
        self._lock_timeout = lock_timeout
        self._mutex = threading.RLock()
        self._owner: int | None = None  # the thread inside _update
        self._db = _MemoryStore(self)
        self._loaded = _Loaded()

    @property
    def location(self) -> str:
        return str(self.path)

    def close(self) -> None:
        """Free the in-memory database (a later call loads the file into a new one)."""
        with self._mutex:
            self._db.close()
            self._db = _MemoryStore(self)
            self._loaded = _Loaded()

    # --- DelegatingStore: reads on the current file, writes under the lock ----------------------------
    @contextmanager
    def _reading(self) -> Iterator[SqlStore]:
        with self._mutex:
            self._refresh()
            yield self._db

    def _writing(self) -> Any:
        return self._update()

    def chain(self) -> ChainIter:
        """The file's documents in file order (so reordered, damaged or repeated lines are reported), with
        the head and checkpoint the file keeps."""
        with self._reading() as db, db._read() as conn:
            docs = list(self._loaded.docs)
            head = jsonload.read_head(conn)
            checkpoint = read_checkpoint(conn)
        return ChainIter(entries=(fmt.entry(d) for d in docs), head=head, checkpoint=checkpoint)

    # --- the file ------------------------------------------------------------------------------------
    def check(self) -> None:
        """Read and validate the file now (open_store calls this so a corrupt file fails at once)."""
        with self._mutex:
            self._refresh()

    def create(self) -> None:
        """Write an empty store file if there is none yet (``cavra db upgrade``); an existing one is kept."""
        if not self.path.exists():
            with self._update(force=True):
                pass

    def _refresh(self) -> None:
        """Load the file if it is not the one loaded (the caller holds the mutex)."""
        if self._owner == threading.get_ident():
            return  # inside this thread's own update: the database is the current state
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            if self._loaded.key != _MISSING:
                self._install(fmt.empty(), _MISSING)
            return
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot be read ({exc.strerror})") from None
        with fh:
            st = os.fstat(fh.fileno())
            prefix = fh.read(200)
            key = (st.st_ino, st.st_mtime_ns, st.st_size, fmt.write_id(prefix))
            if key == self._loaded.key:
                return
            raw = prefix + fh.read()
        self._install(self._parse(raw), key)

    def _parse(self, raw: bytes) -> dict[str, Any]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError(f"{self.path}: not UTF-8 text; the metadata file was left unchanged") from None
        if not text or text.isspace():
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

    def _install(self, data: dict[str, Any], key: FileKey) -> None:
        """Put ``data`` in the database: only its new deliveries when it extends the documents loaded."""
        old = self._loaded
        docs: list[Any] = data["deliveries"]
        held = len(old.docs)
        grown = old.key is not None and held <= len(docs) and docs[:held] == old.docs
        self._loaded = _Loaded()  # until the load below succeeds
        sections = {name: jsonload.section(data, name) for name in jsonload.SECTIONS}
        new = _Loaded(key, list(docs), members=_members(data), head=fmt.head(data), sections=sections)
        keep: set[str] = set()
        if grown:
            new.lines, new.ids = old.lines + [None] * (len(docs) - held), old.ids
            keep = {name for name, value in sections.items() if old.sections.get(name) == value}
        else:
            new.lines = [None] * len(docs)
        bulk = () if grown or len(docs) < BULK_LOAD else _bulk_indexes()
        with self._db._write() as conn:
            jsonload.clear(conn, keep_deliveries=grown, keep=keep)
            for name, _create in bulk:
                conn.exec_driver_sql(f'DROP INDEX "{name}"')
            jsonload.load(conn, data, new.ids, start=held if grown else 0, keep=keep)
            for _name, create in bulk:
                conn.exec_driver_sql(create)
            new.last_sequence = int(conn.execute(sa.select(sa.func.max(deliveries.c.sequence))).scalar() or 0)
        self._loaded = new

    @contextmanager
    def _update(self, *, force: bool = False) -> Iterator[SqlStore]:
        """Lock, reload if needed, let the caller change the database, write the file if it changed, unlock.

        Nested calls (a store method called inside another one's update) share the outer one's write."""
        if self._owner == threading.get_ident():
            yield self._db
            return
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
                self._refresh()
                before = self._db.changes()
                self._owner = threading.get_ident()
                try:
                    yield self._db
                    if force or self._db.changes() != before:
                        self._save()
                except BaseException:
                    if self._db.changes() != before:
                        self._loaded.key = None  # the database is ahead of the file: reload it all
                    raise
                finally:
                    self._owner = None
        finally:
            lock.release()

    def _save(self) -> None:
        """Write the database's state to the file (the caller holds the lock)."""
        loaded = self._loaded
        with self._db._read() as conn:
            got = conn.execute(
                sa.select(
                    deliveries.c.sequence,
                    deliveries.c.record,
                    deliveries.c.previous_sha256,
                    deliveries.c.record_sha256,
                )
                .where(deliveries.c.sequence > loaded.last_sequence)
                .order_by(deliveries.c.sequence)
            ).all()
            back = jsonload.read_back(conn)
        for sequence, record, previous, sha in got:
            doc = json.loads(record)
            doc["previous_sha256"], doc["record_sha256"] = previous, sha
            loaded.docs.append(doc)
            loaded.lines.append(None)
            loaded.ids.add(doc["id"])
            loaded.last_sequence = int(sequence)
        lines = loaded.lines
        for n, text in enumerate(lines):
            if text is None:
                lines[n] = fmt.line(loaded.docs[n])
        members = self._members_to_write(back)
        text = fmt.serialize(list(members.items()), back["records"], lines, back["jobs"])  # type: ignore[arg-type]
        key = self._write(text)
        loaded.key = (*key, members["write_id"])
        loaded.members, loaded.head = members, back["chain"]
        loaded.sections = {name: back[name] for name in jsonload.SECTIONS}

    def _members_to_write(self, back: dict[str, Any]) -> dict[str, Any]:
        loaded = self._loaded
        head: ChainHead = back["chain"]
        chain = loaded.members.get("chain")
        if head != loaded.head or not isinstance(chain, dict):
            chain = {"count": head.count, "last_id": head.last_id, "last_sha256": head.last_sha256}
        members = {
            "write_id": secrets.token_hex(8),
            "format": loaded.members.get("format", fmt.FORMAT),
            "version": loaded.members.get("version", fmt.VERSION),
            "chain": chain,
        }
        for name, value in loaded.members.items():
            if name not in fmt.FIRST:
                members[name] = value
        if back["checkpoint"] is not None:
            members["checkpoint"] = back["checkpoint"]
        if back["destinations"] or "destinations" in members:
            members["destinations"] = back["destinations"]
        if back["groups"] or "groups" in members:
            members["groups"] = back["groups"]
        return members

    def _write(self, text: str) -> tuple[int, int, int]:
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
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
