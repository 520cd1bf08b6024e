"""Publishing through the routes: one outbox job per matched destination, on SQLite, the JSON file and
PostgreSQL; records name their route; repeats send nothing twice; an unrouted event is recorded."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

from cavra.delivery.policy import RetryPolicy
from cavra.emulators.server import EmulatorServer
from cavra.errors import ConfigError, InputError
from cavra.governance import service as governance
from cavra.metrics import METRICS
from cavra.store import Store

from .conftest import BUNDLE_HIGH, OTHER, ROLLBACK, emulator_config

SCHEMA = json.loads(resources.files("cavra").joinpath("schemas/connector-delivery.v1.json").read_text())
FAST = RetryPolicy(retries=0, base_delay=0.01)
NO_DEFAULT = [
    {
        "name": "rollbacks",
        "event_type": "cavra.release.rollback_execution",
        "to": ["slack", "jira"],
        "continue": True,
    },
    {"name": "release", "event_type": "cavra.release.*", "to": "splunk"},
]


def dests(item: dict[str, Any]) -> dict[str, str]:
    return {d["destination"]: d["route"] for d in item["destinations"]}


async def test_fan_out_runs_one_job_per_destination_and_records_the_route(
    store: Store, emulators: EmulatorServer
) -> None:
    config = emulator_config(emulators)
    answer = await governance.publish_events(
        store, config, [ROLLBACK, BUNDLE_HIGH], wait=True, retries=0, policy=FAST
    )
    assert answer["status"] == "completed" and answer["success"] is True, answer
    rollback, bundle = answer["events"]
    assert [r["name"] for r in rollback["routes"]] == ["release-rollbacks", "release-audit"]
    assert dests(rollback) == {
        "slack": "release-rollbacks",
        "jira": "release-rollbacks",
        "splunk": "release-audit",
    }
    assert dests(bundle) == {"teams": "soc-high", "splunk": "soc-high", "webhook": "soc-high"}
    assert answer["job_count"] == 6
    for item in answer["events"]:
        for d in item["destinations"]:
            stored = store.get_delivery(d["delivery_id"])
            assert stored is not None
            assert stored["metadata_kind"] == "event-delivery"
            assert stored["route"] == d["route"]
            jsonschema.validate(stored, SCHEMA)
            assert stored["event_id"] == item["event_id"]
            assert [x["provider"] for x in stored["deliveries"]] == [d["destination"]]
            assert d["record"]["route"] == d["route"]
    assert len(emulators.hub.received("slack")) == 1
    assert store.verify_chain().ok


async def test_a_repeated_event_is_not_sent_twice(store: Store, emulators: EmulatorServer) -> None:
    config = emulator_config(emulators)
    first = await governance.publish_events(store, config, [ROLLBACK], wait=True, retries=0, policy=FAST)
    again = await governance.publish_events(store, config, [ROLLBACK], wait=True, retries=0, policy=FAST)
    ids = [d["job_id"] for d in first["events"][0]["destinations"]]
    assert [d["job_id"] for d in again["events"][0]["destinations"]] == ids
    assert len(emulators.hub.received("slack")) == 1
    assert len(emulators.hub.received("splunk")) == 1


async def test_an_idempotency_key_covers_every_event_of_a_call(
    store: Store, emulators: EmulatorServer
) -> None:
    config = emulator_config(emulators)
    other_rollback = {**ROLLBACK, "event_id": "evt-rollback-2"}
    first = await governance.publish_events(
        store, config, [ROLLBACK, other_rollback], idempotency_key="call-1", retries=0
    )
    assert first["status"] == "accepted" and first["job_count"] == 6
    again = await governance.publish_events(
        store, config, [ROLLBACK, other_rollback], idempotency_key="call-1", retries=0
    )
    assert [d["job_id"] for e in again["events"] for d in e["destinations"]] == [
        d["job_id"] for e in first["events"] for d in e["destinations"]
    ]
    assert len({d["job_id"] for e in first["events"] for d in e["destinations"]}) == 6
    assert not emulators.hub.received()  # not waited: left to the workers


async def test_an_unrouted_event_is_answered_recorded_once_and_counted(
    store: Store, emulators: EmulatorServer
) -> None:
    config = emulator_config(emulators, NO_DEFAULT)
    before = METRICS.events.labels("unrouted")._value.get()
    answer = await governance.publish_events(
        store, config, [OTHER, ROLLBACK], wait=True, retries=0, policy=FAST
    )
    unrouted, routed = answer["events"]
    assert unrouted["status"] == "unrouted" and unrouted["destinations"] == [] and unrouted["routes"] == []
    assert answer["unrouted"] == 1 and answer["routed"] == 1 and answer["success"] is False
    stored = store.get_delivery(unrouted["delivery_id"])
    assert stored is not None and stored["metadata_kind"] == "unrouted-event"
    assert stored["routing"] == {"status": "unrouted", "routes_evaluated": 2}
    assert stored["deliveries"] == [] and stored["route"] is None
    jsonschema.validate(stored, SCHEMA)
    assert routed["status"] == "routed" and len(routed["destinations"]) == 3
    again = await governance.publish_events(store, config, [OTHER], wait=True)
    assert again["events"][0]["delivery_id"] == unrouted["delivery_id"]  # recorded once
    assert METRICS.events.labels("unrouted")._value.get() == before + 2
    assert store.verify_chain().ok


async def test_a_disabled_destination_is_skipped_and_said_so(store: Store, emulators: EmulatorServer) -> None:
    from cavra.config import config_from_data
    from cavra.emulators.server import demo_environment

    data, env = demo_environment(emulators.base_url, emulators.settings)
    data["connectors"]["jira"]["enabled"] = False
    config = config_from_data(data, "c.json", env)
    answer = await governance.publish_events(store, config, [ROLLBACK], wait=True, retries=0, policy=FAST)
    item = answer["events"][0]
    assert item["skipped"] == [{"destination": "jira", "route": "release-rollbacks", "reason": "disabled"}]
    assert set(dests(item)) == {"slack", "splunk"}
    assert not emulators.hub.received("jira")


async def test_bad_input_writes_nothing(store: Store, emulators: EmulatorServer) -> None:
    config = emulator_config(emulators)
    with pytest.raises(InputError, match=r"events\[1\]: field event_type is required"):
        await governance.publish_events(store, config, [ROLLBACK, {"x": 1}])
    with pytest.raises(InputError, match=r"events\[1\]: duplicate event_id"):
        await governance.publish_events(store, config, [ROLLBACK, ROLLBACK])
    config.routes = None
    with pytest.raises(ConfigError, match="no routes"):
        await governance.publish_events(store, config, [ROLLBACK])
    assert store.get_job_by_key("x") is None
    assert not emulators.hub.received()


async def test_a_redelivery_keeps_the_route(store: Store, emulators: EmulatorServer) -> None:
    from cavra.delivery import replay

    config = emulator_config(emulators)
    answer = await governance.publish_events(store, config, [ROLLBACK], wait=True, retries=0, policy=FAST)
    first = answer["events"][0]["destinations"][0]
    sub = await replay.redeliver(
        store,
        first["delivery_id"],
        runtime=governance.delivery_runtime(),
        config=config,
        wait=True,
        timeout=30,
    )
    assert sub.done
    again = sub.documents[0]
    assert again is not None and again["route"] == first["route"] == "release-rollbacks"
    assert again["job"]["replay_of"] == first["delivery_id"]
