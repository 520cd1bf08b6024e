"""Grouping windows under a controlled clock: a burst inside group_wait is one Slack message and one Jira
issue; events after it wait group_interval and become one more message and one comment on the same
issue; after repeat_interval a new group (and ticket) opens. On SQLite, the JSON file and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from importlib import resources

import jsonschema

from cavra.emulators.server import EmulatorServer
from cavra.governance import service as governance
from cavra.store import Store

from .conftest import Clock, documents, flush, grouped_config, rollback, slack_messages

SCHEMA = json.loads(resources.files("cavra").joinpath("schemas/connector-delivery.v1.json").read_text())


async def publish(store: Store, config, clock: Clock, *events: dict) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return await governance.publish_events(store, config, list(events), now=clock())


def due(store: Store, clock: Clock, seconds: float) -> list[str]:
    """The jobs due at ``seconds`` on the test's clock (claimed by a probe, then given back)."""
    jobs = store.claim_jobs("probe", limit=50, lease_seconds=5, now=clock.at(seconds))
    store.release_jobs("probe", [j.id for j in jobs], uncount=True)
    return [j.id for j in jobs]


async def test_a_burst_is_one_message_and_one_ticket_then_comments(
    store: Store, emulators: EmulatorServer, clock: Clock
) -> None:
    config = grouped_config(emulators)
    answers = []
    for n, at in enumerate((0, 10, 20), start=1):
        clock.set(at)
        answers.append(await publish(store, config, clock, rollback(n)))
    groups = {d["group"]["group_id"] for a in answers for d in a["events"][0]["destinations"]}
    assert len(groups) == 2  # one group per destination (slack, jira)
    first = answers[0]["events"][0]["destinations"][0]
    assert (
        first["state"] == "grouped" and first["group"]["group_key"] == 'rollbacks/slack/{labels.env="prod"}'
    )
    assert answers[0]["status"] == "accepted"
    assert due(store, clock, 29) == []
    assert len(due(store, clock, 30)) == 2  # one flush job per destination, due group_wait after the first

    clock.set(31)
    await flush(store, config, clock)
    messages = slack_messages(emulators)
    assert len(messages) == 1
    text = json.dumps(messages[0])
    assert "3 CAVRA events (critical)" in text and "rre_prod_1" in text and "rre_prod_3" in text
    assert "critical: 2" in text and "high: 1" in text
    jira = [r for r in emulators.hub.received("jira") if r.method == "POST"]
    assert [r.path.rsplit("/", 1)[-1] for r in jira] == ["issue"]

    # later events of the open group wait group_interval after the last message: one update, one comment
    for n, at in ((4, 40), (5, 50)):
        clock.set(at)
        await publish(store, config, clock, rollback(n))
    assert due(store, clock, 90) == [] and len(due(store, clock, 91)) == 2
    clock.set(91)
    await flush(store, config, clock)
    messages = slack_messages(emulators)
    assert len(messages) == 2 and "2 CAVRA events" in json.dumps(messages[1])
    assert "update 2" in json.dumps(messages[1])
    jira = [r for r in emulators.hub.received("jira") if r.method == "POST"]
    assert [r.path.rsplit("/", 1)[-1] for r in jira] == ["issue", "comment"]

    # after repeat_interval without an event, the group is closed: a new one, a new ticket
    clock.set(91 + 301)
    again = await publish(store, config, clock, rollback(6))
    new_groups = {d["group"]["group_id"] for d in again["events"][0]["destinations"]}
    assert not new_groups & groups
    clock.set(91 + 301 + 30)
    await flush(store, config, clock)
    jira = [r for r in emulators.hub.received("jira") if r.method == "POST"]
    assert [r.path.rsplit("/", 1)[-1] for r in jira] == ["issue", "comment", "issue"]
    assert len(slack_messages(emulators)) == 3


async def test_records_name_the_group_and_the_group_names_its_members(
    store: Store, emulators: EmulatorServer, clock: Clock
) -> None:
    config = grouped_config(emulators, [{**_slack_only(), "group_by": ["labels.env", "event_type"]}])
    for n in range(1, 5):
        clock.set(n)
        await publish(store, config, clock, rollback(n, env="prod" if n < 4 else "staging"))
    clock.set(40)
    await flush(store, config, clock)
    assert len(slack_messages(emulators)) == 2  # prod and staging are two groups
    docs = documents(store)
    groups = [d for d in docs if d["metadata_kind"] == "group-delivery"]
    members = [d for d in docs if d["metadata_kind"] == "event-delivery"]
    assert len(groups) == 2 and len(members) == 4
    by_id = {g["id"]: g for g in groups}
    for m in members:
        group = by_id[m["group"]["group_delivery_id"]]
        assert m["event_id"] in group["group"]["member_event_ids"]
        assert m["success"] is True and m["deliveries"][0]["destination"] == "slack"
        assert m["group"]["group_key"] == group["group"]["group_key"]
    prod = next(g for g in groups if g["group"]["member_count"] == 3)
    assert prod["group"]["member_event_ids"] == ["evt-rb-1", "evt-rb-2", "evt-rb-3"]
    assert prod["event_type"] == "cavra.notification_group" and prod["success"] is True
    for doc in docs:
        jsonschema.validate(doc, SCHEMA)
    assert store.verify_chain().ok


