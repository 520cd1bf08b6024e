"""The tamper-evident chain: an intact store verifies; the first altered or missing record is named."""

from __future__ import annotations

import json

from cavra.store import GENESIS_SHA256, Store, StoredDelivery, record_hash
from cavra.store.jsonfile import JsonFileStore
from cavra.store.sql import SqlStore

from .conftest import json_edit, make_record, raw_sql, tamper_delete, tamper_replace


def _fill(store: Store, n: int = 5) -> list[StoredDelivery]:
    return [
        store.append_delivery(
            make_record(success=i % 2 == 0, event_id=f"evt-{i}"), metadata_kind="release-connector-delivery"
        )
        for i in range(n)
    ]


def test_empty_chain_verifies(store: Store) -> None:
    report = store.verify_chain()
    assert report.ok and report.count == 0 and report.first_bad is None
    assert report.head_sha256 == GENESIS_SHA256


def test_intact_chain_verifies(store: Store) -> None:
    stored = _fill(store)
    report = store.verify_chain()
    assert report.ok, report.first_bad
    assert report.count == 5
    assert report.head_sha256 == stored[-1].record_sha256
    assert report.to_dict() == {
        "ok": True,
        "count": 5,
        "first_bad": None,
        "head_sha256": stored[-1].record_sha256,
    }


def test_editing_one_record_is_named_as_altered(store: Store) -> None:
    stored = _fill(store)
    victim = stored[2]
    tamper_replace(store, victim.id, '"event_id":"evt-2"', '"event_id":"evt-X"')
    report = store.verify_chain()
    assert not report.ok
    assert report.count == 5
    assert report.first_bad is not None
    assert report.first_bad.delivery_id == victim.id
    assert report.first_bad.reason == "altered"
    assert report.first_bad.sequence == 3


def test_flipping_a_failure_to_success_is_caught(store: Store) -> None:
    stored = _fill(store)
    victim = stored[1]  # a failed delivery
    tamper_replace(store, victim.id, '"success":false', '"success":true')
    report = store.verify_chain()
    assert report.first_bad is not None
    assert (report.first_bad.delivery_id, report.first_bad.reason) == (victim.id, "altered")


def test_deleting_one_record_names_it_as_missing(store: Store) -> None:
    stored = _fill(store)
    tamper_delete(store, stored[2].id)
    report = store.verify_chain()
    assert not report.ok
    assert report.count == 4
    assert report.first_bad is not None
    assert report.first_bad.reason == "missing/reordered"
    assert report.first_bad.delivery_id == stored[2].id
    assert stored[3].id in report.first_bad.detail


def test_deleting_the_first_record_is_caught(store: Store) -> None:
    stored = _fill(store, 3)
    tamper_delete(store, stored[0].id)
    bad = store.verify_chain().first_bad
    assert bad is not None and (bad.delivery_id, bad.reason) == (stored[0].id, "missing/reordered")


def test_deleting_the_last_record_is_caught_by_the_chain_head(store: Store) -> None:
    stored = _fill(store, 3)
    tamper_delete(store, stored[-1].id)
    bad = store.verify_chain().first_bad
    assert bad is not None and (bad.delivery_id, bad.reason) == (stored[-1].id, "missing/reordered")


def test_rewriting_a_record_with_a_fresh_hash_is_caught_by_the_next_link(store: Store) -> None:
    """The previous hash is inside the hashed content: fixing one hash is not enough to hide an edit."""
    stored = _fill(store, 4)
    victim = stored[1]
    doc = store.get_delivery(victim.id)
    assert doc is not None
    forged = dict(doc, event_id="evt-forged")
    forged["record_sha256"] = record_hash(forged)
    if isinstance(store, JsonFileStore):
        json_edit(
            store,
            lambda d: d.__setitem__(
                "deliveries", [forged if x["id"] == victim.id else x for x in d["deliveries"]]
            ),
        )
    else:
        body = {k: v for k, v in forged.items() if k not in ("record_sha256", "previous_sha256")}
        raw_sql(
            store,
            "UPDATE deliveries SET record = :r, record_sha256 = :h, event_id = 'evt-forged' WHERE id = :id",
            r=json.dumps(body, sort_keys=True, separators=(",", ":")),
            h=forged["record_sha256"],
            id=victim.id,
        )
    bad = store.verify_chain().first_bad
    assert bad is not None and (bad.delivery_id, bad.reason) == (victim.id, "altered")


def test_reordering_records_in_the_json_file_is_caught(json_store: JsonFileStore) -> None:
    store = json_store
    stored = _fill(store, 4)

    def swap(d: dict[str, list[object]]) -> None:
        d["deliveries"][1], d["deliveries"][2] = d["deliveries"][2], d["deliveries"][1]

    json_edit(store, swap)
    bad = store.verify_chain().first_bad
    assert bad is not None and bad.reason == "missing/reordered"
    assert bad.delivery_id == stored[1].id


def test_sql_index_rows_must_agree_with_the_hashed_record(sql_store: SqlStore) -> None:
    """Hiding a failure from history by editing the index (not the record) is caught too."""
    store = sql_store
    stored = _fill(store, 3)
    raw_sql(
        store, "UPDATE provider_deliveries SET success = :t WHERE delivery_id = :id", t=True, id=stored[1].id
    )
    bad = store.verify_chain().first_bad
    assert bad is not None and (bad.delivery_id, bad.reason) == (stored[1].id, "altered")
    assert "index" in bad.detail


def test_sql_previous_hash_column_is_covered(sql_store: SqlStore) -> None:
    store = sql_store
    stored = _fill(store, 3)
    raw_sql(store, "UPDATE deliveries SET previous_sha256 = :h WHERE id = :id", h="1" * 64, id=stored[2].id)
    bad = store.verify_chain().first_bad
    assert bad is not None and bad.delivery_id == stored[2].id


def test_appending_after_verification_keeps_the_chain_whole(store: Store) -> None:
    _fill(store, 2)
    assert store.verify_chain().ok
    _fill(store, 2)
    report = store.verify_chain()
    assert report.ok and report.count == 4
