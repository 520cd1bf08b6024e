"""A worker process killed while a group is pending loses no group and sends none twice.

Three events join one group (``group_wait`` 1s) in a SQLite store. A real ``cavra worker`` process runs
the flush: it takes the three members, and its send gets a 503 (a scripted fault), so the job is queued
again with its members taken and no message posted. The process is then killed with SIGKILL, between
the group's due time and its send. A new worker process runs the job again: the emulator receives exactly
one group message, with the three events, and the store holds one group record and three member records
naming it. (The waits below poll for a state with a deadline; no assertion depends on timing.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from cavra.config import config_from_data
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.emulators.slack import slack_state
from cavra.governance import service as governance
from cavra.store import open_store
from cavra.store.jobs import JobFilter

from .conftest import rollback

CLI = "from cavra.cli.main import main; main()"
ROUTE = {"name": "rollbacks", "to": "slack", "group_by": ["labels.env"], "group_wait": "1s"}


def _worker(store_url: str, config: Path, env: dict[str, str]) -> Any:
    cmd = [sys.executable, "-c", CLI, "worker", "--store", store_url, "--config", str(config)]
    cmd += ["--lease-seconds", "1", "--poll-interval", "0.05", "--retry-base-delay", "0.01"]
    return asyncio.create_subprocess_exec(*cmd, env=env, stderr=asyncio.subprocess.PIPE)


async def _until(check: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"still waiting for {what} after {seconds:g}s"
        await asyncio.sleep(0.02)


async def test_a_killed_worker_loses_no_group_and_sends_none_twice(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'metadata.db'}"
    async with EmulatorServer(providers=["slack"]) as srv:
        data, env = demo_environment(srv.base_url, srv.settings)
        data["connectors"] = {"slack": data["connectors"]["slack"]}
        data["routes"] = [ROUTE]
        path = tmp_path / "connectors.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        config = config_from_data(data, str(path), env)
        with open_store(store_url) as store:
            await governance.publish_events(store, config, [rollback(n) for n in (1, 2, 3)], retries=0)
        srv.hub.add_fault("slack", Fault(status=503, count=1))
        # the job's next run comes soon after the failed send (seconds, not the default minute)
        proc_env = {**os.environ, **env, "CAVRA_QUEUE_BACKOFF_BASE": "1", "CAVRA_QUEUE_BACKOFF_MAX": "1"}
        posted = slack_state(srv.hub).messages

        first = await _worker(store_url, path, proc_env)
        await _until(lambda: any(r.status == 503 for r in srv.hub.received("slack")), "the first send")
        first.send_signal(signal.SIGKILL)
        await first.wait()
        assert posted == []
        with open_store(store_url) as store:
            (job,) = store.list_jobs(JobFilter(kind="group-delivery"))
            assert not job.final  # queued again, its members taken: nothing was lost
            taken = store.with_groups(lambda tx: tx.members_of(job.id))
            assert [m.event_id for m in taken] == ["evt-rb-1", "evt-rb-2", "evt-rb-3"]

        second = await _worker(store_url, path, proc_env)
        try:
            with open_store(store_url) as store:
                await _until(lambda: store.get_job(job.id).final, "the flush job to end")  # type: ignore[union-attr]
        finally:
            second.send_signal(signal.SIGTERM)
            await second.wait()
        assert len(posted) == 1
        text = json.dumps(posted[0].payload)
        assert "3 CAVRA events" in text and "rre_prod_1" in text
        assert [r.status for r in srv.hub.received("slack")] == [503, 200]
        with open_store(store_url) as store:
            docs = [e.document for e in store.chain().entries if e.document is not None]
            groups = [d for d in docs if d["metadata_kind"] == "group-delivery"]
            members = [d for d in docs if d["metadata_kind"] == "event-delivery"]
            # the run that got the 503 may have stored its record before the kill; the last one sent
            assert groups[-1]["success"] is True and groups[-1]["job"]["final"] is True
            assert groups[-1]["group"]["member_event_ids"] == ["evt-rb-1", "evt-rb-2", "evt-rb-3"]
            assert len(members) == 3
            assert {m["group"]["group_delivery_id"] for m in members} == {groups[-1]["id"]}
            assert store.verify_chain().ok
