"""Three ``cavra worker`` processes on one PostgreSQL store drain 3,000 jobs (``make soak``: 10,000): each
delivered exactly once.

Workers claim with ``FOR UPDATE SKIP LOCKED``. Nothing crashes here, so a job claimed twice (by two
workers at once, or after a lease wrongly expired) would show as ``attempts > 1``, as a second delivery
record, or as a duplicate ``webhook-id`` at the emulator; all three must be absent.

No wall-clock bound: on a loaded machine the drain may take minutes. The test waits as long as deliveries
keep arriving at the emulator and fails only when none has arrived for ``STALL_SECONDS`` (a hang, not a
slow machine).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.emulators.webhook import receiver_state
from cavra.store import open_store
from cavra.store.jobs import SUCCEEDED, JobFilter

from .conftest import new_job
from .test_crash import _worker_cmd

JOBS = int(os.environ.get("CAVRA_PG_JOBS") or 3_000)  # make soak sets 10,000
WORKERS = 3
#: no delivery at all for this long while the workers run: they are stuck
STALL_SECONDS = 90.0
T = TypeVar("T")


async def _while_progressing(work: asyncio.Future[T], progress: Callable[[], int], stall: float) -> T:
    """``work``'s result, however long it takes while ``progress()`` keeps growing; fails (cancelling
    ``work``) when it has not grown for ``stall`` seconds."""
    seen, quiet_since = progress(), time.monotonic()
    while True:
        done, _ = await asyncio.wait({work}, timeout=1.0)
        if done:
            return work.result()
        now, count = time.monotonic(), progress()
        if count != seen:
            seen, quiet_since = count, now
        elif now - quiet_since > stall:
            work.cancel()
            pytest.fail(f"no progress for {stall:g} s: {count} of {JOBS} delivered")


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(0)  # bounded by the stall check instead: a slow machine is not a failure
async def test_three_workers_drain_the_queue_each_job_once(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(pg_url) as store:
        for start in range(0, JOBS, 1000):
            store.enqueue_jobs([new_job(i) for i in range(start, start + 1000)])

    async with EmulatorServer(providers=["webhook"]) as srv:
        data, env = demo_environment(srv.base_url, srv.settings)
        config = tmp_path / "connectors.json"
        config.write_text(json.dumps(data), encoding="utf-8")
        t0 = time.monotonic()
        procs = [
            await asyncio.create_subprocess_exec(
                *_worker_cmd(pg_url, config, "--once", "--lease-seconds", "30"),
                env={**os.environ, **env},
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(WORKERS)
        ]
        work = asyncio.gather(*(p.communicate() for p in procs))
        try:
            outputs = await _while_progressing(work, lambda: len(srv.hub.received("webhook")), STALL_SECONDS)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
        elapsed = time.monotonic() - t0
        state = receiver_state(srv.hub)
        requests = len(srv.hub.received("webhook"))

    claimed = []
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        text = err.decode()
        assert proc.returncode == 0, text[-2000:]
        m = re.search(r"(\d+) claimed", text)
        assert m is not None, text[-500:]
        claimed.append(int(m.group(1)))
    assert sum(claimed) == JOBS and all(n > 0 for n in claimed)  # all three took part

    with open_store(pg_url) as store:
        jobs = store.list_jobs(JobFilter(), limit=JOBS + 10)
        assert len(jobs) == JOBS and {j.state for j in jobs} == {SUCCEEDED}
        assert {j.attempts for j in jobs} == {1}  # never claimed twice
        report = store.verify_chain()
        records = [e.document for e in store.chain().entries]
    assert report.ok and report.count == JOBS
    per_job = Counter(d["job"]["job_id"] for d in records if d and d["job"]["final"])
    assert len(per_job) == JOBS and set(per_job.values()) == {1}
    assert state.unique == JOBS and state.duplicates == 0 and requests == JOBS
    with capsys.disabled():
        print(f"\n{WORKERS} PostgreSQL workers delivered {JOBS} jobs in {elapsed:.1f} s (claimed {claimed})")
