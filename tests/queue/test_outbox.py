"""The outbox in the store, on SQLite, the JSON file and PostgreSQL: enqueue, claim, leases, completion."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from cavra.delivery.queue import check_reuse, delivery_job, idempotency_key
from cavra.errors import ConflictError, InputError
from cavra.store import Store
from cavra.store.jobs import (
    DEAD,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Destination,
    JobFilter,
    JobOutcome,
    RecordPut,
)

from ..store.conftest import Target
from .conftest import KIND, event, new_job


def _record(job_event: dict[str, object], ok: bool = True) -> dict[str, object]:
    from ..store.conftest import make_record

    rec = make_record("webhook", success=ok, event_id=str(job_event["event_id"]))
    return rec


def test_enqueue_is_idempotent_by_key(store: Store) -> None:
    first = store.enqueue_jobs([new_job(1), new_job(2)])
    assert [e.created for e in first] == [True, True]
    again = store.enqueue_jobs([new_job(1), new_job(1, provider="splunk")])
    assert again[0].created is False and again[0].job.id == first[0].job.id
    assert again[1].created is True  # another target is another job
    assert len(store.list_jobs(JobFilter())) == 3
    job = store.get_job(first[0].job.id)
    assert job is not None and job.state == QUEUED and job.attempts == 0
    assert job.event["event_id"] == "evt-1" and job.payload["options"]["retries"] == 0
    assert store.get_job_by_key(first[1].job.idempotency_key) == first[1].job


def test_enqueue_can_claim_the_jobs_it_creates(store: Store) -> None:
    from cavra.store.jobs import ClaimNew

    (old,) = store.enqueue_jobs([new_job(0)])
    later = new_job(3, run_after=datetime.now(UTC) + timedelta(hours=1))
    claim = ClaimNew("face-1", 30, exclude_providers=("slack",))
    before = datetime.now(UTC)
    out = store.enqueue_jobs([new_job(0), new_job(1), new_job(2, provider="slack"), later], claim=claim)
    made = [(e.created, e.claimed) for e in out]
    assert made == [(False, False), (True, True), (True, False), (True, False)]
    taken = out[1].job
    assert taken.state == RUNNING and taken.attempts == 1 and taken.lease_owner == "face-1"
    assert taken.lease_expires_at is not None
    lease = taken.lease_expires_at - before
    assert timedelta(seconds=29) < lease <= timedelta(seconds=31)
    assert store.get_job(taken.id) == taken  # the answer is what was written
    assert store.get_job(old.job.id) == old.job  # an existing job is left as it was
    assert out[2].job.state == QUEUED and out[3].job.state == QUEUED and out[3].job.attempts == 0
    # other workers take the rest, never the claimed job; its lease expires like any claim's
    got = store.claim_jobs("w", limit=10, lease_seconds=30)
    assert {j.id for j in got} == {old.job.id, out[2].job.id}
    expired = datetime.now(UTC) + timedelta(seconds=31)
    (again,) = store.claim_jobs("w", limit=10, lease_seconds=30, job_ids=[taken.id], now=expired)
    assert again.id == taken.id and again.lease_owner == "w" and again.attempts == 2


def test_caller_key_scopes_and_conflicts(store: Store) -> None:
    a = new_job(1, key="client-key-1")
    assert a.idempotency_key != new_job(1).idempotency_key
    assert a.idempotency_key == new_job(1, key="client-key-1").idempotency_key
    assert a.idempotency_key != new_job(1, key="client-key-1", integration_id="other").idempotency_key
    store.enqueue_jobs([a])
    reused = [new_job(2, key="client-key-1")]  # same key, another event: refused, not delivered
    with pytest.raises(ConflictError, match="already used for a different request"):
        check_reuse(reused, store.enqueue_jobs(reused))
    with pytest.raises(InputError, match="Idempotency-Key"):
        idempotency_key(KIND, "webhook", event(1), given=" ")


def _run(store: Store, n: int, outcome: JobOutcome, *, ok: bool = False, key: str | None = None) -> str:
    """Enqueue job ``n``, claim it and complete its run with ``outcome``; the record id."""
    (enq,) = store.enqueue_jobs([new_job(n, key=key)])
    (claimed,) = store.claim_jobs("w", limit=1, lease_seconds=30, job_ids=[enq.job.id])
    stored, _, held = store.complete_job(claimed.id, "w", _record(claimed.event, ok=ok), outcome)
    assert held
    return stored.id


def test_repeat_returns_a_job_as_is_unless_its_last_run_failed(store: Store) -> None:
    # queued and not yet run, running, succeeded: returned as they are (nothing is delivered twice)
    (queued,) = store.enqueue_jobs([new_job(1)])
    (again,) = store.enqueue_jobs([new_job(1)])
    assert (again.created, again.rearmed, again.job) == (False, False, queued.job)
    (running,) = store.claim_jobs("w", limit=1, lease_seconds=30, job_ids=[queued.job.id])
    (again,) = store.enqueue_jobs([new_job(1)])
    assert not again.rearmed and again.job.state == RUNNING and again.job.lease_owner == "w"
    store.complete_job(running.id, "w", _record(running.event), JobOutcome(SUCCEEDED))
    (again,) = store.enqueue_jobs([new_job(1)])
    assert not again.rearmed and again.job.state == SUCCEEDED and again.job.attempts == 1

    # failed, dead, or queued for a retry after a failed run: re-armed to run now, same id and history
    later = datetime.now(UTC) + timedelta(hours=1)
    outcomes = {
        2: JobOutcome(FAILED, "HTTP 400"),
        3: JobOutcome(DEAD, "gave up"),
        4: JobOutcome(QUEUED, "HTTP 503", later),
    }
    for n, outcome in outcomes.items():
        record_id = _run(store, n, outcome)
        before = store.get_job_by_key(new_job(n).idempotency_key)
        assert before is not None and before.state == outcome.state
        (enq,) = store.enqueue_jobs([new_job(n)])
        assert enq.rearmed and not enq.created and enq.job.id == before.id, n
        job = enq.job
        assert job.state == QUEUED and job.run_after <= datetime.now(UTC) and job.lease_owner is None
        assert job.attempts == 1 and job.delivery_id == record_id and job.last_error == outcome.error
        assert store.get_job(job.id) == job
        # it is due now: a worker runs it again, as a second attempt run
        (rerun,) = store.claim_jobs("w", limit=1, lease_seconds=30, job_ids=[job.id])
        assert rerun.attempts == 2
        stored, after, _ = store.complete_job(rerun.id, "w", _record(rerun.event), JobOutcome(SUCCEEDED))
        assert after.state == SUCCEEDED and after.delivery_id == stored.id != record_id
        (done,) = store.enqueue_jobs([new_job(n)])  # succeeded now: as it is
        assert not done.rearmed and done.job == after

    # another request under the same caller key is not re-armed (the caller answers 409)
    _run(store, 5, JobOutcome(FAILED, "HTTP 400"), key="k-5")
    other = [new_job(6, key="k-5")]
    (enq,) = store.enqueue_jobs(other)
    assert not enq.rearmed and enq.job.state == FAILED
    with pytest.raises(ConflictError):
        check_reuse(other, [enq])


def test_enqueue_writes_its_records_in_the_same_transaction(store: Store) -> None:
    put = RecordPut("integration", "splunk", {"integration_id": "splunk"})
    store.enqueue_jobs([new_job(1)], records=[put])
    assert store.get_record("integration", "splunk") == {"integration_id": "splunk"}
    bad = RecordPut("no-such-kind", "x", {})
    with pytest.raises(InputError):
        store.enqueue_jobs([new_job(2)], records=[bad])
    assert store.get_job_by_key(new_job(2).idempotency_key) is None


def test_claim_leases_due_jobs_oldest_first(store: Store) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    ids = [e.job.id for e in store.enqueue_jobs([new_job(i) for i in range(5)])]
    store.enqueue_jobs([new_job("later", run_after=later)])
    a = store.claim_jobs("worker-a", limit=3, lease_seconds=30)
    b = store.claim_jobs("worker-b", limit=10, lease_seconds=30)
    assert [j.id for j in a] == ids[:3] and [j.id for j in b] == ids[3:]
    assert all(j.state == RUNNING and j.attempts == 1 for j in a + b)
    assert {j.lease_owner for j in a} == {"worker-a"}
    assert store.claim_jobs("worker-c", limit=10, lease_seconds=30) == []  # the later job is not due
    assert store.claim_jobs("worker-c", limit=10, lease_seconds=30, exclude_providers=["webhook"]) == []
    stats = store.queue_stats()
    assert stats.count(RUNNING) == 5 and stats.count(QUEUED) == 1 and stats.due == 0


def test_expired_lease_returns_the_job_and_the_old_owner_cannot_finish_it(store: Store) -> None:
    (job,) = [e.job for e in store.enqueue_jobs([new_job(1)])]
    (_mine,) = store.claim_jobs("worker-a", limit=1, lease_seconds=30)
    assert store.claim_jobs("worker-b", limit=1, lease_seconds=30) == []
    future = datetime.now(UTC) + timedelta(seconds=31)
    assert store.queue_stats(now=future).expired_leases == 1
    (theirs,) = store.claim_jobs("worker-b", limit=1, lease_seconds=30, now=future)
    assert theirs.id == job.id and theirs.attempts == 2 and theirs.lease_owner == "worker-b"
    # worker-a wakes up and completes: its record is kept as evidence, but the job stays worker-b's
    stored, after, held = store.complete_job(job.id, "worker-a", _record(job.event), JobOutcome(SUCCEEDED))
    assert not held and after.state == RUNNING and after.lease_owner == "worker-b"
    assert stored.document["job"]["final"] is False and stored.document["job"]["lease_lost"] is True
    assert store.extend_leases("worker-a", [job.id], lease_seconds=30) == []
    assert store.extend_leases("worker-b", [job.id], lease_seconds=30) == [job.id]
    stored, after, held = store.complete_job(job.id, "worker-b", _record(job.event), JobOutcome(SUCCEEDED))
    assert held and after.state == SUCCEEDED and after.delivery_id == stored.id and after.lease_owner is None
    assert stored.document["job"] == {
        "job_id": job.id,
        "kind": KIND,
        "run": 2,
        "state": SUCCEEDED,
        "final": True,
        "next_run_at": None,
        "replay_of": None,
        "lease_lost": False,
    }
    assert store.verify_chain().ok


def test_reclaim_and_release(store: Store) -> None:
    ids = [e.job.id for e in store.enqueue_jobs([new_job(i) for i in range(3)])]
    store.claim_jobs("worker-a", limit=3, lease_seconds=30)
    assert store.reclaim_expired() == 0
    assert store.reclaim_expired(now=datetime.now(UTC) + timedelta(minutes=1)) == 3
    again = store.claim_jobs("worker-b", limit=3, lease_seconds=30)
    assert [j.attempts for j in again] == [2, 2, 2]
    assert store.release_jobs("worker-a", ids) == 0  # not worker-a's any more
    assert store.release_jobs("worker-b", ids[:1], uncount=True) == 1
    assert store.release_jobs("worker-b", ids[1:]) == 2
    jobs = {j.id: j for j in store.list_jobs(JobFilter(states=(QUEUED,)))}
    assert jobs[ids[0]].attempts == 1 and jobs[ids[1]].attempts == 2 and jobs[ids[0]].lease_owner is None


def test_completion_sets_state_and_record_together(store: Store) -> None:
    (job,) = [e.job for e in store.enqueue_jobs([new_job(1, integration_id="int-1")])]
    store.claim_jobs("w", limit=1, lease_seconds=30)
    at = datetime.now(UTC) + timedelta(minutes=5)
    stored, after, held = store.complete_job(
        job.id, "w", _record(job.event, ok=False), JobOutcome(QUEUED, "HTTP 503", at)
    )
    assert held and after.state == QUEUED and after.last_error == "HTTP 503" and after.run_after == at
    assert stored.document["integration_id"] == "int-1" and stored.metadata_kind == KIND
    assert stored.document["job"]["next_run_at"] is not None and stored.document["job"]["final"] is False
    # a record the store refuses leaves the job as it was: nothing half-done
    store.claim_jobs("w", limit=1, lease_seconds=30, now=at)
    with pytest.raises(InputError):
        store.complete_job(job.id, "w", {"deliveries": "nope"}, JobOutcome(DEAD, "x"))
    still = store.get_job(job.id)
    assert still is not None and still.state == RUNNING and still.delivery_id == stored.id


def test_queue_stats_and_oldest_due(store: Store) -> None:
    now = datetime.now(UTC)
    store.enqueue_jobs([new_job(1), new_job(2, provider="splunk")])
    stats = store.queue_stats(now=now + timedelta(seconds=10))
    assert stats.due == 2 and stats.by_provider[("splunk", QUEUED)] == 1
    assert stats.oldest_due is not None and abs((stats.oldest_due - now).total_seconds()) < 5


def test_destination_read_modify_write(store: Store) -> None:
    def bump(d: Destination, now: datetime) -> int:
        d.consecutive_failures += 1
        d.paused_until = now + timedelta(seconds=5)
        return d.consecutive_failures

    assert store.update_destination("splunk", bump) == 1
    assert store.update_destination("splunk", bump) == 2
    (dest,) = store.list_destinations()
    assert dest.provider == "splunk" and dest.consecutive_failures == 2 and dest.breaker_state == "closed"
    assert dest.paused_until is not None and dest.paused_until > datetime.now(UTC)


def test_two_claimers_never_hold_the_same_job(sql_target: Target) -> None:
    """Two store instances (two connection pools, as two processes would have) claim and complete at once."""
    n = 300
    with sql_target.open() as setup:
        setup.enqueue_jobs([new_job(i) for i in range(n)])
    seen: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    ready = threading.Barrier(2)

    def run(owner: str) -> None:
        try:
            with sql_target.open() as s:
                ready.wait(timeout=30)  # both stores are open: claim at the same time
                while True:
                    jobs = s.claim_jobs(owner, limit=5, lease_seconds=60)
                    if not jobs:
                        return
                    for job in jobs:
                        seen[owner].append(job.id)
                        time.sleep(0.001)  # the delivery (SQLite's lock is not fair to a tight loop)
                        s.complete_job(job.id, owner, _record(job.event), JobOutcome(SUCCEEDED))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(o,)) for o in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert not set(seen["a"]) & set(seen["b"])
    assert len(seen["a"]) + len(seen["b"]) == n and seen["a"] and seen["b"]
    with sql_target.open() as s:
        jobs = s.list_jobs(JobFilter())
        assert {j.state for j in jobs} == {SUCCEEDED} and {j.attempts for j in jobs} == {1}
        assert s.verify_chain().ok and s.verify_chain().count == n


def test_job_payload_never_holds_a_target(store: Store) -> None:
    job = delivery_job(event(1), "webhook", kind=KIND, retries=2, timeout_seconds=5)
    assert set(job.payload) == {
        "event",
        "options",
        "subject_kind",
        "subject_id",
        "integration_id",
        "on_complete",
    }
    assert job.payload["options"] == {"retries": 2, "timeout_seconds": 5}


def test_a_revision_0002_store_is_upgraded_with_its_chain_kept(sql_target: Target) -> None:
    from cavra.store import current_revision, open_store, upgrade
    from cavra.store.engine import resolve
    from cavra.store.sql import SqlStore

    url = sql_target.url
    assert url is not None
    assert upgrade(url, revision="0002") == "0002"
    with SqlStore.open(resolve(url), migrate=False) as old:  # a store as revision 0002 wrote it
        old.append_delivery(_record(event(1)), metadata_kind=KIND)
    with open_store(url) as store:
        from cavra.store.migrate import head_revision

        assert current_revision(url) == head_revision()
        (queued,) = store.enqueue_jobs([new_job(2)])
        store.claim_jobs("w", limit=1, lease_seconds=30)
        stored, _job, held = store.complete_job(queued.job.id, "w", _record(event(2)), JobOutcome(SUCCEEDED))
        assert held and stored.sequence == 2
        assert store.verify_chain().ok


def test_claim_can_be_limited_to_providers(store: Store) -> None:
    """A worker filling a SIEM batch claims more jobs of one provider only."""
    mixed = [new_job(i, provider="splunk" if i % 2 else "webhook") for i in range(6)]
    ids = {e.job.id: e.job.provider for e in store.enqueue_jobs(mixed)}
    got = store.claim_jobs("w", limit=10, lease_seconds=30, providers=["splunk"])
    assert [j.provider for j in got] == ["splunk"] * 3
    assert store.claim_jobs("w", limit=10, lease_seconds=30, providers=[]) == []
    rest = store.claim_jobs("w", limit=10, lease_seconds=30)
    assert sorted(j.id for j in got + rest) == sorted(ids)
    assert {j.provider for j in rest} == {"webhook"}


def test_a_batch_enqueue_returns_the_jobs_as_stored(store: Store) -> None:
    """Many jobs in one call (one insert, one read back by key): each answer equals the stored job, a key
    repeated in the batch or already stored returns the existing job, not a second one."""
    (first,) = store.enqueue_jobs([new_job(0)])
    at = datetime(2030, 1, 1, 12, tzinfo=UTC)
    batch = [new_job(1), new_job(2, run_after=at), new_job(1), new_job(0)]
    got = store.enqueue_jobs(batch)
    assert [e.created for e in got] == [True, True, False, False]
    assert got[2].job.id == got[0].job.id and got[3].job == first.job
    for e in got:
        assert store.get_job(e.job.id) == e.job
    assert got[1].job.run_after == at
    assert len(store.list_jobs(JobFilter())) == 3


def test_a_completion_batch_is_one_chain_and_a_repeated_job_is_lease_lost(store: Store) -> None:
    made = store.enqueue_jobs([new_job(i) for i in range(5)])
    ids = [e.job.id for e in made]
    store.claim_jobs("w", limit=5, lease_seconds=60)
    items = [(i, _record(event(n)), JobOutcome(SUCCEEDED)) for n, i in enumerate(ids)]
    items.append((ids[0], _record(event(0)), JobOutcome(SUCCEEDED)))  # the same run reported twice
    out = store.complete_jobs("w", items)
    assert [held for _s, _j, held in out] == [True] * 5 + [False]
    assert [s.sequence for s, _j, _h in out] == list(range(1, 7))
    assert [s.document["job"]["final"] for s, _j, _h in out] == [True] * 5 + [False]
    for _stored, job, held in out[:5]:
        assert held and store.get_job(job.id) == job and job.state == SUCCEEDED
    assert store.verify_chain().ok


def test_completion_notes_run_in_the_completion_and_a_failing_one_is_undone(store: Store) -> None:
    from cavra.store.base import RecordAccess, StoredDelivery

    store.put_record("integration", "hook", {"integration_id": "hook", "seen": []})
    enq = store.enqueue_jobs([new_job(1), new_job(2), new_job(3)])
    claimed = store.claim_jobs("w", limit=3, lease_seconds=30)
    by_event = {j.event["event_id"]: j for j in claimed}

    def note(records: RecordAccess, stored: StoredDelivery) -> None:
        body = records.get("integration", "hook")
        assert body is not None
        records.put("integration", "hook", {**body, "seen": [*body["seen"], stored.document["event_id"]]})

    def broken(records: RecordAccess, stored: StoredDelivery) -> None:
        records.put("integration", "half-written", {"integration_id": "half-written"})
        raise RuntimeError("a bug in a note")

    items = [(j.id, _record(j.event), JobOutcome(SUCCEEDED)) for j in claimed]
    notes = {by_event["evt-1"].id: note, by_event["evt-2"].id: broken, by_event["evt-3"].id: note}
    done = store.complete_jobs("w", items, notes=notes)
    assert [held for _s, _j, held in done] == [True, True, True]
    assert {j.state for j in store.list_jobs(JobFilter())} == {SUCCEEDED} and len(enq) == 3
    assert store.get_record("integration", "half-written") is None  # the failing note's write is undone
    seen = store.get_record("integration", "hook")
    assert seen is not None and sorted(seen["seen"]) == ["evt-1", "evt-3"]
    assert store.verify_chain().ok and len(list(store.chain().entries)) == 3
