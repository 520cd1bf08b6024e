"""``cavra worker --processes 2`` on one store (SQLite and PostgreSQL): both processes claim, and each job is
delivered exactly once, checked three ways: the webhook emulator saw each ``webhook-id`` once and nothing
else, every job ran once (``attempts == 1``: no lease expired, nothing claimed twice), and the chain holds
one final record per job. Also: the supervisor's exit code and summary, a child that dies, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.emulators.webhook import receiver_state
from cavra.store import open_store
from cavra.store.jobs import SUCCEEDED, JobFilter

from .conftest import new_job

JOBS = int(os.environ.get("CAVRA_PROCESSES_JOBS") or 1000)
CLI = "from cavra.cli.main import main; main()"


def worker_cmd(store_url: str, config: Path, *extra: str) -> list[str]:
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
        "8",
        "--poll-interval",
        "0.05",
        "--lease-seconds",
        "60",
        *extra,
    ]


def fill(url: str, count: int) -> None:
    with open_store(url) as store:
        for start in range(0, count, 500):
            store.enqueue_jobs([new_job(i) for i in range(start, min(count, start + 500))])


async def drain_with_two_processes(url: str, tmp_path: Path) -> None:
    fill(url, JOBS)
    async with EmulatorServer(providers=["webhook"]) as srv:
        data, env = demo_environment(srv.base_url, srv.settings)
        config = tmp_path / "connectors.json"
        config.write_text(json.dumps(data), encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            *worker_cmd(url, config, "--once", "--processes", "2"),
            env={**os.environ, **env},
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
        state = receiver_state(srv.hub)
        requests = len(srv.hub.received("webhook"))
    text = err.decode()
    assert proc.returncode == 0, text[-2000:]
    m = re.search(
        r"\(2 processes\): (\d+) claimed, (\d+) delivered.*claimed per process: (\d+), (\d+)$", text, re.M
    )
    assert m is not None, text[-1000:]
    total, delivered, first, second = map(int, m.groups())
    assert total == delivered == JOBS and first + second == JOBS
    assert first > 0 and second > 0, text[-1000:]  # both processes claimed

    with open_store(url) as store:
        jobs = store.list_jobs(JobFilter(), limit=JOBS + 10)
        report = store.verify_chain()
        records = [e.document for e in store.chain().entries]
    assert len(jobs) == JOBS and {j.state for j in jobs} == {SUCCEEDED}
    assert {j.attempts for j in jobs} == {1}  # no job ran twice (no lease expired here)
    assert report.ok and report.count == JOBS
    per_job = Counter(d["job"]["job_id"] for d in records if d and d["job"]["final"])
    assert len(per_job) == JOBS and set(per_job.values()) == {1}
    assert set(per_job) == {j.id for j in jobs}
    assert state.unique == JOBS and state.duplicates == 0 and requests == JOBS  # each webhook-id once


async def test_two_processes_on_sqlite_deliver_each_job_once(tmp_path: Path) -> None:
    await drain_with_two_processes(f"sqlite:///{tmp_path / 'evidence.db'}", tmp_path)


@pytest.mark.postgres
async def test_two_processes_on_postgresql_deliver_each_job_once(pg_url: str, tmp_path: Path) -> None:
    await drain_with_two_processes(pg_url, tmp_path)


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def handles_sigterm(pid: int) -> bool:
    """The process installed its own SIGTERM handler (SigCgt bit 15), so it is past its start-up."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find the children")
async def test_sigterm_stops_every_process_gracefully(tmp_path: Path) -> None:
    config = tmp_path / "connectors.json"
    config.write_text(json.dumps({"connectors": {}}), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    proc = await asyncio.create_subprocess_exec(
        *worker_cmd(url, config, "--processes", "2"), stderr=asyncio.subprocess.PIPE
    )
    for _ in range(1200):  # bounded: up to 60 s on a loaded machine
        kids = children_of(proc.pid)
        if len(kids) == 2 and all(handles_sigterm(k) for k in kids):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the supervisor did not start two workers")
    proc.send_signal(signal.SIGTERM)
    _out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "(2 processes): 0 claimed" in text and "claimed per process: 0, 0" in text
    assert all(not Path(f"/proc/{k}").exists() for k in kids)


def test_a_child_that_dies_is_reported_and_fails_the_supervisor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cavra.cli.supervisor import Supervisor

    config = tmp_path / "connectors.json"
    config.write_text(json.dumps({"connectors": {}}), encoding="utf-8")
    good = ["--store", f"sqlite:///{tmp_path / 'evidence.db'}", "--config", str(config), "--once"]
    sup = Supervisor(2, [[*good, "--processes", "1"], [*good, "--concurrency", "0", "--processes", "1"]])
    assert sup.run() == 1
    err = capsys.readouterr().err
    assert "--concurrency: must be between 1 and 256" in err  # the child's own error, relayed
    assert re.search(r"error: worker process 2 of 2 \(pid \d+\) exited with code 2", err)
    assert "worker process 1 of 2" not in err and sup.claimed() == [0, 0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--processes", "0"], "error: --processes: must be at least 1, got 0"),
        (["--metadata-json", "m.json", "--processes", "2"], "error: --processes: the JSON-file store takes"),
    ],
)
def test_bad_process_counts_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", CLI, "worker", "--once", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find the children")
async def test_children_die_with_a_supervisor_killed_outright(tmp_path: Path) -> None:
    config = tmp_path / "connectors.json"
    config.write_text(json.dumps({"connectors": {}}), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    proc = await asyncio.create_subprocess_exec(
        *worker_cmd(url, config, "--processes", "2"), stderr=asyncio.subprocess.PIPE
    )
    for _ in range(1200):
        kids = children_of(proc.pid)
        if len(kids) == 2 and all(handles_sigterm(k) for k in kids):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the supervisor did not start two workers")
    proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(proc.communicate(), timeout=60)
    for _ in range(600):  # the kernel kills them (PR_SET_PDEATHSIG); they are reaped by init
        if not any(Path(f"/proc/{k}").exists() and "State:\tZ" not in _status(k) for k in kids):
            break
        await asyncio.sleep(0.05)
    else:
        for k in kids:
            os.kill(k, signal.SIGKILL)
        pytest.fail(f"worker processes {kids} outlived their supervisor")


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "State:\tZ"
