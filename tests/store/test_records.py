"""Plain records and stored deliveries behave the same on every backend."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from cavra.errors import InputError
from cavra.store import GENESIS_SHA256, RECORD_KINDS, Store, record_hash
from cavra.store.base import DeliveryFilter

from .conftest import Target, make_record


def test_record_crud(store: Store) -> None:
    assert store.get_record("integration", "splunk") is None
    assert store.list_records("integration") == []
    store.put_record("integration", "splunk", {"integration_id": "splunk", "provider": "splunk", "n": 1})
    store.put_record("integration", "slack", {"integration_id": "slack", "provider": "slack"})
    first = store.get_record_entry("integration", "splunk")
    assert first is not None and first.body["n"] == 1

    store.put_record("integration", "splunk", {"integration_id": "splunk", "provider": "splunk", "n": 2})
    again = store.get_record_entry("integration", "splunk")
    assert again is not None
    assert again.body["n"] == 2
    assert again.created_at == first.created_at  # replacing keeps when it was first stored
    assert again.updated_at >= first.updated_at
    assert [r["integration_id"] for r in store.list_records("integration")] == ["splunk", "slack"]

    assert store.delete_record("integration", "splunk") is True
    assert store.delete_record("integration", "splunk") is False
    assert store.get_record("integration", "splunk") is None
    assert [r["integration_id"] for r in store.list_records("integration")] == ["slack"]


def test_update_record_is_one_read_modify_write(store: Store) -> None:
    assert store.update_record("integration", "none", lambda body: {**body, "x": 1}) is False
    assert store.get_record("integration", "none") is None  # nothing created
    store.put_record("integration", "hook", {"integration_id": "hook", "n": 0})
    created = store.get_record_entry("integration", "hook")
    assert store.update_record("integration", "hook", lambda body: {**body, "n": body["n"] + 1}) is True
    after = store.get_record_entry("integration", "hook")
    assert after is not None and created is not None
    assert after.body == {"integration_id": "hook", "n": 1} and after.created_at == created.created_at
    seen: list[dict[str, object]] = []
    assert store.update_record("integration", "hook", lambda body: seen.append(body) or None) is True
    assert seen == [{"integration_id": "hook", "n": 1}] and store.get_record("integration", "hook") == seen[0]
    with pytest.raises(InputError):
        store.update_record("nope", "hook", lambda body: body)


def test_concurrent_updates_lose_nothing(store: Store) -> None:
    import threading

    store.put_record("integration", "hook", {"integration_id": "hook", "n": 0})

    def bump() -> None:
        for _ in range(25):
            store.update_record("integration", "hook", lambda body: {**body, "n": body["n"] + 1})

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_record("integration", "hook") == {"integration_id": "hook", "n": 100}


def test_every_record_kind_is_separate(store: Store) -> None:
    for kind in RECORD_KINDS:
        store.put_record(kind, "same-id", {"kind": kind})
    for kind in RECORD_KINDS:
        assert store.get_record(kind, "same-id") == {"kind": kind}


def test_unknown_kinds_are_refused(store: Store) -> None:
    with pytest.raises(InputError, match="unknown record kind 'bogus'"):
        store.put_record("bogus", "x", {})
    with pytest.raises(InputError, match="unknown metadata kind"):
        store.append_delivery(make_record(), metadata_kind="nope")


def test_records_survive_reopening(target: Target) -> None:
    with target.open() as s:
        s.put_record("endpoint_export", "eme_stable", {"export_id": "eme_stable", "unicode": "é✓"})
        delivery = s.append_delivery(make_record(), metadata_kind="release-connector-delivery")
    with target.open() as s:
        assert s.get_record("endpoint_export", "eme_stable") == {"export_id": "eme_stable", "unicode": "é✓"}
        assert s.get_delivery(delivery.id) == delivery.document


def test_append_and_get(store: Store) -> None:
    record = make_record("jamf", success=False, event_type="cavra.endpoint_management_export")
    first = store.append_delivery(
        record,
        metadata_kind="endpoint-management-publication-delivery",
        subject_kind="endpoint_export",
        subject_id="eme_stable",
        integration_id="jamf-prod",
    )
    assert first.id.startswith("dlv_") and len(first.id) == 36
    assert first.sequence == 1
    assert first.previous_sha256 == GENESIS_SHA256

    got = store.get_delivery(first.id)
    assert got is not None
    assert got == first.document
    for key, value in record.items():
        assert got[key] == value  # the record is stored as given
    assert got["id"] == first.id
    assert got["metadata_kind"] == "endpoint-management-publication-delivery"
    assert got["subject_kind"] == "endpoint_export" and got["subject_id"] == "eme_stable"
    assert got["integration_id"] == "jamf-prod"
    assert datetime.fromisoformat(got["created_at"].replace("Z", "+00:00")) == first.created_at

    # record_sha256 is the sha256 of the canonical JSON of the document without record_sha256
    body = {k: v for k, v in got.items() if k != "record_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert got["record_sha256"] == hashlib.sha256(canonical).hexdigest() == record_hash(got)

    second = store.append_delivery(make_record(), metadata_kind="release-connector-delivery")
    assert second.sequence == 2
    assert second.previous_sha256 == first.record_sha256
    assert store.get_delivery(second.id)["previous_id"] == first.id  # type: ignore[index]
    assert store.get_delivery("dlv_missing") is None


def test_append_does_not_trust_given_hash_fields_or_mutate_the_input(store: Store) -> None:
    record = make_record()
    record["record_sha256"] = "f" * 64
    record["previous_sha256"] = "e" * 64
    snapshot = json.loads(json.dumps(record))
    stored = store.append_delivery(record, metadata_kind="integration-delivery")
    assert record == snapshot
    assert stored.record_sha256 != "f" * 64
    assert stored.previous_sha256 == GENESIS_SHA256
    assert store.verify_chain().ok


def test_non_json_values_are_stored_as_they_will_be_read(store: Store) -> None:
    record = make_record()
    record["generated_at"] = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    stored = store.append_delivery(record, metadata_kind="integration-delivery")
    got = store.get_delivery(stored.id)
    assert got is not None and got["generated_at"] == "2025-01-02 03:04:05+00:00"
    assert store.verify_chain().ok


def test_invalid_delivery_record_is_refused(store: Store) -> None:
    with pytest.raises(InputError, match="deliveries must be a list"):
        store.append_delivery({"deliveries": "x"}, metadata_kind="integration-delivery")
    with pytest.raises(InputError, match=r"deliveries\[0\].provider"):
        store.append_delivery({"deliveries": [{"success": True}]}, metadata_kind="integration-delivery")
    assert store.verify_chain().count == 0


def test_each_provider_delivery_is_indexed(store: Store) -> None:
    record = make_record(
        providers=[
            {
                "provider": "splunk",
                "success": True,
                "status": "delivered",
                "status_code": 200,
                "attempt_count": 1,
            },
            {
                "provider": "jamf",
                "success": False,
                "status": "pending",
                "status_code": 202,
                "attempt_count": 2,
            },
            {
                "provider": "slack",
                "success": False,
                "status": "failed",
                "status_code": 500,
                "attempt_count": 3,
            },
        ]
    )
    # a provider whose connector could not load appears only in errors[]: it did not deliver
    record["errors"] = [{"provider": "teams", "error": "teams: url is required"}]
    stored = store.append_delivery(record, metadata_kind="integration-delivery", integration_id="multi")
    rows = store.page_provider_deliveries(DeliveryFilter(), limit=10)
    by_provider = {r.provider: r for r in rows}
    assert set(by_provider) == {"splunk", "jamf", "slack", "teams"}
    assert {r.delivery_id for r in rows} == {stored.id}
    assert by_provider["jamf"].status == "pending" and not by_provider["jamf"].failed
    assert by_provider["slack"].attempt_count == 3 and by_provider["slack"].failed
    assert by_provider["teams"].failed and by_provider["teams"].attempt_count == 0
    assert by_provider["teams"].error == "teams: url is required"
    assert all(r.integration_id == "multi" for r in rows)


def test_created_at_can_be_given_for_imports(store: Store) -> None:
    when = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    stored = store.append_delivery(make_record(), metadata_kind="integration-delivery", created_at=when)
    assert stored.created_at == when
    rows = store.page_provider_deliveries(
        DeliveryFilter(since=when - timedelta(seconds=1), until=when + timedelta(seconds=1)), limit=5
    )
    assert [r.delivery_id for r in rows] == [stored.id]
