"""Opening the store: backend selection, SQLite settings, and clear one-line errors without secrets."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import filelock
import pytest
import sqlalchemy as sa

from cavra.errors import StoreError
from cavra.store import ENV_URL, open_store, redact_url
from cavra.store.jsonfile import JsonFileStore
from cavra.store.sql import SqlStore

from .conftest import make_record


def test_default_is_sqlite_under_dot_cavra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_URL, raising=False)
    with open_store() as store:
        assert store.backend == "sqlite"
        store.append_delivery(make_record(), metadata_kind="integration-delivery")
    assert (tmp_path / ".cavra" / "evidence" / "metadata.db").is_file()


def test_env_url_is_used_when_no_url_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "from-env.db"
    monkeypatch.setenv(ENV_URL, f"sqlite:///{db}")
    with open_store() as store:
        assert store.backend == "sqlite" and str(db) in store.location
    assert db.is_file()


def test_paths_pick_the_backend(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "a.db")) as s:
        assert s.backend == "sqlite"
    with open_store(str(tmp_path / "m.json")) as s:
        assert isinstance(s, JsonFileStore)
    with open_store("sqlite:///ignored.db", metadata_json=str(tmp_path / "wins.json")) as s:
        assert isinstance(s, JsonFileStore)
    with open_store("sqlite://") as s:  # in memory: one shared connection
        s.put_record("integration", "x", {"a": 1})
        assert s.get_record("integration", "x") == {"a": 1}


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'wal.db'}") as store:
        assert isinstance(store, SqlStore)
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            with pytest.raises(sa.exc.IntegrityError):
                conn.execute(
                    sa.text(
                        "INSERT INTO provider_deliveries (delivery_id, position, provider, success, status, "
                        "attempt_count, metadata_kind, created_at) "
                        "VALUES ('dlv_nope', 0, 'x', 1, 'delivered', 1, 'integration-delivery', '2025-01-01')"
                    )
                )


def test_unreachable_postgres_is_one_clear_line_without_the_password() -> None:
    with pytest.raises(StoreError) as info:
        open_store("postgresql://alice:Sup3rS3cretPw@127.0.0.1:1/cavra?connect_timeout=2")
    message = str(info.value)
    assert "Sup3rS3cretPw" not in message
    assert "**REDACTED**@127.0.0.1:1/cavra" in message  # the one redactor's URL rules: user-info hidden
    assert "\n" not in message
    assert message.startswith("cannot open the store at postgresql+psycopg://")


def test_redact_url() -> None:
    # the store shows URLs as the redactor shows every URL (one mask, one set of rules)
    assert redact_url("postgresql://bob:pw@db:5432/x") == "postgresql://**REDACTED**@db:5432/x"
    assert (
        redact_url("postgresql://db/x?password=pw&sslmode=require")
        == "postgresql://db/x?password=**REDACTED**&sslmode=**REDACTED**"
    )
    assert redact_url("sqlite:///a.db") == "sqlite:///a.db"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+psycopg2://u:pw@h/db", "use postgresql://"),
        ("postgresql://u:pw@h:notaport/db", "not a valid database URL"),
        ("://x", "not a valid database URL"),
    ],
)
def test_unsupported_urls(url: str, match: str) -> None:
    with pytest.raises(StoreError, match=match) as info:
        open_store(url)
    assert ":pw@" not in str(info.value)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"not-a\.db"):
        open_store(str(bogus))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"deliveries": [ {"id": 1}, ', "not valid JSON"),
        ("[1, 2, 3]", "expected a JSON object"),
        ('{"format": "something.else"}', "format is 'something.else'"),
        ('{"deliveries": {}}', "deliveries must be a JSON array"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_corrupt_json_file_is_named_and_left_unchanged(
    tmp_path: Path, content: str | bytes, match: str
) -> None:
    path = tmp_path / "metadata.json"
    raw = content if isinstance(content, bytes) else content.encode()
    path.write_bytes(raw)
    with pytest.raises(StoreError, match=match) as info:
        open_store(metadata_json=str(path))
    assert str(path) in str(info.value)
    store = JsonFileStore(path)
    with pytest.raises(StoreError, match="left unchanged"):
        store.append_delivery(make_record(), metadata_kind="integration-delivery")
    with pytest.raises(StoreError):
        store.put_record("integration", "x", {})
    assert path.read_bytes() == raw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.json", "metadata.json.lock"]


def test_locked_json_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    store = JsonFileStore(path, lock_timeout=0.2)
    store.put_record("integration", "x", {"a": 1})
    before = path.read_bytes()
    holder = filelock.FileLock(f"{path}.lock", thread_local=False)
    # the lock is held through another open file description, as another process would hold it
    with holder, pytest.raises(StoreError, match="locked by another process") as info:
        JsonFileStore(path, lock_timeout=0.2).append_delivery(
            make_record(), metadata_kind="integration-delivery"
        )
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert store.get_record("integration", "x") == {"a": 1}  # readers need no lock


def test_missing_json_file_is_created_on_first_write_only(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "metadata.json"
    store = open_store(metadata_json=str(path))
    assert store.list_records("integration") == [] and store.verify_chain().ok
    assert not path.exists()
    store.put_record("integration", "x", {})
    assert path.is_file()
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_json_file_is_readable_and_one_delivery_per_line(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    store = open_store(metadata_json=str(path))
    a = store.append_delivery(make_record(event_id="a"), metadata_kind="integration-delivery")
    b = store.append_delivery(make_record(event_id="b"), metadata_kind="integration-delivery")
    lines = [line for line in path.read_text().splitlines() if line.startswith("    {")]
    assert len(lines) == 2
    assert f'"id": "{a.id}"' in lines[0] and f'"id": "{b.id}"' in lines[1]


def test_sqlite_store_file_is_usable_by_the_sqlite3_cli_module(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with open_store(str(db)) as store:
        stored = store.append_delivery(make_record(), metadata_kind="integration-delivery")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id FROM deliveries").fetchall() == [(stored.id,)]
