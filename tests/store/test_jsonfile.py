"""The JSON file on the SQL engine: what is loaded, reloaded and written back (cavra.store.jsonfile)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cavra.delivery.queue import delivery_job
from cavra.errors import UnstorableError
from cavra.store import DeliveryFilter, open_store
from cavra.store.jobs import JobOutcome
from cavra.store.jsonfile import JsonFileStore

from .conftest import json_edit, make_record

KIND = "release-connector-delivery"


def _json(path: Path) -> JsonFileStore:
    store = open_store(metadata_json=str(path))
    assert isinstance(store, JsonFileStore)
    return store


def _fill(store: JsonFileStore) -> None:
    store.put_record("integration", "i1", {"integration_id": "i1", "nested": {"b": [1, 2.5, None], "a": "é"}})
    for n in range(3):
        store.append_delivery(make_record(success=n != 1, event_id=f"e{n}"), metadata_kind=KIND)
    store.enqueue_jobs(
        [delivery_job({"event_type": "x", "event_id": f"j{n}"}, "webhook", kind=KIND) for n in range(2)]
    )
    job = store.claim_jobs("w", limit=1, lease_seconds=60)[0]
    store.complete_job(job.id, "w", make_record(), JobOutcome("succeeded"))

    def pause(dest: object, now: object) -> None:
        dest.paused_until = now

    store.update_destination("webhook", pause)


def test_a_file_read_and_written_again_is_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    _fill(_json(path))
    before = path.read_text(encoding="utf-8")
    other = _json(path)
    with other._update(force=True):  # another process loads it into its database and writes it back
        pass
    after = path.read_text(encoding="utf-8")
    assert before != after  # a new write_id
    assert re.sub(r'"write_id": "\w+"', "", before) == re.sub(r'"write_id": "\w+"', "", after)
    assert other.verify_chain().ok


def test_a_second_store_sees_the_first_ones_writes(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    first, second = _json(path), _json(path)
    stored = [first.append_delivery(make_record(event_id=f"e{n}"), metadata_kind=KIND) for n in range(3)]
    assert second.count_provider_deliveries(DeliveryFilter()) == 3
    first.append_delivery(make_record(success=False, event_id="e3"), metadata_kind=KIND)  # the file grows
    first.put_record("integration", "i1", {"a": 1})
    assert second.count_provider_deliveries(DeliveryFilter(success=False)) == 1
    assert second.get_record("integration", "i1") == {"a": 1}
    second.append_delivery(make_record(event_id="e4"), metadata_kind=KIND)  # appends after the first's
    assert [e.sequence for e in first.chain().entries] == [1, 2, 3, 4, 5]
    assert first.verify_chain().ok

    def edit(data: dict[str, list[dict[str, str]]]) -> None:
        data["deliveries"][1]["event_id"] = "forged"

    json_edit(first, edit)  # not an extension: the second store loads the whole file again
    bad = second.verify_chain().first_bad
    assert bad is not None and (bad.delivery_id, bad.reason) == (stored[1].id, "altered")
    assert second.count_provider_deliveries(DeliveryFilter(event_id="forged")) == 1


def test_an_operation_that_changes_nothing_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    store = _json(path)
    _fill(store)
    before, stat = path.read_bytes(), path.stat()
    assert store.claim_jobs("w", limit=5, lease_seconds=60, providers=["nobody"]) == []
    assert store.purge_jobs(states=["succeeded"], finished_before=datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert not store.delete_record("integration", "missing")
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_a_refused_write_leaves_the_file_and_what_is_read_in_step(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    store = _json(path)
    store.append_delivery(make_record(event_id="ok"), metadata_kind=KIND)
    before = path.read_bytes()
    with pytest.raises(UnstorableError):
        store.put_record("integration", "bad", {"name": "x\ud800"})
    assert path.read_bytes() == before
    assert store.get_record("integration", "bad") is None
    assert store.count_provider_deliveries(DeliveryFilter()) == 1
