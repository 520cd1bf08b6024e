"""A job whose record the store cannot keep is not sent forever (defence in depth behind the input check).

Before: a NUL character in ``event_type`` reached the provider, then the completion failed on PostgreSQL
("text fields cannot contain NUL"); the job stayed ``running`` with an empty ``last_error`` and was sent
again at every lease expiry (13 sends seen, ``--max-runs 4`` ignored). Now a completion the store refuses
for good ends the job (``failed``, the reason in ``last_error``, a cleaned copy of the record stored), one
that fails for a while is written again without a second send, and a claim past ``max_runs`` whose earlier
runs never ended the job ends it without sending.

The jobs are injected through the store (the API and the CLI refuse such events at the door) and run by a
real worker against the webhook emulator on loopback, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cavra.delivery.queue import Schedule, delivery_job
from cavra.delivery.worker import Worker
from cavra.emulators.server import EmulatorServer
from cavra.store import Store, open_store
from cavra.store import engine as store_engine
from cavra.store.jobs import DEAD, FAILED, RUNNING, SUCCEEDED, Job
from cavra.store.sql import SqlStore

from .conftest import KIND, emulator_config

SCHEDULE = Schedule(base_delay=0.05, factor=1.0, max_delay=0.05, max_runs=4, jitter=0.0)


def _job(store: Store, job_id: str) -> Job:
    found = store.get_job(job_id)
    assert found is not None
    return found


def _enqueue(store: Store, event: dict[str, Any], **kw: Any) -> Job:
    [got] = store.enqueue_jobs([delivery_job(event, "webhook", kind=KIND, retries=0, **kw)])
    return got.job


def _worker(store: Store, srv: EmulatorServer, **kw: Any) -> Worker:
    kw.setdefault("schedule", SCHEDULE)
    return Worker(store, emulator_config(srv, ["webhook"]), poll_interval=0.02, retry_base_delay=0.01, **kw)


async def _run_until_quiet(store: Store, srv: EmulatorServer, job_id: str, *, lease: float = 0.3) -> Job:
    """Run workers (one after another, as restarts would) until the job is no longer running, or for at
    most 12 lease periods: long enough for the old behaviour to send the event again and again."""
    for _ in range(12):
        await _worker(store, srv, lease_seconds=lease).run(once=True)
        current = _job(store, job_id)
        if current.state != RUNNING:
            return current
        await asyncio.sleep(lease)  # the lease expires: a worker may claim the job again
    return _job(store, job_id)


@pytest.mark.postgres
async def test_a_nul_in_event_type_ends_the_job_after_one_send_on_postgresql(
    pg_url: str, webhook_srv: EmulatorServer
) -> None:
    store = open_store(pg_url)
    try:
        job = _enqueue(store, {"event_type": "cavra.evidence\x00bundle", "event_id": "evt-nul", "n": 1})
        ended = await _run_until_quiet(store, webhook_srv, job.id)
        assert len(webhook_srv.hub.received("webhook")) == 1  # sent once, never again
        assert ended.state == FAILED, ended
        assert ended.attempts == 1
        assert ended.last_error is not None
        assert "delivery record could not be stored" in ended.last_error
        assert "NUL" in ended.last_error and "\x00" not in ended.last_error
        # the run's evidence is kept: a cleaned copy, marked, final, in a chain that verifies
        assert ended.delivery_id is not None
        doc = store.get_delivery(ended.delivery_id)
        assert doc is not None
        assert doc["event_type"] == "cavra.evidence\ufffdbundle"
        assert "NUL" in doc["record_refused"]
        assert doc["success"] is True and doc["deliveries"][0]["status_code"] == 200
        assert doc["job"]["final"] is True and doc["job"]["state"] == FAILED
        assert store.verify_chain().ok
    finally:
        store.close()


@pytest.fixture
def tiny_sqlite(tmp_path: Path) -> Iterator[SqlStore]:
    """A SQLite store whose rows may hold at most 6000 bytes (``SQLITE_LIMIT_LENGTH``): a record larger than
    that is refused with "string or blob too big", as a record too large for any store would be."""
    store = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
    assert isinstance(store, SqlStore)
    store.engine.dispose()

    @sa.event.listens_for(store.engine, "connect")
    def _limit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 6000)

    try:
        yield store
    finally:
        store.close()


async def test_a_record_too_large_for_the_store_ends_the_job_after_one_send_on_sqlite(
    tiny_sqlite: SqlStore, webhook_srv: EmulatorServer
) -> None:
    event_type = "cavra.evidence_bundle." + "x" * 4000  # the job (4 kB) fits, its record (10 kB) does not
    job = _enqueue(tiny_sqlite, {"event_type": event_type, "event_id": "evt-big"})
    ended = await _run_until_quiet(tiny_sqlite, webhook_srv, job.id)
    assert len(webhook_srv.hub.received("webhook")) == 1
    assert ended.state == FAILED and ended.attempts == 1, ended
    assert ended.last_error is not None and "string or blob too big" in ended.last_error
    assert ended.delivery_id is not None
    doc = tiny_sqlite.get_delivery(ended.delivery_id)
    assert doc is not None and doc["job"]["final"] is True
    assert doc["event_type"].startswith("cavra.evidence_bundle.xxx") and len(doc["event_type"]) == 500
    assert "string or blob too big" in doc["record_refused"]
    assert tiny_sqlite.verify_chain().ok


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_sql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = (
        f"sqlite:///{tmp_path / 'metadata.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    store = open_store(url)
    assert isinstance(store, SqlStore)
    try:
        yield store
    finally:
        store.close()


async def test_runs_are_counted_when_they_start_so_max_runs_bounds_sends(
    any_sql: SqlStore, webhook_srv: EmulatorServer
) -> None:
    """Four runs started and none completed (each worker died, or the store failed past the retries): the
    claim of a fifth run ends the job as a dead letter instead of sending it a fifth time."""
    t0 = datetime.now(UTC) - timedelta(hours=1)
    job = _enqueue(any_sql, {"event_type": "cavra.evidence_bundle", "event_id": "evt-crash"}, run_after=t0)
    for n in range(SCHEDULE.max_runs):  # claims whose runs never complete; each lease has long expired
        [claimed] = any_sql.claim_jobs(
            f"dead-worker-{n}", limit=1, lease_seconds=1, now=t0 + timedelta(minutes=n)
        )
        assert claimed.attempts == n + 1
    await _worker(any_sql, webhook_srv).run(once=True)
    ended = _job(any_sql, job.id)
    assert webhook_srv.hub.received("webhook") == []  # not sent a fifth time
    assert ended.state == DEAD, ended
    assert ended.last_error is not None and "4 attempt runs started (max 4)" in ended.last_error
    assert ended.delivery_id is not None
    doc = any_sql.get_delivery(ended.delivery_id)
    assert doc is not None and doc["job"]["final"] is True and doc["deliveries"] == []
    assert any_sql.verify_chain().ok


async def test_a_job_rearmed_after_max_runs_still_gets_its_run(
    any_sql: SqlStore, webhook_srv: EmulatorServer
) -> None:
    """The bound counts runs that never ended the job: a job that ended (dead after max runs) and is re-armed
    by a repeated request runs once more, as before."""
    from cavra.emulators.framework import Fault

    webhook_srv.hub.add_fault("webhook", Fault(status=503, count=SCHEDULE.max_runs))
    event = {"event_type": "cavra.evidence_bundle", "event_id": "evt-rearm"}
    job = _enqueue(any_sql, event)
    for _ in range(SCHEDULE.max_runs):
        await _worker(any_sql, webhook_srv).run(once=True)
        if _job(any_sql, job.id).state == DEAD:
            break
        await asyncio.sleep(0.06)
    assert _job(any_sql, job.id).state == DEAD
    assert len(webhook_srv.hub.received("webhook")) == SCHEDULE.max_runs
    [again] = any_sql.enqueue_jobs([delivery_job(event, "webhook", kind=KIND, retries=0)])
    assert again.rearmed
    await _worker(any_sql, webhook_srv).run(once=True)
    assert _job(any_sql, job.id).state == SUCCEEDED
    assert len(webhook_srv.hub.received("webhook")) == SCHEDULE.max_runs + 1


# --- a store that fails for a while: the completion is written again, the event is not sent again ------
class _Locker:
    """Holds a lock that makes the store's writes fail for a while, from another connection."""

    def __init__(self, acquire: Callable[[], Any], release: Callable[[Any], None]) -> None:
        self._acquire, self._release = acquire, release
        self._held: Any = None

    def __enter__(self) -> _Locker:
        self._held = self._acquire()
        return self

    def release(self) -> None:
        if self._held is not None:
            self._release(self._held)
            self._held = None

    def __exit__(self, *exc: object) -> None:
        self.release()


