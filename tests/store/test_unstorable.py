"""Data a store refuses for good is reported as UnstorableError (an InputError), not as an unavailable store.

Before: PostgreSQL's "text fields cannot contain NUL" was a StoreError (503 on the API, retried forever by a
worker), and a lone surrogate escaped as a raw UnicodeEncodeError (a 500, a traceback, and on the JSON file
backend a temporary file left behind). The worker ends a job on UnstorableError (tests/queue).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cavra.errors import InputError, UnstorableError
from cavra.store import Store, open_store
from cavra.store.jsonfile import JsonFileStore

from .conftest import Target, make_record

KIND = "integration-delivery"


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def test_a_lone_surrogate_in_a_record_is_unstorable_and_nothing_is_written(
    store: Store, target: Target
) -> None:
    first = store.append_delivery(make_record(event_id="evt-ok"), metadata_kind=KIND)
    with pytest.raises(UnstorableError) as err:
        store.append_delivery(make_record(event_id="evt-\ud800"), metadata_kind=KIND)
    assert isinstance(err.value, InputError) and "not valid Unicode" in err.value.reason
    assert [e.document["id"] for e in store.chain().entries if e.document] == [first.id]
    assert store.verify_chain().ok
    if isinstance(store, JsonFileStore):
        assert _files(store.path) == []  # no temporary file left behind


def test_a_lone_surrogate_in_a_job_payload_is_unstorable(store: Store) -> None:
    from cavra.delivery.queue import delivery_job

    job = delivery_job({"event_type": "x\udfff", "event_id": "e1"}, "webhook", kind=KIND)
    with pytest.raises(UnstorableError):
        store.enqueue_jobs([job])
    assert store.queue_stats().by_state == {}
    if isinstance(store, JsonFileStore):
        assert _files(store.path) == []


@pytest.mark.postgres
def test_postgresql_nul_is_unstorable_not_unavailable(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        with pytest.raises(UnstorableError) as err:
            store.append_delivery(make_record(event_type="cavra.\x00"), metadata_kind=KIND)
        assert (
            "cannot contain NUL" in err.value.reason
            and "postgresql store refuses the data" in err.value.reason
        )
        with pytest.raises(UnstorableError):  # a lookup by such a key: refused as input, not a 503
            store.get_record("integration", "spl\x00unk")
        assert store.verify_chain().ok and not [e for e in store.chain().entries if e.document]
    finally:
        store.close()
