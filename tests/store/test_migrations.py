"""Migrations: an old-schema database is upgraded on open with its data kept; the result matches schema.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cavra.history import query_history
from cavra.store import current_revision, open_store, record_hash, upgrade
from cavra.store.base import DeliveryFilter
from cavra.store.chain import GENESIS_SHA256
from cavra.store.document import build_document
from cavra.store.migrate import head_revision
from cavra.store.schema import metadata
from cavra.store.sql import SqlStore

from .conftest import Target, make_record

BASE = "0001"


def _old_rows(n: int) -> list[dict[str, object]]:
    """Delivery rows as a revision-0001 store wrote them (no provider index yet)."""
    rows = []
    prev_id, prev_sha = None, GENESIS_SHA256
    for i in range(n):
        created = datetime(2024, 12, 1, 10, i, tzinfo=UTC)
        doc = build_document(
            make_record("webhook", success=i != 1, event_id=f"old-{i}"),
            delivery_id=f"dlv_old{i}",
            sequence=i + 1,
            metadata_kind="release-connector-delivery",
            created_at=created.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            subject_kind=None,
            subject_id=None,
            integration_id="int-old",
            previous_id=prev_id,
            previous_sha256=prev_sha,
        )
        sha = record_hash(doc)
        rows.append(
            {
                "sequence": i + 1,
                "id": doc["id"],
                "metadata_kind": doc["metadata_kind"],
                "created_at": created.replace(tzinfo=None),
                "event_type": doc["event_type"],
                "event_id": doc["event_id"],
                "subject_kind": None,
                "subject_id": None,
                "integration_id": "int-old",
                "record": json.dumps({k: v for k, v in doc.items() if k != "previous_sha256"}),
                "record_sha256": sha,
                "previous_sha256": prev_sha,
            }
        )
        prev_id, prev_sha = str(doc["id"]), sha
    return rows


def test_old_schema_is_upgraded_on_open_and_data_kept(sql_target: Target) -> None:
    url = sql_target.url
    assert url is not None
    assert upgrade(url, revision=BASE) == BASE
    assert current_revision(url) == BASE

    rows = _old_rows(3)
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            assert not sa.inspect(conn).has_table("provider_deliveries")
            conn.execute(
                sa.text(
                    "INSERT INTO records (kind, record_id, body, created_at, updated_at) "
                    "VALUES ('integration', 'splunk', :b, :t, :t)"
                ),
                {"b": '{"integration_id":"splunk"}', "t": datetime(2024, 12, 1)},
            )
            deliveries = sa.table("deliveries", *[sa.column(c) for c in rows[0]])
            conn.execute(sa.insert(deliveries), rows)
            conn.execute(
                sa.text("UPDATE chain_head SET count = 3, last_id = :i, last_sha256 = :h"),
                {"i": rows[-1]["id"], "h": rows[-1]["record_sha256"]},
            )
    finally:
        engine.dispose()

    with open_store(url) as store:
        assert current_revision(url) == head_revision()
        assert store.get_record("integration", "splunk") == {"integration_id": "splunk"}
        assert store.get_delivery("dlv_old1") is not None
        assert store.verify_chain().ok
        # the provider index was backfilled from the stored records
        page = query_history(store, metadata_kinds=None)
        assert [i["event_id"] for i in page.items] == ["old-2", "old-1", "old-0"]
        assert [i["success"] for i in page.items] == [True, False, True]
        assert page.items[0]["integration_id"] == "int-old"
        # rows from before destinations went to the destination named after their provider (rev. 0008)
        assert {i["destination"] for i in page.items} == {"webhook"}
        assert query_history(store, metadata_kinds=None, destination="webhook").total == 3
        assert [(s.destination, s.total) for s in store.destination_stats(DeliveryFilter())] == [
            ("webhook", 3)
        ]
        # and the chain continues from the old head
        new = store.append_delivery(make_record(), metadata_kind="release-connector-delivery")
        assert new.sequence == 4 and new.previous_sha256 == rows[-1]["record_sha256"]
        assert store.verify_chain().ok


def test_upgrade_is_idempotent(sql_target: Target) -> None:
    url = sql_target.url
    assert url is not None
    assert upgrade(url) == head_revision()
    assert upgrade(url) == head_revision()
    with open_store(url) as store:
        assert store.verify_chain().ok


def test_migrated_schema_matches_schema_module(sql_store: SqlStore) -> None:
    with sql_store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_json_backend_has_nothing_to_migrate(tmp_path: object) -> None:
    path = f"{tmp_path}/m.json"
    assert upgrade(metadata_json=path) == "cavra.evidence.metadata.v1"


def test_revision_0007_adds_signed_checkpoints(sql_target: Target) -> None:
    from cavra.governance.checkpoints import current_checkpoint
    from cavra.store.checkpoint_keys import load_keys
    from cavra.store.engine import resolve

    url = sql_target.url
    assert url is not None
    signer = load_keys(environ={"CAVRA_CHECKPOINT_KEY": "k" * 40}).signer
    assert upgrade(url, revision="0006") == "0006"
    with SqlStore.open(resolve(url), migrate=False) as old:
        assert old.checkpoints is False
        old.checkpoint_signer = signer  # a 0006 schema has no table: appends go on unsigned
        old.append_delivery(make_record(), metadata_kind="release-connector-delivery")
        assert old.signed_head()[1] is None
    with open_store(url) as store:
        assert current_revision(url) == head_revision()
        store.checkpoint_signer = signer
        store.append_delivery(make_record(), metadata_kind="release-connector-delivery")
        assert store.signed_head()[1] is None  # records before the key: adopted explicitly, not by an append
        keys = load_keys(environ={"CAVRA_CHECKPOINT_KEY": "k" * 40})
        assert current_checkpoint(store, keys).count == 2  # verifies the chain, then signs its head
        stored = store.append_delivery(make_record(), metadata_kind="release-connector-delivery")
        head, checkpoint = store.signed_head()
        assert checkpoint is not None and checkpoint["count"] == 3 == head.count
        assert checkpoint["head_sha256"] == stored.record_sha256
