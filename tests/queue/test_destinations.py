"""Two destinations of one provider share nothing but the code: breaker, pause, rate-limit bucket and
records are the destination's own. Workers against the webhook emulator on loopback, a real SQLite file."""

from __future__ import annotations

import socket
from pathlib import Path

from cavra.config import LoadedConfig, config_from_data
from cavra.delivery.guard import GuardSettings
from cavra.delivery.queue import Schedule, delivery_job
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.emulators.webhook import receiver_state
from cavra.history import dashboard, query_history
from cavra.store import open_store
from cavra.store.jobs import SUCCEEDED
from cavra.store.sql import SqlStore

from .conftest import KIND, event
from .test_worker import job, running, until


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused: a retryable failure)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def two_webhooks(srv: EmulatorServer) -> LoadedConfig:
    data, env = demo_environment(srv.base_url, srv.settings)
    webhook = data["connectors"]["webhook"]
    env["WEBHOOK_DOWN_URL"] = f"http://127.0.0.1:{closed_port()}/webhook/down"
    connectors = {
        "webhook": webhook,
        "webhook-down": {**webhook, "provider": "webhook", "url_env": "WEBHOOK_DOWN_URL"},
    }
    return config_from_data({"connectors": connectors}, "connectors.json", env)


def new_job(n: int, destination: str) -> object:
    return delivery_job(event(n), destination, kind=KIND, retries=0, provider_type="webhook")


async def test_a_broken_destination_opens_its_own_breaker_and_the_other_still_delivers(
    tmp_path: Path, webhook_srv: EmulatorServer
) -> None:
    db = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
    assert isinstance(db, SqlStore)
    config = two_webhooks(webhook_srv)
    guard = GuardSettings(failure_threshold=2, cooldown=600)
    schedule = Schedule(base_delay=0.05, factor=1.0, max_delay=0.05, max_runs=20, jitter=0.0)
    down = [e.job.id for e in db.enqueue_jobs([new_job(i, "webhook-down") for i in range(3)])]
    async with running(db, config, guard=guard, schedule=schedule, concurrency=1):
        await until(lambda: any(d.breaker_state == "open" for d in db.list_destinations()))
        # the breaker of webhook-down is open: now jobs for the other webhook destination go out
        up = [e.job.id for e in db.enqueue_jobs([new_job(i, "webhook") for i in range(10, 14)])]
        await until(lambda: all(job(db, i).state == SUCCEEDED for i in up))
    states = {d.provider: d.breaker_state for d in db.list_destinations()}
    assert states.get("webhook-down") == "open" and states.get("webhook", "closed") == "closed"
    assert all(job(db, i).state != SUCCEEDED for i in down)
    assert receiver_state(webhook_srv.hub).unique == 4
    public = job(db, up[0]).to_dict()
    assert (public["provider"], public["destination"]) == ("webhook", "webhook")
    assert (job(db, down[0]).to_dict()["provider"], job(db, down[0]).to_dict()["destination"]) == (
        "webhook",
        "webhook-down",
    )
    # the records say where each delivery went; history filters and the dashboard groups by destination
    page = query_history(db, metadata_kinds=[KIND], destination="webhook-down")
    assert page.total >= 2 and {i["provider"] for i in page.items} == {"webhook"}
    board = dashboard(db, metadata_kinds=[KIND])
    by_name = {d["destination"]: d for d in board["destinations"]}
    assert by_name["webhook"]["succeeded"] == 4 and by_name["webhook-down"]["succeeded"] == 0
    paused = [a for a in board["alerts"] if a["code"] == "delivery_paused"]
    assert [a["provider"] for a in paused] == ["webhook-down"]
    db.close()


async def test_a_job_for_a_disabled_destination_is_not_sent(
    tmp_path: Path, webhook_srv: EmulatorServer
) -> None:
    db = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
    data, env = demo_environment(webhook_srv.base_url, webhook_srv.settings)
    hook = data["connectors"]["webhook"]
    connectors = {"webhook": hook, "webhook-off": {**hook, "provider": "webhook", "enabled": False}}
    config = config_from_data({"connectors": connectors}, "connectors.json", env)
    (queued,) = db.enqueue_jobs([new_job(1, "webhook-off")])
    async with running(db, config, concurrency=1):
        await until(
            lambda: job(db, queued.job.id).attempts >= 1 and job(db, queued.job.id).state != "running"
        )
    found = job(db, queued.job.id)
    assert found.state != SUCCEEDED and "destination 'webhook-off' is disabled" in str(found.last_error)
    assert webhook_srv.hub.received("webhook") == []
    (item,) = query_history(db, metadata_kinds=[KIND]).items
    assert (item["provider"], item["destination"], item["success"]) == ("webhook", "webhook-off", False)
    db.close()


async def test_a_destination_retry_schedule_overrides_the_global_one(
    tmp_path: Path, webhook_srv: EmulatorServer
) -> None:
    db = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
    _data, env = demo_environment(webhook_srv.base_url, webhook_srv.settings)
    env["WEBHOOK_DOWN_URL"] = f"http://127.0.0.1:{closed_port()}/webhook/down"
    down = {"url_env": "WEBHOOK_DOWN_URL", "allow_http": True}
    connectors = {
        "webhook-down": {**down, "provider": "webhook", "retry": {"max_runs": 1}},
        "webhook-down-2": {**down, "provider": "webhook"},
    }
    config = config_from_data({"connectors": connectors}, "connectors.json", env)
    schedule = Schedule(base_delay=30, factor=1.0, max_delay=30, max_runs=10, jitter=0.0)
    (own,) = db.enqueue_jobs([new_job(1, "webhook-down")])
    (other,) = db.enqueue_jobs([new_job(2, "webhook-down-2")])
    async with running(db, config, schedule=schedule, concurrency=2):
        await until(lambda: job(db, own.job.id).final and job(db, other.job.id).attempts == 1)
        await until(lambda: job(db, other.job.id).state == "queued")
    dead = job(db, own.job.id)
    assert dead.state == "dead" and "dead letter after 1 attempt runs (max 1)" in str(dead.last_error)
    assert job(db, other.job.id).state == "queued"  # the global schedule: run again in 30 s
    db.close()
