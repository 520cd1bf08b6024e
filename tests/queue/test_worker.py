"""The worker against the webhook emulator on loopback: delivery, long retries, dead letters, stop, guard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cavra.config import LoadedConfig
from cavra.delivery.guard import GuardSettings, RateLimit
from cavra.delivery.health import queue_alerts
from cavra.delivery.queue import Schedule, Signals, submit
from cavra.delivery.runtime import DeliveryRuntime
from cavra.delivery.worker import Worker
from cavra.emulators.framework import Fault, ReceivedRequest
from cavra.emulators.server import EmulatorServer
from cavra.emulators.webhook import receiver_state
from cavra.history import dashboard
from cavra.metrics import DeliveryMetrics
from cavra.store import Store, open_store
from cavra.store.jobs import DEAD, FAILED, QUEUED, SUCCEEDED, Job, JobFilter
from cavra.store.sql import SqlStore

from .conftest import emulator_config, new_job

FAST = Schedule(base_delay=0.05, factor=1.0, max_delay=0.05, max_runs=3, jitter=0.0)


@pytest.fixture
def db(tmp_path: Path) -> SqlStore:
    s = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
    assert isinstance(s, SqlStore)
    return s


@asynccontextmanager
async def running(store: Store, config: LoadedConfig | None, **kw: Any) -> AsyncIterator[Worker]:
    kw.setdefault("poll_interval", 0.02)
    kw.setdefault("retry_base_delay", 0.01)
    kw.setdefault("schedule", FAST)
    w = Worker(store, config, **kw)
    await w.start()
    try:
        yield w
    finally:
        await w.close()


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def records_of(store: Store, job_id: str) -> list[dict[str, Any]]:
    return [
        e.document
        for e in store.chain().entries
        if e.document is not None and (e.document.get("job") or {}).get("job_id") == job_id
    ]


def job(store: Store, job_id: str) -> Job:
    found = store.get_job(job_id)
    assert found is not None
    return found


async def test_worker_delivers_and_a_repeated_request_returns_the_first_job(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    signals = Signals()
    async with running(
        db, emulator_config(webhook_srv), runtime=DeliveryRuntime(signals=signals), concurrency=3
    ):
        sub = await submit(db, [new_job(i) for i in range(5)], timeout=20, signals=signals)
        assert sub.done and all(sub.created)
        again = await submit(db, [new_job(2)], timeout=5, signals=signals)
    assert again.created == [False] and again.jobs[0].id == sub.jobs[2].id
    assert again.documents[0] == sub.documents[2]
    state = receiver_state(webhook_srv.hub)
    assert state.unique == 5 and state.duplicates == 0
    for j, doc in zip(sub.jobs, sub.documents, strict=True):
        assert doc is not None and doc["success"] is True and doc["delivery_id"] == j.delivery_id
        assert doc["job"]["final"] is True and doc["job"]["state"] == SUCCEEDED
        assert doc["metadata_kind"] == "integration-delivery"
    assert db.verify_chain().ok


async def test_a_failing_job_is_rescheduled_then_becomes_a_dead_letter(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    webhook_srv.hub.add_fault("webhook", Fault(status=503, count=100))
    signals = Signals()
    async with running(db, emulator_config(webhook_srv), runtime=DeliveryRuntime(signals=signals)):
        sub = await submit(db, [new_job(1)], timeout=10, signals=signals)
        first = sub.documents[0]
        assert first is not None and first["success"] is False and first["job"]["state"] == QUEUED
        assert first["job"]["next_run_at"] is not None and first["job"]["final"] is False
        await until(lambda: job(db, sub.jobs[0].id).final)
    dead = job(db, sub.jobs[0].id)
    assert dead.state == DEAD and dead.attempts == 3
    assert dead.last_error is not None and dead.last_error.startswith(
        "dead letter after 3 attempt runs (max 3)"
    )
    assert "503" in dead.last_error
    runs = records_of(db, dead.id)
    assert [r["job"]["run"] for r in runs] == [1, 2, 3]
    assert [r["job"]["final"] for r in runs] == [False, False, True]
    assert runs[-1]["job"]["state"] == DEAD and dead.delivery_id == runs[-1]["id"]


async def test_a_rejected_delivery_fails_at_once(db: SqlStore, webhook_srv: EmulatorServer) -> None:
    webhook_srv.hub.add_fault("webhook", Fault(status=400, count=5, body='{"error": "bad"}'))
    signals = Signals()
    async with running(db, emulator_config(webhook_srv), runtime=DeliveryRuntime(signals=signals)):
        sub = await submit(db, [new_job(1, retries=2)], timeout=10, signals=signals)
    failed = sub.jobs[0]
    assert failed.state == FAILED and failed.attempts == 1 and "400" in (failed.last_error or "")
    assert len(webhook_srv.hub.received("webhook")) == 1 and len(records_of(db, failed.id)) == 1


async def test_an_unconfigured_provider_waits_for_the_config(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    signals = Signals()
    async with running(db, emulator_config(webhook_srv), runtime=DeliveryRuntime(signals=signals)):
        sub = await submit(db, [new_job(1, provider="splunk")], timeout=10, signals=signals)
    j = sub.jobs[0]
    assert j.state == QUEUED and "provider 'splunk' is not configured" in (j.last_error or "")
    doc = sub.documents[0]
    assert doc is not None and doc["errors"][0]["provider"] == "splunk" and doc["deliveries"] == []


async def test_retry_after_sets_the_next_run_and_pauses_the_provider(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    webhook_srv.hub.add_fault("webhook", Fault(status=429, headers={"Retry-After": "3"}, count=1))
    signals = Signals()
    schedule = Schedule(base_delay=0.05, factor=1.0, max_delay=0.05, max_runs=5, jitter=0.0)
    async with running(
        db, emulator_config(webhook_srv), runtime=DeliveryRuntime(signals=signals), schedule=schedule
    ):
        t0 = datetime.now(UTC)
        sub = await submit(db, [new_job(1)], timeout=10, signals=signals)
        j = sub.jobs[0]
        assert j.state == QUEUED and j.run_after >= t0 + timedelta(seconds=2.9)
        (dest,) = db.list_destinations()
        assert dest.paused_until is not None and dest.paused_until >= t0 + timedelta(seconds=2.9)
        assert dest.breaker_state == "closed" and dest.consecutive_failures == 0  # a 429 is not an outage
        codes = {a["code"] for a in queue_alerts(db)}
        assert "provider_rate_limited" in codes


async def test_graceful_stop_gives_unfinished_jobs_back(db: SqlStore, webhook_srv: EmulatorServer) -> None:
    webhook_srv.hub.add_fault("webhook", Fault(delay=1.5, count=2))
    ids = [e.job.id for e in db.enqueue_jobs([new_job(1), new_job(2)])]
    w = Worker(db, emulator_config(webhook_srv), concurrency=2, poll_interval=0.02, shutdown_timeout=0.2)
    task = asyncio.create_task(w.run())
    await until(lambda: len(webhook_srv.hub.received("webhook")) == 2)
    w.stop()
    stats = await asyncio.wait_for(task, timeout=5)
    assert stats.released == 2
    for jid in ids:
        j = job(db, jid)
        assert j.state == QUEUED and j.lease_owner is None and j.delivery_id is None


async def test_breaker_opens_holds_jobs_probes_and_closes(db: SqlStore, webhook_srv: EmulatorServer) -> None:
    webhook_srv.hub.add_fault("webhook", Fault(status=503, count=2))
    guard = GuardSettings(failure_threshold=2, cooldown=1.0)
    schedule = Schedule(base_delay=0.05, factor=1.0, max_delay=0.05, max_runs=10, jitter=0.0)
    ids = [e.job.id for e in db.enqueue_jobs([new_job(i) for i in range(4)])]
    async with running(db, emulator_config(webhook_srv), guard=guard, schedule=schedule, concurrency=1):
        await until(lambda: any(d.breaker_state == "open" for d in db.list_destinations()))
        alerts = queue_alerts(db)
        assert [a["provider"] for a in alerts if a["code"] == "delivery_paused"] == ["webhook"]
        await asyncio.sleep(0.5)  # open: nothing is sent, the other jobs wait without using a run
        assert len(webhook_srv.hub.received("webhook")) == 2
        assert [job(db, i).attempts for i in ids[2:]] == [0, 0]
        await until(lambda: all(job(db, i).state == SUCCEEDED for i in ids), timeout=15)
    (dest,) = db.list_destinations()
    assert dest.breaker_state == "closed" and dest.consecutive_failures == 0
    assert not [a for a in queue_alerts(db) if a["code"] == "delivery_paused"]
    assert receiver_state(webhook_srv.hub).unique == 4


async def test_a_429_storm_slows_deliveries_but_drops_none(db: SqlStore, webhook_srv: EmulatorServer) -> None:
    webhook_srv.hub.add_fault("webhook", Fault(status=429, headers={"Retry-After": "1"}, count=12))
    schedule = Schedule(base_delay=0.05, factor=1.0, max_delay=0.05, max_runs=30, jitter=0.0)
    ids = [e.job.id for e in db.enqueue_jobs([new_job(i, retries=1) for i in range(20)])]
    t0 = time.monotonic()
    async with running(db, emulator_config(webhook_srv), schedule=schedule, concurrency=4):
        await until(lambda: all(job(db, i).final for i in ids), timeout=30)
    assert time.monotonic() - t0 >= 1.0  # slowed by Retry-After ...
    assert {job(db, i).state for i in ids} == {SUCCEEDED}  # ... but nothing dropped
    assert receiver_state(webhook_srv.hub).unique == 20


def assert_paced(received: Sequence[ReceivedRequest], started: float, *, rate: float, count: int) -> None:
    """A limit of ``rate``/s with a burst of 1, from ``started`` (wall clock, before any worker ran): the
    k-th request (0-based) can only arrive once ``k`` slots have passed, so at most ``k`` requests arrive
    within ``k / rate`` seconds of the start. A slow machine only delays arrivals, so this holds however
    loaded it is (unlike a bound on the gap between the first and the last arrival, which shrinks when the
    first arrival is held up). 20 ms of tolerance for the two clocks' readings."""
    times = sorted(r.at for r in received)
    assert len(times) == count
    early = [(k, round(t - started, 3)) for k, t in enumerate(times) if t < started + k / rate - 0.02]
    assert not early, f"requests (index, seconds after the start) sooner than {rate:g}/s allows: {early}"


