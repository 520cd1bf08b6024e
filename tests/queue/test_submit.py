"""deliver_jobs: what faces call: enqueue, run the first attempt run now, answer the record or 202."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cavra.delivery.runtime import DeliveryRuntime
from cavra.delivery.submit import combined_record, deliver_jobs
from cavra.delivery.worker import Worker
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.emulators.webhook import receiver_state
from cavra.store import open_store
from cavra.store.jobs import FAILED, OPEN, QUEUED, SUCCEEDED, Destination, JobFilter, RecordPut
from cavra.store.sql import SqlStore

from .conftest import emulator_config, event, new_job
from .test_worker import job, until


@pytest.fixture
def db(tmp_path: Path) -> SqlStore:
    s = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
    assert isinstance(s, SqlStore)
    return s


async def test_runs_now_without_a_worker_and_a_repeat_delivers_nothing(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    config = emulator_config(webhook_srv)
    put = RecordPut("integration", "hook", {"integration_id": "hook", "provider": "webhook"})
    sub = await deliver_jobs(
        db, config, [new_job(1)], records=[put], retry_base_delay=0.01, runtime=DeliveryRuntime()
    )
    assert sub.done and sub.created == [True] and sub.jobs[0].state == SUCCEEDED
    doc = sub.documents[0]
    assert doc is not None and doc["success"] is True and doc["job"]["final"] is True
    assert db.get_record("integration", "hook") == put.body  # written with the job
    again = await deliver_jobs(db, config, [new_job(1)], runtime=DeliveryRuntime())
    assert again.created == [False] and again.documents == sub.documents
    assert len(webhook_srv.hub.received("webhook")) == 1


async def test_no_wait_answers_at_once_and_a_worker_delivers(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    config = emulator_config(webhook_srv)
    sub = await deliver_jobs(db, config, [new_job(1)], wait=False, runtime=DeliveryRuntime())
    assert not sub.done and sub.jobs[0].state == QUEUED and webhook_srv.hub.received("webhook") == []
    answer = sub.accepted()
    assert answer["status"] == "accepted" and answer["status_url"] == f"/jobs/{sub.jobs[0].id}"
    await Worker(db, config, poll_interval=0.02).run(once=True)
    assert job(db, sub.jobs[0].id).state == SUCCEEDED


async def test_past_the_deadline_it_answers_202_and_the_delivery_finishes(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    webhook_srv.hub.add_fault("webhook", Fault(delay=1.0, count=1))
    t0 = time.monotonic()
    sub = await deliver_jobs(
        db, emulator_config(webhook_srv), [new_job(1)], timeout=0.3, runtime=DeliveryRuntime()
    )
    assert time.monotonic() - t0 < 0.9 and not sub.done
    await until(lambda: job(db, sub.jobs[0].id).state == SUCCEEDED, timeout=10)
    assert receiver_state(webhook_srv.hub).unique == 1


async def test_an_open_breaker_answers_at_once_without_sending(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    def trip(dest: Destination, now: datetime) -> None:
        dest.breaker_state, dest.probe_at = OPEN, now + timedelta(minutes=5)

    db.update_destination("webhook", trip)
    t0 = time.monotonic()
    sub = await deliver_jobs(
        db, emulator_config(webhook_srv), [new_job(1)], timeout=10, runtime=DeliveryRuntime()
    )
    assert time.monotonic() - t0 < 3 and not sub.done  # no 10 s wait for a job that waits minutes
    j = sub.jobs[0]
    assert j.state == QUEUED and j.attempts == 0 and webhook_srv.hub.received("webhook") == []
    (dest,) = db.list_destinations()
    assert dest.breaker_state == OPEN and dest.probe_owner is None  # no probe was spent on it


async def test_several_providers_are_several_jobs_with_one_combined_answer(db: SqlStore) -> None:
    async with EmulatorServer(providers=["webhook", "slack"]) as srv:
        config = emulator_config(srv)
        jobs = [new_job(1, provider=p) for p in ("webhook", "slack")]
        sub = await deliver_jobs(db, config, jobs, retry_base_delay=0.01, runtime=DeliveryRuntime())
    assert sub.done and len({d["id"] for d in sub.documents if d}) == 2
    combined = combined_record(sub)
    assert combined["success"] is True and combined["delivered_count"] == 2 and combined["failed_count"] == 0
    assert [d["provider"] for d in combined["deliveries"]] == ["webhook", "slack"]
    assert combined["delivery_ids"] == [d["id"] for d in sub.documents if d]
    assert combined["event_id"] == event(1)["event_id"]


async def test_new_jobs_are_claimed_by_their_enqueue_and_a_paused_provider_is_not(
    db: SqlStore, webhook_srv: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inline run takes the jobs its enqueue wrote claimed: no claim transaction, one attempt."""
    claims: list[object] = []
    real = db.claim_jobs

    def spy(*args: object, **kwargs: object) -> object:
        claims.append(kwargs.get("job_ids"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(db, "claim_jobs", spy)
    config = emulator_config(webhook_srv)
    sub = await deliver_jobs(
        db, config, [new_job(1), new_job(2)], retry_base_delay=0.01, runtime=DeliveryRuntime()
    )
    assert sub.done and [j.state for j in sub.jobs] == [SUCCEEDED, SUCCEEDED]
    assert [j.attempts for j in sub.jobs] == [1, 1] and claims == []
    assert len(webhook_srv.hub.received("webhook")) == 2

    def pause(dest: Destination, now: datetime) -> None:
        dest.breaker_state, dest.probe_at = OPEN, now + timedelta(minutes=5)

    db.update_destination("webhook", pause)
    runtime = DeliveryRuntime()
    runtime.guard(db)._read_at = 0.0  # the inline guard's snapshot is kept a second; read the breaker now
    sub = await deliver_jobs(db, config, [new_job(3)], timeout=5, runtime=runtime)
    assert not sub.done and sub.jobs[0].state == QUEUED and sub.jobs[0].lease_owner is None
    assert len(webhook_srv.hub.received("webhook")) == 2


async def test_inline_runs_share_access_tokens(db: SqlStore) -> None:
    """Two API requests to Sentinel: one Entra token, not one per request."""
    async with EmulatorServer(providers=["entra", "sentinel"]) as srv:
        config = emulator_config(srv, ["sentinel"])
        runtime = DeliveryRuntime()  # the server's: its requests share it
        for n in (1, 2):
            sub = await deliver_jobs(db, config, [new_job(n, provider="sentinel")], runtime=runtime)
            doc = sub.documents[0]
            assert sub.done and doc is not None and doc["success"] is True, doc
        assert len(srv.hub.received("sentinel")) == 2
        assert len(srv.hub.received("entra")) == 1


async def test_a_worker_notes_the_integration_in_the_completion(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    """A job queued with ``wait: false`` and run by a worker: the integration's ``last_delivery`` is
    written in the same transaction as the record (no face is waiting to note it)."""
    from cavra.governance import service as gov

    gov.upsert_integration(db, {"integration_id": "hooks", "provider": "webhook", "status": "active"})
    config = emulator_config(webhook_srv)
    answer = await gov.deliver_integration(db, config, "hooks", event(7), retries=0, wait=False)
    assert gov.is_accepted(answer)
    assert db.get_record("integration", "hooks").get("last_delivery") is None  # type: ignore[union-attr]
    await Worker(db, config, runtime=gov.delivery_runtime(), poll_interval=0.02).run(once=True)
    (job,) = db.list_jobs(JobFilter())
    last = db.get_record("integration", "hooks")["last_delivery"]  # type: ignore[index]
    assert job.state == SUCCEEDED and last["delivery_id"] == job.delivery_id and last["success"] is True


async def test_a_job_naming_a_note_its_worker_does_not_know_fails_naming_it_unsent(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    """A worker made without the service's delivery runtime knows no completion note: a job that names
    one is not sent (its note could not be written) but fails at once, its reason naming the note; a
    worker with the service's runtime runs its replay."""
    from cavra.delivery import replay
    from cavra.governance import service as gov

    gov.upsert_integration(db, {"integration_id": "hooks", "provider": "webhook", "status": "active"})
    config = emulator_config(webhook_srv)
    answer = await gov.deliver_integration(db, config, "hooks", event(8), retries=0, wait=False)
    assert gov.is_accepted(answer)
    stats = await Worker(db, config, poll_interval=0.02).run(once=True)  # a runtime of its own: no notes
    (job,) = db.list_jobs(JobFilter())
    assert job.state == FAILED and stats.failed == 1 and stats.succeeded == 0
    assert job.last_error is not None and "completion note 'integration'" in job.last_error
    assert "known notes: none" in job.last_error and "delivery_runtime()" in job.last_error
    assert webhook_srv.hub.received("webhook") == []  # not sent
    assert db.get_record("integration", "hooks").get("last_delivery") is None  # type: ignore[union-attr]
    doc = db.get_delivery(str(job.delivery_id))
    assert doc is not None and doc["success"] is False
    assert "completion note 'integration'" in doc["errors"][0]["error"]
    # the service's runtime knows the note: the replay is delivered and noted
    sub = await replay.redeliver(db, str(job.delivery_id), runtime=gov.delivery_runtime(), config=config)
    assert sub.done and sub.jobs[0].state == SUCCEEDED
    last = db.get_record("integration", "hooks")["last_delivery"]  # type: ignore[index]
    assert last["delivery_id"] == sub.jobs[0].delivery_id and len(webhook_srv.hub.received("webhook")) == 1


def test_the_service_runtime_registers_its_notes_explicitly() -> None:
    from cavra.delivery.notes import NoteRegistry
    from cavra.governance.notes import INTEGRATION_HOOK, PUBLICATION_HOOK, delivery_runtime

    assert list(delivery_runtime().notes) == sorted([INTEGRATION_HOOK, PUBLICATION_HOOK])
    assert list(DeliveryRuntime().notes) == []  # nothing registers itself on import
    notes = NoteRegistry()
    notes.register("a", print)
    notes.register("a", print)  # the same note again: harmless
    with pytest.raises(ValueError, match="'a' is registered already"):
        notes.register("a", repr)  # type: ignore[arg-type]


async def test_a_conflicting_request_leaves_no_job_leased_to_nobody(
    db: SqlStore, webhook_srv: EmulatorServer
) -> None:
    """One of a request's keys conflicts (409): the request's other job, written claimed, is given back to
    the queue at once (not left running until its lease expires)."""
    from cavra.errors import ConflictError

    config = emulator_config(webhook_srv)
    await deliver_jobs(db, config, [new_job(1, key="K")], runtime=DeliveryRuntime())
    with pytest.raises(ConflictError):
        await deliver_jobs(
            db,
            config,
            [new_job(2, key="K"), new_job(2, key="K", provider="slack")],
            runtime=DeliveryRuntime(),
        )
    await until(lambda: all(j.state != "running" for j in db.list_jobs(JobFilter())), timeout=5)
    (other,) = [j for j in db.list_jobs(JobFilter()) if j.provider == "slack"]
    assert other.state == QUEUED and other.lease_owner is None and other.attempts == 0
