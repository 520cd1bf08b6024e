"""The leak kit's grouped round: a route that groups, to every ChatOps and ITSM destination of the file,
with ``group_wait`` 0s, so the API servers' workers flush the groups at once (their requests, answers,
records and console pages then pass through the same canary scan as every other channel)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from cavra.destinations import categories_of
from cavra.routing.grouping import GROUPED_CATEGORIES

EVENT_TYPE = "leak.grouped"


def add_grouped_route(config_path: Path) -> list[str]:
    """Put a grouping route first in the emulators' connectors file; return its destinations."""
    data = json.loads(config_path.read_text(encoding="utf-8"))
    grouped = [n for n, c in categories_of(data["connectors"]).items() if c in GROUPED_CATEGORIES]
    route = {
        "name": "leak-grouped",
        "event_type": EVENT_TYPE,
        "to": grouped,
        "group_by": ["labels.env"],
        "group_wait": "0s",
        "group_interval": "1s",
    }
    data["routes"] = [route, *data.get("routes", [])]
    config_path.write_text(json.dumps(data), encoding="utf-8")
    return grouped


def grouped_round(add: Any, api: str, channel: str, round_id: str) -> None:
    """Publish three events that join one group per destination, wait for the flush jobs, read them."""
    events = [
        {"event_type": EVENT_TYPE, "event_id": f"leak-{round_id}-{n}", "labels": {"env": "prod"}}
        for n in range(3)
    ]
    with httpx.Client(base_url=api, timeout=120) as c:
        resp = c.post("/events", json={"events": events})
        add(channel, resp.text)
        assert resp.status_code in (200, 202), resp.text
        jobs = {d["job_id"] for e in resp.json()["events"] for d in e["destinations"] if d.get("job_id")}
        assert jobs, resp.text
        deadline = time.monotonic() + 60
        for job in sorted(jobs):
            while time.monotonic() < deadline:
                answer = c.get(f"/jobs/{job}")
                if answer.json().get("state") not in ("queued", "running"):
                    break
                time.sleep(0.1)
            add(channel, answer.text)
            delivery = answer.json().get("delivery_id")
            if delivery:
                add(channel, c.get(f"/deliveries/{delivery}").text)
                add("console pages", c.get(f"/console/deliveries/{delivery}").text)
