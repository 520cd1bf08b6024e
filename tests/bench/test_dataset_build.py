"""The bench's store-at-scale dataset: built through the store's write path, cached, upgraded in the cache.

The build must leave what appends leave (the chain verifies; the aggregates equal the store's own
recount), restamped records must keep the templates' shape, and a dataset cached at an older schema
revision must be upgraded with the store's migrations instead of rebuilt.
"""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from bench.common import Section
from bench.dataset import Generator
from bench.loaders import load_sql

from bench import dataset, store_scale
from cavra.store import current_revision, open_store
from cavra.store.aggregates import rebuild
from cavra.store.migrate import alembic_config, head_revision
from cavra.store.schema import pd_event_streaks, pd_event_type_totals, pd_totals
from cavra.store.sql import SqlStore

END = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
AGGREGATES = (pd_totals, pd_event_type_totals, pd_event_streaks)


@pytest.fixture
def few_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    """100 records built one by one, the rest restamped from them (as at a million, only smaller)."""
    monkeypatch.setattr(dataset, "TEMPLATES", 100)


def _aggregates(conn: sa.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
        for t in AGGREGATES
    }


def _check_store(path: Path, records: int) -> None:
    """The chain verifies and the aggregates are what the store's backfill computes from the index."""
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SqlStore)
    try:
        report = store.verify_chain()
        assert report.ok, report
        assert report.count == records
        with store.engine.connect() as conn, conn.begin() as tx:
            kept = _aggregates(conn)
            assert kept["pd_totals"] and kept["pd_event_type_totals"] and kept["pd_event_streaks"]
            rebuild(conn)
            assert _aggregates(conn) == kept
            tx.rollback()
    finally:
        store.close()


def test_build_leaves_what_appends_leave(tmp_path: Path, few_templates: None) -> None:
    db = tmp_path / "build.db"
    store = open_store(f"sqlite:///{db}")
    assert gc.isenabled()
    loaded = load_sql(store, iter(Generator(450, end=END)), batch=100, build=True)
    assert gc.isenabled()  # the collector is back on
    store.close()
    assert loaded == 450
    _check_store(db, 450)
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:  # the build's journal_mode=OFF is undone
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_restamped_records_keep_the_template_shape(few_templates: None) -> None:
    planned = list(Generator(260, end=END))
    assert planned == list(Generator(260, end=END))  # deterministic
    assert len({p.record["event_id"] for p in planned}) == 260
    for i in (100, 157, 259):
        copy, tpl = planned[i], planned[i % 100]
        assert copy.record["event_id"] == f"evt_bench_{i:09d}"
        assert copy.record["generated_at"] == dataset._z(copy.created_at)
        assert (copy.metadata_kind, copy.subject_kind, copy.integration_id) == (
            tpl.metadata_kind,
            tpl.subject_kind,
            tpl.integration_id,
        )
        assert copy.record.keys() == tpl.record.keys()
        for new, old in zip(copy.record["deliveries"], tpl.record["deliveries"], strict=True):
            assert new.keys() == old.keys()
            assert new["delivery_key"] == f"dk_{copy.record['event_id'][-24:]}{old['provider']}"
            assert (new["status"], new["provider"], len(new["attempts"])) == (
                old["status"],
                old["provider"],
                len(old["attempts"]),
            )
            shift = copy.created_at - tpl.created_at
            for a, b in zip(new["attempts"], old["attempts"], strict=True):
                moved = dataset._parse(a["started_at"]) - dataset._parse(b["started_at"])
                assert abs((moved - shift).total_seconds()) < 0.002
            assert new["request"] is old["request"]  # shared, not copied
        assert tpl.record["event_id"] == f"evt_bench_{i % 100:09d}"  # the template is left alone


def _cached(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir())


def test_cached_dataset_reused_and_upgraded_from_an_older_revision(
    tmp_path: Path, few_templates: None
) -> None:
    from alembic import command

    cache = tmp_path / "cache"
    head = head_revision()
    built = Section("store", "t", "m")
    assert store_scale._sqlite_dataset(built, tmp_path / "a.db", 300, cache=cache) == 300
    assert "load_sqlite" in built.figures
    name = f"scale-v{dataset.DATASET_VERSION}-300-{head}"
    assert _cached(cache) == [f"{name}.db", f"{name}.json"]

    reused = Section("store", "t", "m")
    assert store_scale._sqlite_dataset(reused, tmp_path / "b.db", 300, cache=cache) == 300
    assert "load_sqlite" not in reused.figures and "dataset reused from" in reused.notes[0]

    # the same dataset as an older code base cached it: one revision back
    engine = sa.create_engine(f"sqlite:///{cache / name}.db")
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "-1")
    engine.dispose()
    older = current_revision(f"sqlite:///{cache / name}.db")
    assert older is not None and older != head
    old_name = f"scale-v{dataset.DATASET_VERSION}-300-{older}"
    (cache / f"{name}.db").rename(cache / f"{old_name}.db")
    (cache / f"{name}.json").rename(cache / f"{old_name}.json")

    upgraded = Section("store", "t", "m")
    db = tmp_path / "c.db"
    assert store_scale._sqlite_dataset(upgraded, db, 300, cache=cache) == 300
    assert "load_sqlite" not in upgraded.figures  # not rebuilt
    assert f"upgraded from revision {older} to {head}" in upgraded.notes[0]
    assert _cached(cache) == [f"{name}.db", f"{name}.json"]  # replaces the older file
    info = json.loads((cache / f"{name}.json").read_text(encoding="utf-8"))
    assert info["upgraded_from"] == older and info["revision"] == head and info["records"] == 300
    assert current_revision(f"sqlite:///{db}") == head
    _check_store(db, 300)
