"""Nothing accepted is lost: a worker process killed with SIGKILL mid-delivery, then a new worker drains.

2,000 jobs for the webhook emulator (in this process, on loopback) are worked by ``cavra worker
--processes 2`` in a subprocess (a supervisor and two worker processes). At a random moment (seeded; the
seed is printed) the supervisor is killed with SIGKILL, and its workers die with it. After its
leases expire a new worker drains the queue with ``--once``. Then every job must have succeeded with
exactly one final record, the chain must verify, and the emulator must have received every event: the
unique ``webhook-id`` count is 2,000; re-sends of jobs that were in flight at the kill are duplicates the
receiver recognised (webhook-id dedup), counted and reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.emulators.webhook import receiver_state
from cavra.store import open_store
from cavra.store.jobs import SUCCEEDED, JobFilter

from .conftest import new_job

JOBS = 2000
CONCURRENCY = 8
PROCESSES = 2
IN_FLIGHT = CONCURRENCY * PROCESSES  # at most this many jobs were running at the kill
LEASE = 2.0
CLI = "from cavra.cli.main import main; main()"


def _worker_cmd(store_url: str, config: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        CLI,
        "worker",
        "--store",
        store_url,
        "--config",
        str(config),
        "--concurrency",
        str(CONCURRENCY),
        "--lease-seconds",
        str(LEASE),
        "--poll-interval",
        "0.05",
        "--retry-base-delay",
        "0.01",
        "--processes",
        str(PROCESSES),
        *extra,
    ]


@pytest.mark.slow
async def test_sigkill_mid_delivery_loses_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("CAVRA_CRASH_SEED") or time.time())
    kill_after = random.Random(seed).randint(100, JOBS - 300)
    store_url = f"sqlite:///{tmp_path / 'metadata.db'}"
    with open_store(store_url) as store:
        for start in range(0, JOBS, 500):
            store.enqueue_jobs([new_job(i) for i in range(start, start + 500)])

    async with EmulatorServer(providers=["webhook"]) as srv:
        data, env = demo_environment(srv.base_url, srv.settings)
        config = tmp_path / "connectors.json"
        config.write_text(json.dumps(data), encoding="utf-8")
        proc_env = {**os.environ, **env}
        received = lambda: len(srv.hub.received("webhook"))  # noqa: E731

        first = await asyncio.create_subprocess_exec(
            *_worker_cmd(store_url, config), env=proc_env, stderr=asyncio.subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while received() < kill_after:
            assert first.returncode is None, "the worker stopped before it was killed"
            assert time.monotonic() < deadline, f"only {received()} deliveries in 60 s"
            await asyncio.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        at_kill = received()
        assert first.returncode == -signal.SIGKILL

        with open_store(store_url) as store:
            before = store.queue_stats()
        assert before.count("running") > 0 or before.count("queued") > 0  # it really died mid-queue

        await asyncio.sleep(LEASE + 0.5)  # the dead worker's leases expire
        second = await asyncio.create_subprocess_exec(
            *_worker_cmd(store_url, config, "--once"), env=proc_env, stderr=asyncio.subprocess.PIPE
        )
        _out, err = await asyncio.wait_for(second.communicate(), timeout=120)
        assert second.returncode == 0, err.decode()[-2000:]
        state = receiver_state(srv.hub)

    with open_store(store_url) as store:
        jobs = store.list_jobs(JobFilter(), limit=JOBS + 10)
        assert len(jobs) == JOBS and {j.state for j in jobs} == {SUCCEEDED}
        records = [e.document for e in store.chain().entries]
        assert store.verify_chain().ok
    finals = Counter(d["job"]["job_id"] for d in records if d and d["job"]["final"])
    assert len(finals) == JOBS and set(finals.values()) == {1}  # exactly one final record per job
    by_id = {d["id"]: d for d in records if d}
    for j in jobs:
        assert by_id[j.delivery_id]["job"] == {**by_id[j.delivery_id]["job"], "job_id": j.id, "final": True}
    lost_lease = [d for d in records if d and not d["job"]["final"]]
    assert state.unique == JOBS  # every event arrived
    assert state.duplicates <= IN_FLIGHT and state.duplicates == len(srv.hub.received("webhook")) - JOBS
    rerun = [j for j in jobs if j.attempts > 1]
    assert len(rerun) <= IN_FLIGHT
    with capsys.disabled():
        print(
            f"\ncrash test (seed {seed}): killed after {at_kill} requests; {len(rerun)} jobs ran again after "
            f"their lease expired; {state.duplicates} duplicate deliveries recognised by webhook-id; "
            f"{len(lost_lease)} records from lost leases"
        )
