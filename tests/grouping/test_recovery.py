"""A worker that dies between a group's record and its members' records leaves them owed, not lost: the
next worker to start writes them, once, naming the group's record."""

from __future__ import annotations

import pytest

from cavra.emulators.server import EmulatorServer
from cavra.errors import StoreError
from cavra.governance import service as governance
from cavra.grouping import flush as grouping_flush
from cavra.store import Store

from .conftest import GROUPED, Clock, documents, flush, grouped_config, rollback, slack_messages


async def test_member_records_owed_by_a_dead_worker_are_written_by_the_next(
    store: Store, emulators: EmulatorServer, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = grouped_config(emulators, [{**GROUPED, "to": ["slack"]}])
    await governance.publish_events(store, config, [rollback(1), rollback(2)], now=clock())

    def dies(*_args: object, **_kw: object) -> None:
        raise StoreError("the worker died here")  # the group's record is stored, the members' not yet

    monkeypatch.setattr(grouping_flush, "member_records", dies)
    clock.set(31)
    await flush(store, config, clock)
    assert len(slack_messages(emulators)) == 1
    assert [d["metadata_kind"] for d in documents(store)] == ["group-delivery"]
    monkeypatch.undo()

    await flush(store, config, clock)  # the next worker starts
    docs = documents(store)
    group = docs[0]
    members = [d for d in docs if d["metadata_kind"] == "event-delivery"]
    assert [m["event_id"] for m in members] == ["evt-rb-1", "evt-rb-2"]
    assert {m["group"]["group_delivery_id"] for m in members} == {group["id"]}
    await flush(store, config, clock)  # and nothing is written twice
    assert len(documents(store)) == 3
    assert len(slack_messages(emulators)) == 1
    assert store.verify_chain().ok