async def test_rate_limit_is_shared_through_the_store(db: SqlStore, webhook_srv: EmulatorServer) -> None:
    guard = GuardSettings(rate_limits={"webhook": RateLimit(rate=10, burst=1)})
    ids = [e.job.id for e in db.enqueue_jobs([new_job(i) for i in range(6)])]
    config = emulator_config(webhook_srv)
    started = time.time()
    async with (
        running(db, config, guard=guard, concurrency=3),
        running(db, config, guard=guard, concurrency=3),
    ):
        await until(lambda: all(job(db, i).state == SUCCEEDED for i in ids), timeout=60)
    assert_paced(webhook_srv.hub.received("webhook"), started, rate=10, count=6)


async def test_a_connector_rate_limit_paces_the_workers(db: SqlStore, webhook_srv: EmulatorServer) -> None:
    from cavra.config import config_from_data
    from cavra.emulators.server import demo_environment

    data, env = demo_environment(webhook_srv.base_url, webhook_srv.settings)
    hook = {**data["connectors"]["webhook"], "rate_limit": "10/1"}
    config = config_from_data({"connectors": {"webhook": hook}}, "emulators", env)
    ids = [e.job.id for e in db.enqueue_jobs([new_job(i) for i in range(6)])]
    started = time.time()
    async with running(db, config, concurrency=6):
        await until(lambda: all(job(db, i).state == SUCCEEDED for i in ids), timeout=60)
    assert_paced(webhook_srv.hub.received("webhook"), started, rate=10, count=6)


