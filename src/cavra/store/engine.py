"""Where the store lives: URL resolution, password redaction (the one redactor's), and engines per database.

SQLite (the embedded default) runs in WAL mode with foreign keys on and a generous busy timeout; the
driver's own transaction handling is switched off so the store issues ``BEGIN`` itself, and a connection
marked ``cavra_immediate`` begins with ``BEGIN IMMEDIATE`` (the write lock is taken up front, so two
appenders queue instead of failing on a lock upgrade). PostgreSQL uses psycopg 3 with a pooled,
pre-pinged engine.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from cavra.errors import StoreError
from cavra.redaction import Redactor

DEFAULT_SQLITE_PATH = Path(".cavra/evidence/metadata.db")
ENV_URL = "CAVRA_STORE_URL"
#: Seconds a SQLite writer waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT = 60.0
PG_CONNECT_TIMEOUT = 10

#: a URL inside a driver message (shown as :func:`redact_url` shows it)
_URL_IN_TEXT = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+")


@dataclass(frozen=True)
class Location:
    """A resolved store location: ``backend`` is ``sqlite``, ``postgresql`` or ``json``."""

    backend: str
    url: URL | None = None
    path: Path | None = None

    @property
    def display(self) -> str:
        if self.url is not None:
            return redact_url(self.url)
        return str(self.path)


def redact_url(url: str | URL) -> str:
    """The URL as the redactor shows every URL (:meth:`cavra.redaction.Redactor.url`: user-info and query
    values replaced by ``**REDACTED**``); safe for messages."""
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    if "@" not in text and "?" not in text:
        return text  # nothing the URL rules hide (a SQLite file URL): shown as it is
    return str(Redactor().url(text))


def scrub(message: str, url: URL | None) -> str:
    """First line of a driver message, through the redactor: the URL's password and query values wherever
    they appear, and any URL in it shown as :func:`redact_url` shows it."""
    line = (message.strip().splitlines() or [""])[0]
    secrets = [] if url is None else [v for v in (url.password, *_query_values(url)) if v]
    redactor = Redactor([str(v) for v in secrets])
    return _URL_IN_TEXT.sub(lambda m: str(redactor.url(m.group(0))), redactor.scrub(line))


def _query_values(url: URL) -> list[str]:
    return [v for value in url.query.values() for v in ((value,) if isinstance(value, str) else value)]


def resolve(url_or_path: str | None, *, metadata_json: str | None = None) -> Location:
    """Map the caller's arguments (and ``CAVRA_STORE_URL``) to a backend and its address."""
    if metadata_json is not None:
        return Location("json", path=Path(metadata_json))
    spec = url_or_path if url_or_path is not None else os.environ.get(ENV_URL) or None
    if spec is None:
        return Location("sqlite", url=_sqlite_url(DEFAULT_SQLITE_PATH))
    spec = spec.strip()
    lowered = spec.lower()
    if lowered.startswith(("postgresql://", "postgres://")):
        spec = "postgresql+psycopg://" + spec.split("://", 1)[1]
    elif lowered.startswith("json:"):
        return Location("json", path=Path(spec[5:].removeprefix("//")))
    elif "://" not in spec:
        path = Path(spec)
        if path.suffix.lower() == ".json":
            return Location("json", path=path)
        return Location("sqlite", url=_sqlite_url(path))
    try:
        url = make_url(spec)
    except (ArgumentError, ValueError):
        raise StoreError(f"store URL {redact_url(spec)!r} is not a valid database URL") from None
    if url.get_backend_name() == "sqlite":
        return Location("sqlite", url=url)
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() != "psycopg":
            raise StoreError(f"store URL {redact_url(url)}: use postgresql:// (the psycopg 3 driver)")
        return Location("postgresql", url=url)
    raise StoreError(
        f"store URL {redact_url(url)}: unsupported database {url.get_backend_name()!r} "
        "(use sqlite:///PATH, postgresql://... or --metadata-json FILE)"
    )


def store_file(loc: Location) -> Path | None:
    """The file a SQLite or JSON-file store lives in (None for PostgreSQL and in-memory SQLite)."""
    if loc.backend == "json":
        return loc.path
    if loc.backend == "sqlite" and loc.url is not None:
        return sqlite_path(loc.url)
    return None


def _sqlite_url(path: Path) -> URL:
    return URL.create("sqlite", database=str(path))


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, ``None`` for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database)


def create_engine(loc: Location) -> Engine:
    """An engine for a SQL location (``sqlite`` creates the database directory)."""
    assert loc.url is not None
    if loc.backend == "sqlite":
        return _sqlite_engine(loc.url)
    connect_args: dict[str, Any] = {"application_name": "cavra-connectors"}
    if "connect_timeout" not in loc.url.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT
    return sa.create_engine(
        loc.url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args=connect_args
    )


def _sqlite_engine(url: URL) -> Engine:
    path = sqlite_path(url)
    if path is None:
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path.parent}: cannot create the store directory ({exc.strerror})") from None
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the store issues BEGIN itself (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
            if path is not None:
                _use_wal(cursor)
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get("cavra_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode, once, even when several processes open a new file at the same moment.

    Reading the mode takes no lock, so a database already in WAL mode (every open but the first) is left
    alone. Switching a new file needs its exclusive lock; a process that loses the race to another one
    opening the same new file gets "database is locked" at once, so it waits and tries again.
    """
    cursor.execute("PRAGMA journal_mode")
    row = cursor.fetchone()
    if row is not None and str(row[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
