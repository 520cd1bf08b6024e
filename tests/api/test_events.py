"""``POST /events`` and ``POST /routes/test`` over HTTP: fan-out through the outbox, 202 + Location, the
records when waited, idempotency, unrouted events in /metrics, the redacted preview, roles."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from cavra.emulators.server import EmulatorServer, demo_environment

from .conftest import AppFactory, assert_error, bearer, token_set

ROLLBACK = {
    "event_type": "cavra.release.rollback_execution",
    "event_id": "evt-api-rollback",
    "execution_id": "rre_api",
    "severity": "critical",
}
OTHER = {"event_type": "acme.other", "event_id": "evt-api-other"}


def no_default_config(tmp_path: Path, srv: EmulatorServer) -> tuple[str, dict[str, str]]:
    data, env = demo_environment(srv.base_url, srv.settings)
    data["routes"] = [r for r in data["routes"] if not r.get("default")]
    path = tmp_path / "no-default.json"
    path.write_text(json.dumps(data))
    return str(path), env


async def test_wait_answers_every_destination_with_its_record(
    client: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    resp = await client.post("/events", json={"event": ROLLBACK, "wait": True, "retries": 0})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["schema_version"] == "cavra.events.publish.v1" and body["status"] == "completed"
    assert body["success"] is True
    item = body["events"][0]
    assert [r["name"] for r in item["routes"]] == ["release-rollbacks", "release-audit"]
    got = {d["destination"]: d for d in item["destinations"]}
    assert set(got) == {"slack", "jira", "splunk"}
    for dest, d in got.items():
        assert d["record"]["route"] == d["route"] and d["record"]["metadata_kind"] == "event-delivery"
        assert d["record"]["deliveries"][0]["provider"] == dest
        assert d["state"] == "succeeded"
    assert len(emulators.hub.received("slack")) == 1


async def test_no_wait_is_202_with_location_and_job_ids(
    make_client: AppFactory, emulators: EmulatorServer
) -> None:
    events = [ROLLBACK, {**ROLLBACK, "event_id": "evt-api-rollback-2"}]
    async with make_client(worker=True) as client:
        resp = await client.post("/events", json={"events": events}, headers={"Idempotency-Key": "k-1"})
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert resp.headers["Location"] == body["status_url"] == f"/jobs/{body['job_id']}"
        ids = [d["job_id"] for e in body["events"] for d in e["destinations"]]
        assert len(ids) == len(set(ids)) == 6
        again = (
            await client.post("/events", json={"events": events}, headers={"Idempotency-Key": "k-1"})
        ).json()
        assert [d["job_id"] for e in again["events"] for d in e["destinations"]] == ids
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = [(await client.get(f"/jobs/{jid}")).json()["state"] for jid in ids]
            if all(s == "succeeded" for s in states):
                break
            await asyncio.sleep(0.05)
        assert states == ["succeeded"] * 6
    assert len(emulators.hub.received("slack")) == 2  # one per event: the repeat sent nothing


async def test_unrouted_is_answered_recorded_and_in_metrics(
    make_client: AppFactory, emulators: EmulatorServer, tmp_path: Path
) -> None:
    path, env = no_default_config(tmp_path, emulators)
    async with make_client(config_path=path, environ=env) as client:
        resp = await client.post("/events", json={"event": OTHER})
        assert resp.status_code == 200, resp.text  # nothing to queue: answered at once
        item = resp.json()["events"][0]
        assert item["status"] == "unrouted" and item["delivery_id"].startswith("dlv_")
        record = (await client.get(f"/deliveries/{item['delivery_id']}")).json()
        assert record["metadata_kind"] == "unrouted-event" and record["routing"]["status"] == "unrouted"
        metrics = (await client.get("/metrics")).text
        line = next(
            ln
            for ln in metrics.splitlines()
            if ln.startswith('cavra_events_published_total{outcome="unrouted"}')
        )
        assert float(line.split()[-1]) >= 1
    assert not emulators.hub.received()


async def test_bad_bodies_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.post("/events", json={"event": ROLLBACK, "events": [ROLLBACK]}), 422)
    assert "either event" in body["detail"]
    body = assert_error(await client.post("/events", json={"events": [ROLLBACK, {"no": "type"}]}), 422)
    assert "events[1]" in body["detail"] and "event_type" in body["detail"]
    body = assert_error(await client.post("/events", json={"events": []}), 422)
    assert "events" in body["detail"]
    assert_error(await client.post("/routes/test", json={"event": {"x": 1}}), 422)


async def test_operator_role_is_needed(make_client: AppFactory) -> None:
    async with make_client(tokens=token_set(), client=("10.1.2.3", 4000)) as c:
        assert_error(await c.post("/events", json={"event": ROLLBACK}, headers=bearer("auditor")), 403)
        assert_error(await c.post("/routes/test", json={"event": ROLLBACK}, headers=bearer("auditor")), 403)
        resp = await c.post("/routes/test", json={"event": ROLLBACK}, headers=bearer("operator"))
        assert resp.status_code == 200, resp.text


async def test_routes_test_previews_redacted_requests_and_sends_nothing(
    client: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    resp = await client.post("/routes/test", json={"event": ROLLBACK})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["sent"] is False and body["status"] == "routed"
    assert [r["name"] for r in body["routes"]] == ["release-rollbacks", "release-audit"]
    got = {d["destination"]: d for d in body["destinations"]}
    assert set(got) == {"slack", "jira", "splunk"}
    slack = got["slack"]["request"]
    assert slack["method"] == "POST" and "**REDACTED**" in slack["url"]
    assert "rre_api" in slack["body"] or "rollback" in slack["body"].lower()
    assert got["splunk"]["request"]["headers"]["Authorization"].endswith("**REDACTED**")
    _, env = demo_environment(emulators.base_url, emulators.settings)
    secrets = [v for k, v in env.items() if not k.endswith("_URL")]
    secrets += ["cavraDemoSlackHook000001", "cavraDemoTeamsWorkflowSig"]
    for value in secrets:
        assert value not in resp.text
    assert not emulators.hub.received()