async def test_slack_is_paced_by_default_so_the_hook_never_answers_429(db: SqlStore) -> None:
    """Slack takes about 1 message per second per hook (its emulator: 1/s, burst 5): with no setting at all,
    the workers send within that, and none of eight messages is refused."""
    ids = [e.job.id for e in db.enqueue_jobs([new_job(i, provider="slack") for i in range(8)])]
    async with EmulatorServer(providers=["slack"]) as srv:
        async with running(db, emulator_config(srv, ["slack"]), concurrency=8):
            await until(lambda: all(job(db, i).final for i in ids), timeout=40)
        statuses = [r.status for r in srv.hub.received("slack")]
    assert {job(db, i).state for i in ids} == {SUCCEEDED}
    assert statuses == [200] * 8  # no 429, no retry


async def test_metrics_count_runs_and_read_the_queue(db: SqlStore, webhook_srv: EmulatorServer) -> None:
    metrics = DeliveryMetrics()
    metrics.bind_store(db)
    webhook_srv.hub.add_fault("webhook", Fault(status=503, count=1))
    signals = Signals()
    slow = Schedule(base_delay=600)  # the failed run is not retried during the test
    worker = running(
        db,
        emulator_config(webhook_srv),
        runtime=DeliveryRuntime(signals=signals),
        observer=metrics,
        schedule=slow,
    )
    async with worker:
        await submit(db, [new_job(i) for i in range(3)], timeout=10, signals=signals)
    db.enqueue_jobs([new_job("later", run_after=datetime.now(UTC) - timedelta(seconds=90))])
    text = metrics.render()[0].decode()
    assert 'cavra_deliveries_total{outcome="delivered",provider="webhook"} 2.0' in text
    assert 'cavra_deliveries_total{outcome="rescheduled",provider="webhook"} 1.0' in text
    assert 'cavra_delivery_attempts_total{provider="webhook"} 3.0' in text
    assert 'cavra_delivery_duration_seconds_count{provider="webhook"} 3.0' in text
    assert 'cavra_queue_jobs{state="queued"} 2.0' in text and "cavra_store_up 1.0" in text
    age = next(line for line in text.splitlines() if line.startswith("cavra_queue_oldest_due_age_seconds"))
    assert float(age.split()[1]) >= 89
    assert 'cavra_breaker_state{provider="webhook"} 0.0' in text


