"""Fixtures for the store suite: every test that takes ``store`` runs on SQLite, the JSON file and PostgreSQL.

PostgreSQL tests use the ``test`` database on 127.0.0.1:5432 (trust auth, user ``postgres`` or ``root``);
each test gets a fresh schema (selected with ``options=-csearch_path=...``) that is dropped afterwards.
They are marked ``postgres`` and skipped, with the reason, only when the server cannot be reached.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cavra.store import Store, open_store
from cavra.store.jsonfile import JsonFileStore
from cavra.store.sql import SqlStore

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_DB = "test"

_pg_user: str | None = None
_pg_error: str | None = None


def pg_user() -> str:
    """A user that can connect to the test database, or skip (once) with the connection error."""
    global _pg_user, _pg_error
    if _pg_user is None and _pg_error is None:
        import psycopg

        errors = []
        for user in ("postgres", "root"):
            try:
                with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=user, connect_timeout=5):
                    _pg_user = user
                    break
            except psycopg.Error as exc:
                errors.append(f"{user}: {str(exc).strip().splitlines()[0]}")
        if _pg_user is None:
            _pg_error = "; ".join(errors)
    if _pg_user is None:
        pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT}/{PG_DB} is unreachable ({_pg_error})")
    return _pg_user


def _admin_execute(sql: str) -> None:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=pg_user(), autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema (dropped after the test)."""
    user = pg_user()
    schema = f"cavra_test_{uuid.uuid4().hex[:12]}"
    _admin_execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{PG_DB}?options=-csearch_path%3D{schema}"
    finally:
        _admin_execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


BACKENDS = ["sqlite", "json", pytest.param("postgresql", marks=pytest.mark.postgres)]
SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@dataclass
class Target:
    """Where a parametrised store lives, and how to open it again (as another process would)."""

    backend: str
    url: str | None = None
    json_path: Path | None = None

    def open(self) -> Store:
        if self.backend == "json":
            return open_store(metadata_json=str(self.json_path))
        return open_store(self.url)

    @property
    def spec(self) -> dict[str, Any]:
        return {"url": self.url, "metadata_json": None if self.json_path is None else str(self.json_path)}


def _target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    backend = request.param
    if backend == "sqlite":
        yield Target("sqlite", url=f"sqlite:///{tmp_path / 'metadata.db'}")
    elif backend == "json":
        yield Target("json", json_path=tmp_path / "metadata.json")
    else:
        yield Target("postgresql", url=request.getfixturevalue("pg_url"))


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    yield from _target(request, tmp_path)


@pytest.fixture(params=SQL_BACKENDS)
def sql_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    yield from _target(request, tmp_path)


@pytest.fixture
def store(target: Target) -> Iterator[Store]:
    s = target.open()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sql_store(sql_target: Target) -> Iterator[SqlStore]:
    s = sql_target.open()
    assert isinstance(s, SqlStore)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def json_store(tmp_path: Path) -> JsonFileStore:
    s = open_store(metadata_json=str(tmp_path / "metadata.json"))
    assert isinstance(s, JsonFileStore)
    return s


def make_record(
    provider: str = "webhook",
    *,
    success: bool = True,
    status: str | None = None,
    event_type: str = "cavra.release.promotion_execution",
    event_id: str = "evt-1",
    status_code: int | None = None,
    attempts: int = 1,
    error: str | None = None,
    providers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``cavra.connector.delivery.v1`` record (one provider unless ``providers`` is given)."""
    items = providers or [
        {
            "provider": provider,
            "success": success,
            "status": status or ("delivered" if success else "failed"),
            "status_code": status_code if status_code is not None else (200 if success else 503),
            "attempt_count": attempts,
            "started_at": "2025-01-01T00:00:00.000Z",
            "completed_at": "2025-01-01T00:00:01.000Z",
            "error": error if error is not None else (None if success else "HTTP 503 from provider"),
            "request": {"method": "POST", "url": "https://example.test/hook", "headers": {}},
            "attempts": [{"number": n + 1, "status_code": 503} for n in range(attempts)],
            "remote_id": None,
        }
    ]
    return {
        "schema_version": "cavra.connector.delivery.v1",
        "product": "cavra-connectors",
        "event_type": event_type,
        "event_id": event_id,
        "session_id": "demo-session",
        "generated_at": "2025-01-01T00:00:01.000Z",
        "success": all(i["success"] for i in items),
        "deliveries": items,
        "errors": [],
    }


# --- tampering, the way an attacker with file or database access would ---------------------------------
def _json_edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def raw_sql(store: Store, sql: str, **params: Any) -> int:
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        return conn.execute(sa.text(sql), params).rowcount


def tamper_replace(store: Store, delivery_id: str, old: str, new: str) -> None:
    """Replace text inside one stored record (raw SQL UPDATE, or an edit of the JSON file)."""
    if isinstance(store, JsonFileStore):
        old, new = old.replace('":', '": '), new.replace('":', '": ')  # the file is written with spaces
        text = store.path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        hit = [i for i, line in enumerate(lines) if delivery_id in line and old in line]
        assert len(hit) == 1
        lines[hit[0]] = lines[hit[0]].replace(old, new)
        store.path.write_text("".join(lines), encoding="utf-8")
        return
    changed = raw_sql(
        store,
        "UPDATE deliveries SET record = replace(record, :old, :new) WHERE id = :id",
        old=old,
        new=new,
        id=delivery_id,
    )
    assert changed == 1


def tamper_delete(store: Store, delivery_id: str) -> None:
    """Remove one stored record (raw SQL DELETE, or an edit of the JSON file)."""
    if isinstance(store, JsonFileStore):
        _json_edit(
            store.path,
            lambda d: d.__setitem__("deliveries", [x for x in d["deliveries"] if x["id"] != delivery_id]),
        )
        return
    assert raw_sql(store, "DELETE FROM deliveries WHERE id = :id", id=delivery_id) == 1


def json_edit(store: Store, change: Callable[[dict[str, Any]], None]) -> None:
    assert isinstance(store, JsonFileStore)
    _json_edit(store.path, change)
