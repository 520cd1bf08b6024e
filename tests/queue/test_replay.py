"""Replay: dead letters delivered after the provider recovers (service, CLI, API), linked to their records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cavra.api.app import create_app
from cavra.api.settings import ApiSettings
from cavra.cli.main import app as cli
from cavra.delivery.guard import GuardSettings
from cavra.delivery.queue import Signals, submit
from cavra.delivery.replay import replay, states_for
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.emulators.webhook import receiver_state
from cavra.errors import ConflictError
from cavra.store import open_store
from cavra.store.jobs import DEAD, FAILED, QUEUED, SUCCEEDED, JobFilter
from cavra.store.sql import SqlStore

from ..api.conftest import bearer, running, token_set
from .conftest import emulator_config, new_job
from .test_worker import job, records_of, until
from .test_worker import running as worker_running


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "metadata.db"


@pytest.fixture
def db(db_path: Path) -> SqlStore:
    s = open_store(f"sqlite:///{db_path}")
    assert isinstance(s, SqlStore)
    return s


async def _kill_three(db: SqlStore, srv: EmulatorServer) -> list[str]:
    """Three jobs that become dead letters while the provider answers 503."""
    srv.hub.add_fault("webhook", Fault(status=503, count=1000))
    ids = [e.job.id for e in db.enqueue_jobs([new_job(i) for i in range(3)])]
    no_breaker = GuardSettings(failure_threshold=1000)  # let them die instead of waiting for a probe
    async with worker_running(db, emulator_config(srv), guard=no_breaker):
        await until(lambda: all(job(db, i).state == DEAD for i in ids))
    srv.hub.faults.clear()  # the provider recovers
    return ids


async def test_dead_letters_are_delivered_by_a_replay_after_recovery(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    dead = await _kill_three(db, webhook_srv)
    assert receiver_state(webhook_srv.hub).unique == 0
    items = replay(db, states=states_for(failed=False, dead=True, include_succeeded=False))
    assert [i.original.id for i in items] == dead and all(i.created for i in items)
    replays = [i.replay.id for i in items if i.replay is not None]
    async with worker_running(db, emulator_config(webhook_srv)):
        await until(lambda: all(job(db, r).state == SUCCEEDED for r in replays))
    assert receiver_state(webhook_srv.hub).unique == 3
    for original, replayed in zip(dead, replays, strict=True):
        old, new = job(db, original), job(db, replayed)
        assert old.state == DEAD  # the original keeps its state and its one final record
        assert new.replay_of == old.delivery_id and new.event == old.event and new.provider == old.provider
        (record,) = records_of(db, replayed)
        assert record["success"] is True and record["job"]["replay_of"] == old.delivery_id
        assert record["event_id"] == old.event["event_id"]
    again = replay(db, states=(DEAD,))  # each dead letter is replayed once
    assert [i.created for i in again] == [False] * 3 and [i.replay.id for i in again if i.replay] == replays
    assert db.verify_chain().ok


async def test_a_failed_replay_is_replayed_once_not_twice(db: SqlStore, webhook_srv: EmulatorServer) -> None:
    """Dead letters replayed while the provider is still down die again; the next bulk replay lists both the
    originals and their dead replays and must deliver each event once (a replay of the replay), not also
    re-arm the first replay."""
    dead = await _kill_three(db, webhook_srv)
    first = replay(db, states=(DEAD,))
    webhook_srv.hub.add_fault("webhook", Fault(status=503, count=1000))  # still down
    no_breaker = GuardSettings(failure_threshold=1000)
    replays = [i.replay.id for i in first if i.replay is not None]
    async with worker_running(db, emulator_config(webhook_srv), guard=no_breaker):
        await until(lambda: all(job(db, r).state == DEAD for r in replays))
    webhook_srv.hub.faults.clear()  # recovered
    second = replay(db, states=(DEAD,))
    by_original = {i.original.id: i for i in second}
    assert set(by_original) == {*dead, *replays}
    for original, replayed in zip(dead, replays, strict=True):
        item = by_original[original]
        assert not item.created and item.replay is not None and item.replay.id == replayed
    fresh = [by_original[r] for r in replays]
    assert all(i.created and i.replay is not None for i in fresh)
    async with worker_running(db, emulator_config(webhook_srv)):
        await until(lambda: all(job(db, i.replay.id).state == SUCCEEDED for i in fresh if i.replay))
        await until(lambda: receiver_state(webhook_srv.hub).unique == 3)
    assert {job(db, r).state for r in replays} == {DEAD}  # the first replays were not re-armed
    state = receiver_state(webhook_srv.hub)
    assert state.unique == 3 and state.duplicates == 0
    for i in fresh:
        assert i.replay is not None and job(db, i.replay.id).replay_of == i.original.delivery_id
    assert db.verify_chain().ok


def test_cli_replay_and_jobs(db: SqlStore, db_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from cavra.store.jobs import JobOutcome

    db.enqueue_jobs([new_job(1), new_job(2), new_job(3, provider="splunk")])
    claimed = db.claim_jobs("w", limit=3, lease_seconds=30)
    outcomes = [
        JobOutcome(DEAD, "dead letter after 3 attempt runs"),
        JobOutcome(FAILED, "HTTP 400"),
        JobOutcome(SUCCEEDED),
    ]
    for j, outcome in zip(claimed, outcomes, strict=True):
        db.complete_job(j.id, "w", {"event_id": j.event["event_id"], "deliveries": []}, outcome)
    runner = CliRunner()
    url = f"sqlite:///{db_path}"
    dry = runner.invoke(cli, ["deliveries", "replay", "--store", url, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert [i["state"] for i in json.loads(dry.output)["items"]] == [DEAD, FAILED]
    assert len(db.list_jobs(JobFilter())) == 3  # a dry run changes nothing
    done = runner.invoke(cli, ["deliveries", "replay", "--store", url, "--dead", "--json"])
    assert done.exit_code == 0, done.output
    (item,) = json.loads(done.output)["items"]
    assert item["job_id"] == claimed[0].id and item["replay_job_id"] and not item["already_replayed"]
    since = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")  # UTC, no offset
    none = runner.invoke(cli, ["deliveries", "replay", "--store", url, "--since", since, "--json"])
    assert none.exit_code == 0 and json.loads(none.output)["count"] == 0
    listing = runner.invoke(cli, ["deliveries", "jobs", "--store", url, "--state", "queued", "--json"])
    assert listing.exit_code == 0, listing.output
    (queued,) = json.loads(listing.output)["items"]
    assert queued["replay_of"] == job(db, claimed[0].id).delivery_id
    bad = runner.invoke(cli, ["deliveries", "jobs", "--store", url, "--state", "lost"])
    assert bad.exit_code == 2 and "--state" in bad.output
    table = runner.invoke(cli, ["deliveries", "jobs", "--store", url])
    assert table.exit_code == 0 and "1 queued" in table.output and "1 dead" in table.output


async def test_api_redeliver_jobs_and_metrics(
    db: SqlStore, db_path: Path, tmp_path: Path, webhook_srv: EmulatorServer
) -> None:
    """The server's in-process worker delivers; redeliver, job status and metrics over HTTP."""
    data, env = demo_environment(webhook_srv.base_url, webhook_srv.settings)
    config = tmp_path / "connectors.json"
    config.write_text(json.dumps(data), encoding="utf-8")
    settings = ApiSettings(
        config_path=str(config),
        store_url=str(db_path),
        environ=env,
        tokens=token_set(),
        retry_base_delay=0.01,
        worker=True,
    )
    plain = db.append_delivery({"event_id": "x", "deliveries": []}, metadata_kind="integration-delivery")
    async with running(create_app(settings)) as client:
        op = bearer("operator")
        first = await submit(db, [new_job(1)], timeout=10, signals=Signals())  # the in-process worker runs it
        assert first.done and first.jobs[0].state == SUCCEEDED
        original = first.jobs[0].delivery_id
        r = await client.post(f"/deliveries/{original}/redeliver", headers={**op, "Idempotency-Key": "k-1"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True and body["job"]["replay_of"] == original
        assert body["delivery_id"] == body["id"]
        same = await client.post(
            f"/deliveries/{original}/redeliver", headers={**op, "Idempotency-Key": "k-1"}
        )
        assert same.status_code == 200 and same.json()["id"] == body["id"]  # not delivered twice
        later = await client.post(f"/deliveries/{original}/redeliver", headers=op, json={"wait": False})
        assert later.status_code == 202 and later.headers["location"] == later.json()["status_url"]
        replay_id = later.json()["job_id"]
        await until(lambda: job(db, replay_id).final)
        status = await client.get(later.json()["status_url"], headers=bearer("auditor"))
        assert status.status_code == 200 and status.json()["replay_of"] == original
        assert status.json()["state"] == SUCCEEDED
        assert (await client.post(f"/deliveries/{plain.id}/redeliver", headers=op)).status_code == 409
        assert (await client.post("/deliveries/dlv_nope/redeliver", headers=op)).status_code == 404
        denied = await client.post(f"/deliveries/{original}/redeliver", headers=bearer("auditor"))
        assert denied.status_code == 403
        listing = await client.get("/jobs", params={"state": "succeeded"}, headers=bearer("auditor"))
        assert listing.status_code == 200 and listing.json()["queue"]["succeeded"] == 3
        metrics = await client.get("/metrics", headers=bearer("auditor"))
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert (
            'cavra_queue_jobs{state="succeeded"} 3.0' in metrics.text and "cavra_store_up 1.0" in metrics.text
        )
        assert 'cavra_deliveries_total{outcome="delivered",provider="webhook"}' in metrics.text
        assert (await client.get("/metrics")).status_code == 401
    # one event, three jobs (the original and two replays): the receiver deduplicates on webhook-id
    assert receiver_state(webhook_srv.hub).unique == 1 and receiver_state(webhook_srv.hub).duplicates == 2


def test_a_job_still_running_is_not_replayed(db: SqlStore) -> None:
    from cavra.delivery.replay import replay_job

    (j,) = [e.job for e in db.enqueue_jobs([new_job(1)])]
    with pytest.raises(ConflictError, match="still queued"):
        replay_job(j, "dlv_x")
    assert j.state == QUEUED