def test_backlog_alert_when_the_oldest_due_job_waits_too_long(db: SqlStore) -> None:
    db.enqueue_jobs([new_job(1)])
    assert queue_alerts(db) == []
    (alert,) = queue_alerts(db, now=datetime.now(UTC) + timedelta(minutes=6))
    assert alert["code"] == "queue_backlog" and alert["level"] == "warning" and alert["count"] == 1
    (alert,) = queue_alerts(db, now=datetime.now(UTC) + timedelta(minutes=30))
    assert alert["level"] == "critical"
    board = dashboard(db, metadata_kinds=None, now=datetime.now(UTC) + timedelta(minutes=6))
    assert board["status"] == "warning" and [a["code"] for a in board["alerts"]] == ["queue_backlog"]
    assert len(db.list_jobs(JobFilter(states=(QUEUED,)))) == 1


async def test_a_job_run_again_tells_the_engine_when_its_first_run_began(
    db: SqlStore, webhook_srv: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connector that creates something (AWX launch) looks for it first on any run but the first."""
    import cavra.delivery.jobrun as worker_module  # where a worker calls the engine

    seen: list[float | None] = []
    real = worker_module.deliver_one

    async def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("resumed_since"))
        return await real(*args, **kwargs)

    monkeypatch.setattr(worker_module, "deliver_one", spy)
    db.enqueue_jobs([new_job(1)])
    (second,) = db.enqueue_jobs([new_job(2)])
    db.claim_jobs("gone", limit=1, lease_seconds=30, job_ids=[second.job.id])  # an earlier run...
    db.release_jobs("gone", [second.job.id])  # ...that ended without a record (its worker stopped)
    await Worker(db, emulator_config(webhook_srv), poll_interval=0.02).run(once=True)
    runs = {j.event["event_id"]: j for j in db.list_jobs(JobFilter())}
    assert runs["evt-1"].attempts == 1 and runs["evt-2"].attempts == 2
    assert sorted(seen, key=lambda s: s is not None) == [None, second.job.created_at.timestamp()]


def test_when_a_run_continues_a_delivery_and_when_it_starts_a_new_one(db: SqlStore) -> None:
    """resumed_since: the runs since the last run that ended the job are one delivery; a re-armed job's
    next run is a new one (an earlier delivery's AWX job must not be adopted again)."""
    from cavra.delivery.worker import resumed_since
    from cavra.store.jobs import JobOutcome

    from ..store.conftest import make_record

    def claim(job_id: str) -> Job:
        (job,) = db.claim_jobs("w", limit=1, lease_seconds=30, job_ids=[job_id])
        return job

    def finish(job: Job, outcome: JobOutcome) -> None:
        db.complete_job(job.id, "w", make_record("webhook", success=False), outcome)

    # no record: the first run died unrecorded; the delivery began when the job was made
    (e,) = db.enqueue_jobs([new_job(1)])
    claim(e.job.id)
    db.release_jobs("w", [e.job.id])
    again = claim(e.job.id)
    assert again.attempts == 2 and resumed_since(db, again) == e.job.created_at.timestamp()

    # rescheduled after a failed run: the delivery goes on, since that run began
    (e,) = db.enqueue_jobs([new_job(2)])
    finish(claim(e.job.id), JobOutcome(QUEUED, "HTTP 503", datetime.now(UTC)))
    again = claim(e.job.id)
    started = datetime(2025, 1, 1, tzinfo=UTC).timestamp()  # make_record's delivery started_at
    assert resumed_since(db, again) == started

    # failed (final), then re-armed by a repeated request: its next run is a new delivery
    (e,) = db.enqueue_jobs([new_job(3)])
    finish(claim(e.job.id), JobOutcome(FAILED, "AWX job 12 failed"))
    (rearmed,) = db.enqueue_jobs([new_job(3)])
    assert rearmed.rearmed
    next_run = claim(e.job.id)
    assert next_run.attempts == 2 and resumed_since(db, next_run) is None
    # ...and if that run dies unrecorded, the one after looks back to when the new delivery began
    db.release_jobs("w", [e.job.id])
    after = claim(e.job.id)
    final = db.get_delivery(after.delivery_id or "")
    assert final is not None and after.attempts == 3
    assert (
        resumed_since(db, after)
        == datetime.fromisoformat(final["created_at"].replace("Z", "+00:00")).timestamp()
    )