async def test_publishing_an_event_again_joins_nothing_twice(
    store: Store, emulators: EmulatorServer, clock: Clock
) -> None:
    config = grouped_config(emulators, [_slack_only()])
    first = await publish(store, config, clock, rollback(1))
    again = await publish(store, config, clock, rollback(1))
    one, two = (a["events"][0]["destinations"][0] for a in (first, again))
    assert one["group"]["joined"] is True and two["group"]["joined"] is False
    assert one["job_id"] == two["job_id"]
    clock.set(31)
    await flush(store, config, clock)
    assert "1 CAVRA event (critical)" in json.dumps(slack_messages(emulators))
    # published once more after the flush: still nothing new to send
    clock.t += timedelta(seconds=1)
    await publish(store, config, clock, rollback(1))
    clock.set(200)
    await flush(store, config, clock)
    assert len(slack_messages(emulators)) == 1


def _slack_only() -> dict:  # type: ignore[type-arg]
    return {**{k: v for k, v in _base().items()}, "to": ["slack"]}


def _base() -> dict:  # type: ignore[type-arg]
    from .conftest import GROUPED

    return dict(GROUPED)


async def test_servicenow_and_teams_one_ticket_per_group_work_notes_after(
    json_store: Store, clock: Clock
) -> None:
    async with EmulatorServer(providers=["servicenow", "teams"]) as srv:
        route = {**_base(), "to": ["servicenow", "teams"]}
        config = grouped_config(srv, [route])
        for n in (1, 2):
            await publish(json_store, config, clock, rollback(n))
        clock.set(31)
        await flush(json_store, config, clock)
        clock.set(40)
        await publish(json_store, config, clock, rollback(3))
        clock.set(91)
        await flush(json_store, config, clock)
        sn = [(r.method, r.path) for r in srv.hub.received("servicenow") if r.method != "GET"]
        assert [m for m, _ in sn] == ["POST", "PATCH"], sn  # the ticket, then a work note on it
        patch = next(r for r in srv.hub.received("servicenow") if r.method == "PATCH")
        assert "work_notes" in json.loads(patch.body) and "rre_prod_3" in patch.body.decode()
        teams = [r for r in srv.hub.received("teams") if r.method == "POST"]
        assert len(teams) == 2 and "2 CAVRA events" in teams[0].body.decode()


async def test_redelivering_a_group_record_sends_its_members_again(
    store: Store, emulators: EmulatorServer, clock: Clock
) -> None:
    from cavra.delivery.replay import redeliver
    from cavra.governance.notes import delivery_runtime

    config = grouped_config(emulators, [_slack_only()])
    await publish(store, config, clock, rollback(1), rollback(2))
    clock.set(31)
    await flush(store, config, clock)
    group = next(d for d in documents(store) if d["metadata_kind"] == "group-delivery")
    done = await redeliver(
        store, group["id"], config=config, retry_base_delay=0.01, runtime=delivery_runtime()
    )
    assert done.documents[0] is not None and done.documents[0]["success"] is True
    again = done.documents[0]
    assert again["group"]["member_event_ids"] == ["evt-rb-1", "evt-rb-2"]
    assert again["job"]["replay_of"] == group["id"]
    messages = slack_messages(emulators)
    assert len(messages) == 2 and "2 CAVRA events" in json.dumps(messages[1])
    members = [d for d in documents(store) if d["metadata_kind"] == "event-delivery"]
    assert len(members) == 4  # each member's record names the delivery it went out in, both times
    assert {m["group"]["group_delivery_id"] for m in members} == {group["id"], again["id"]}


async def test_a_flush_job_that_died_before_taking_its_members_does_not_strand_the_group(
    store: Store, emulators: EmulatorServer, clock: Clock
) -> None:
    from cavra.delivery.record import build_record
    from cavra.store.jobs import DEAD, JobOutcome

    config = grouped_config(emulators, [_slack_only()])
    first = await publish(store, config, clock, rollback(1))
    dead_job = first["events"][0]["destinations"][0]["job_id"]
    (job,) = store.claim_jobs("op", limit=5, lease_seconds=5, now=clock.at(31))
    assert job.id == dead_job
    store.complete_job(job.id, "op", build_record(job.event, []), JobOutcome(DEAD, "past max_runs"))
    clock.set(40)
    again = await publish(store, config, clock, rollback(2))
    assert again["events"][0]["destinations"][0]["job_id"] != dead_job
    clock.set(71)
    await flush(store, config, clock)
    messages = slack_messages(emulators)
    assert len(messages) == 1 and "2 CAVRA events" in json.dumps(messages[0])