def _sqlite_locker(path: Path) -> _Locker:
    def acquire() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")  # the database write lock
        return conn

    def release(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")
        conn.close()

    return _Locker(acquire, release)


def _pg_locker(pg_url: str, job_id: str) -> _Locker:
    def acquire() -> Any:
        import psycopg

        from ..store.conftest import PG_DB, PG_HOST, PG_PORT, pg_user

        schema = pg_url.rsplit("%3D", 1)[1]
        conn = psycopg.connect(
            host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=pg_user(), options=f"-csearch_path={schema}"
        )
        conn.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job_id,))  # the job's row lock
        return conn

    def release(conn: Any) -> None:
        conn.rollback()
        conn.close()

    return _Locker(acquire, release)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def short_waits(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, SqlStore, str]]:
    """A store whose lock waits are short (SQLite busy timeout, PostgreSQL ``lock_timeout``: 0.2 s), so a
    held lock fails a write with "database is locked" / "lock timeout" instead of waiting."""
    if request.param == "sqlite":
        monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT", 0.2)
        path = tmp_path / "metadata.db"
        store = open_store(f"sqlite:///{path}")
        where = str(path)
    else:
        where = request.getfixturevalue("pg_url")
        store = open_store(where)  # migrated without a lock timeout; its new connections get one
        assert isinstance(store, SqlStore)
        store.engine.dispose()

        @sa.event.listens_for(store.engine, "connect")
        def _lock_timeout(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")
            dbapi_connection.commit()

    assert isinstance(store, SqlStore)
    try:
        yield request.param, store, where
    finally:
        store.close()


async def test_a_completion_the_store_fails_for_a_while_is_written_again_without_a_second_send(
    short_waits: tuple[str, SqlStore, str], webhook_srv: EmulatorServer
) -> None:
    backend, store, where = short_waits
    job = _enqueue(store, {"event_type": "cavra.evidence_bundle", "event_id": "evt-locked"})
    owner = "worker-under-test"
    [claimed] = store.claim_jobs(owner, limit=1, lease_seconds=30)
    locker = _sqlite_locker(Path(where)) if backend == "sqlite" else _pg_locker(where, job.id)
    worker = _worker(store, webhook_srv, owner=owner, lease_seconds=30)
    with locker:
        task = asyncio.create_task(worker.run(once=True, claimed=[claimed]))
        deadline = time.monotonic() + 30
        while worker.stats.completion_retries == 0:  # the completion failed on the lock: it will try again
            assert time.monotonic() < deadline and not task.done(), "the completion was never retried"
            await asyncio.sleep(0.02)
        assert _job_unlocked(backend, store, job.id) == RUNNING
        assert len(webhook_srv.hub.received("webhook")) == 1
    stats = await asyncio.wait_for(task, 60)  # the lock is gone: the next try writes the completion
    ended = _job(store, job.id)
    assert ended.state == SUCCEEDED and ended.attempts == 1, ended
    assert stats.succeeded == 1 and stats.completion_retries >= 1
    assert len(webhook_srv.hub.received("webhook")) == 1  # written again, not sent again
    assert store.verify_chain().ok


def _job_unlocked(backend: str, store: SqlStore, job_id: str) -> str:
    """The job's state read without waiting for the lock (SQLite WAL readers and PostgreSQL MVCC reads do not
    wait for writers)."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(_job(store, job_id).state))
    reader.start()
    reader.join(10)
    assert result, f"reading the job waited for the {backend} lock"
    return result[0]
