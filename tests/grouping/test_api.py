"""``POST /events`` with a grouping route: the answer is ``accepted`` (202) with each grouped destination's
group and flush job; ``GET /jobs/{id}`` shows the flush job."""

from __future__ import annotations

import json
from pathlib import Path

from cavra.api.settings import ApiSettings
from cavra.emulators.server import EmulatorServer, demo_environment

from ..console.conftest import bearer, running, token_set
from .conftest import GROUPED, rollback


async def test_publish_answers_the_group_and_its_flush_job(tmp_path: Path, emulators: EmulatorServer) -> None:
    data, env = demo_environment(emulators.base_url, emulators.settings)
    data["routes"] = [GROUPED]
    path = tmp_path / "connectors.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    settings = ApiSettings(
        config_path=str(path), store_url=str(tmp_path / "m.db"), environ=env, tokens=token_set()
    )
    async with running(settings) as c:
        c.headers.update(bearer("operator"))
        resp = await c.post("/events", json={"events": [rollback(1), rollback(2)], "wait": True})
        assert resp.status_code == 202, resp.text
        answer = resp.json()
        assert answer["status"] == "accepted" and answer["grouped"] == 4
        first = answer["events"][0]["destinations"]
        assert {d["destination"] for d in first} == {"slack", "jira"}
        assert all(d["state"] == "grouped" for d in first)
        second = answer["events"][1]["destinations"]
        assert [d["job_id"] for d in first] == [d["job_id"] for d in second]  # one flush per group
        job = (await c.get(resp.headers["Location"])).json()
        assert job["kind"] == "group-delivery" and job["state"] == "queued", job
