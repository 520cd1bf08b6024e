"""Two workers (and two publishers) on one PostgreSQL store never send one group twice.

Two publishers, each with its own store connection, publish the same 20 groups' events at once (their
joins race for the same slots: the slot row is created once and locked ``FOR UPDATE``); then two workers,
each with its own connection, run the flush jobs at once. Every group goes out in exactly one Slack
message, every event in exactly one group, and one group record and one member record per event are
stored. A flush taken by two jobs at once (a duplicate job) gets its members exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter

import pytest

from cavra.emulators.server import EmulatorServer
from cavra.emulators.slack import slack_state
from cavra.governance import service as governance
from cavra.grouping.state import take_members
from cavra.store import open_store
from cavra.store.jobs import JobFilter

from .conftest import Clock, documents, flush, grouped_config, rollback

GROUPS = 20
PER_GROUP = 6
ROUTE = {"name": "rollbacks", "to": "slack", "group_by": ["labels.env"], "group_wait": "30s"}


@pytest.mark.postgres
async def test_two_workers_send_each_group_once(pg_url: str, emulators: EmulatorServer, clock: Clock) -> None:
    config = grouped_config(emulators, [ROUTE])
    events = [rollback(g * 100 + n, env=f"env{g}") for g in range(GROUPS) for n in range(PER_GROUP)]
    with open_store(pg_url) as a, open_store(pg_url) as b:
        halves = [events[0::2], events[1::2]]
        await asyncio.gather(
            *(
                governance.publish_events(db, config, [e], now=clock())
                for db, half in zip((a, b), halves, strict=True)
                for e in half
            )
        )
        jobs = a.list_jobs(JobFilter(kind="group-delivery"))
        assert len(jobs) == GROUPS  # one flush job per group, however the joins raced
        clock.set(31)
        await asyncio.gather(flush(a, config, clock), flush(b, config, clock))
        posted = slack_state(emulators.hub).messages
        assert len(posted) == GROUPS
        assert all(f"{PER_GROUP} CAVRA events" in json.dumps(m.payload) for m in posted)
        docs = documents(a)
    groups = [d for d in docs if d["metadata_kind"] == "group-delivery"]
    members = [d for d in docs if d["metadata_kind"] == "event-delivery"]
    assert len(groups) == GROUPS and all(g["success"] for g in groups)
    listed = Counter(eid for g in groups for eid in g["group"]["member_event_ids"])
    assert set(listed) == {e["event_id"] for e in events} and set(listed.values()) == {1}
    assert len(members) == len(events)
    assert {g["group"]["member_count"] for g in groups} == {PER_GROUP}


@pytest.mark.postgres
async def test_a_duplicate_flush_job_takes_no_member_twice(
    pg_url: str, emulators: EmulatorServer, clock: Clock
) -> None:
    config = grouped_config(emulators, [ROUTE])
    with open_store(pg_url) as a, open_store(pg_url) as b:
        await governance.publish_events(a, config, [rollback(n) for n in range(10)], now=clock())
        (job,) = a.list_jobs(JobFilter(kind="group-delivery"))
        twin = dataclasses.replace(job, id="job_duplicate_of_the_flush")
        one, two = await asyncio.gather(
            asyncio.to_thread(take_members, a, job, now=clock.at(31)),
            asyncio.to_thread(take_members, b, twin, now=clock.at(31)),
        )
    sizes = sorted([len(one.members), len(two.members)])
    assert sizes == [0, 10]
