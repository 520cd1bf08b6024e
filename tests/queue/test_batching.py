"""The worker batches due jobs of a SIEM target: fewer requests, one record per job, partial HEC failures.

Runs a real worker over a real store (SQLite, the JSON file and PostgreSQL) against the Splunk HEC and
Datadog emulators on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from cavra.delivery.queue import Schedule
from cavra.delivery.worker import Worker
from cavra.emulators import datadog as intake
from cavra.emulators import splunk as hec
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.store import Store
from cavra.store.jobs import FAILED, SUCCEEDED, JobFilter

from .conftest import emulator_config, new_job

FAST = Schedule(base_delay=0.05, factor=1.0, max_delay=0.05, max_runs=3, jitter=0.0)


async def drain(store: Store, srv: EmulatorServer, providers: list[str], **kw: Any) -> Worker:
    worker = Worker(
        store,
        emulator_config(srv, providers),
        poll_interval=0.02,
        retry_base_delay=0.01,
        schedule=FAST,
        **kw,
    )
    await worker.run(once=True)
    return worker


def indexed(srv: EmulatorServer) -> Counter[str]:
    return Counter(str(e.event["event_id"]) for e in hec.state(srv.hub).events)


async def test_due_hec_jobs_go_in_batches_each_with_its_own_record(store: Store) -> None:
    jobs = [new_job(i, provider="splunk") for i in range(230)] + [new_job(i) for i in range(4)]
    store.enqueue_jobs(jobs)
    async with EmulatorServer(providers=["splunk", "webhook"]) as srv:
        worker = await drain(store, srv, ["splunk", "webhook"], concurrency=2)
        hec_requests = srv.hub.received("splunk")
        webhook_requests = srv.hub.received("webhook")
    assert worker.stats.claimed == 234 and worker.stats.succeeded == 234
    assert len(webhook_requests) == 4  # the webhook does not batch
    assert 3 <= len(hec_requests) <= 6  # ~100 per request, not 230
    assert indexed(srv) == Counter({f"evt-{i}": 1 for i in range(230)})
    done = store.list_jobs(JobFilter(provider="splunk"), limit=500)
    assert len(done) == 230 and {j.state for j in done} == {SUCCEEDED} and {j.attempts for j in done} == {1}
    sizes = set()
    for job in done:
        assert job.delivery_id is not None
        doc = store.get_delivery(job.delivery_id)
        assert doc is not None and doc["success"] is True and doc["event_id"] == job.event["event_id"]
        (delivery,) = doc["deliveries"]
        sizes.add(int(delivery["detail"]["batch_size"]))
        assert doc["job"]["job_id"] == job.id and doc["job"]["final"] is True
    assert max(sizes) > 50
    assert store.verify_chain().ok


async def test_a_refused_event_fails_alone_and_the_rest_are_sent_once(store: Store) -> None:
    store.enqueue_jobs([new_job(i, provider="splunk") for i in range(60)])
    poison = frozenset({"evt-17"})
    async with EmulatorServer(
        providers=["splunk"], overrides={"splunk": {"unparsable_event_ids": poison}}
    ) as srv:
        worker = await drain(store, srv, ["splunk"], concurrency=1)
    counts = indexed(srv)
    assert "evt-17" not in counts and len(counts) == 59 and set(counts.values()) == {1}
    states = {j.event["event_id"]: j.state for j in store.list_jobs(JobFilter(provider="splunk"), limit=100)}
    assert states.pop("evt-17") == FAILED  # HEC's 400 is final: not rescheduled
    assert set(states.values()) == {SUCCEEDED}
    assert worker.stats.failed == 1 and worker.stats.succeeded == 59


async def test_a_failing_batch_is_rescheduled_job_by_job(store: Store) -> None:
    """Datadog down for a while: the batch's jobs are rescheduled, none lost, each delivered once."""
    store.enqueue_jobs([new_job(i, provider="datadog") for i in range(40)])
    async with EmulatorServer(providers=["datadog"]) as srv:
        srv.hub.add_fault("datadog", Fault(status=503, count=2))  # two runs of one attempt each fail
        worker = Worker(
            store, emulator_config(srv, ["datadog"]), poll_interval=0.02, retry_base_delay=0.01, schedule=FAST
        )
        await worker.start()  # not --once: the rescheduled jobs are due again only 50 ms later
        try:
            deadline = time.monotonic() + 30
            while not all(j.final for j in store.list_jobs(JobFilter(provider="datadog"), limit=100)):
                assert time.monotonic() < deadline, "the jobs did not finish"
                await asyncio.sleep(0.02)
        finally:
            await worker.close()
        requests = srv.hub.received("datadog")
        logs = intake.state(srv.hub).logs
    assert [r.status for r in requests] == [503, 503, 202]
    assert Counter(str(s.entry["event_id"]) for s in logs) == Counter({f"evt-{i}": 1 for i in range(40)})
    done = store.list_jobs(JobFilter(provider="datadog"), limit=100)
    assert {j.state for j in done} == {SUCCEEDED} and {j.attempts for j in done} == {3}


async def test_a_store_error_while_filling_a_batch_keeps_the_jobs_already_claimed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The top-up claim fails: the jobs of the first claim still run now (not after their leases expire)."""
    from cavra.errors import StoreError

    store.enqueue_jobs([new_job(i, provider="splunk") for i in range(10)])
    plain = store.claim_jobs

    def claim(*args: Any, **kw: Any) -> Any:
        if kw.get("providers") is not None:
            raise StoreError("the store is unavailable")
        return plain(*args, **kw)

    monkeypatch.setattr(store, "claim_jobs", claim)
    async with EmulatorServer(providers=["splunk"]) as srv:
        worker = await drain(store, srv, ["splunk"], concurrency=2)
    assert worker.stats.succeeded == 10 and len(indexed(srv)) == 10
    assert {j.state for j in store.list_jobs(JobFilter(provider="splunk"), limit=20)} == {SUCCEEDED}
