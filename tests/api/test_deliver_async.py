"""The deliver routes through the outbox: ``"wait": false`` and a passed ``wait_seconds`` answer 202 with
the job and its status URL; an ``Idempotency-Key`` makes a repeated request answer the first one's job."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer

from .conftest import EXPORT, PROMOTION, ROLLBACK, AppFactory, load

ROUTE = "/rollback-executions/rre_prod/deliver"
WEBHOOK = {"provider": "webhook", "retries": 1}


async def _register(client: httpx.AsyncClient) -> None:
    for route, path in (
        ("/promotion-executions", PROMOTION),
        ("/rollback-executions", ROLLBACK),
        ("/endpoint-management-exports", EXPORT),
    ):
        assert (await client.post(route, json=load(path))).status_code == 201


async def _job_when(
    client: httpx.AsyncClient, job_id: str, state: str, within: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        job = (await client.get(f"/jobs/{job_id}")).json()
        if job["state"] == state or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.05)


def _accepted(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "accepted" and body["job_id"].startswith("job_")
    assert resp.headers["Location"] == body["status_url"] == f"/jobs/{body['job_id']}"
    return body


async def test_no_wait_answers_202_and_the_job_succeeds_later(
    make_client: AppFactory, emulators: EmulatorServer
) -> None:
    async with make_client(worker=True) as client:
        await _register(client)
        body = _accepted(await client.post(ROUTE, json={**WEBHOOK, "wait": False}))
        job = await _job_when(client, body["job_id"], "succeeded")
        assert job["state"] == "succeeded" and job["delivery_id"], job
        record = (await client.get(f"/deliveries/{job['delivery_id']}")).json()
        assert record["success"] is True and record["job"]["job_id"] == body["job_id"]
    assert len(emulators.hub.received("webhook")) == 1


async def test_same_idempotency_key_delivers_once(make_client: AppFactory, emulators: EmulatorServer) -> None:
    async with make_client() as client:
        await _register(client)
        headers = {"Idempotency-Key": "deploy-42-rollback"}
        first = await client.post(ROUTE, json=WEBHOOK, headers=headers)
        again = await client.post(ROUTE, json=WEBHOOK, headers=headers)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert first.json()["success"] is True
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["job"]["job_id"] == first.json()["job"]["job_id"]
        # another key is another request: delivered again
        other = await client.post(ROUTE, json=WEBHOOK, headers={"Idempotency-Key": "deploy-43-rollback"})
        assert other.status_code == 200 and other.json()["job"]["job_id"] != first.json()["job"]["job_id"]
    assert len(emulators.hub.received("webhook")) == 2


async def test_wait_seconds_passing_answers_202(make_client: AppFactory, emulators: EmulatorServer) -> None:
    emulators.hub.add_fault("webhook", Fault(delay=1.5, count=1))
    async with make_client() as client:
        await _register(client)
        started = time.monotonic()
        body = _accepted(await client.post(ROUTE, json={**WEBHOOK, "wait_seconds": 0.3}))
        assert time.monotonic() - started >= 0.3  # it waited (a loaded machine only waits longer)
        # answered before the delayed run ended (no upper time bound: it fails on a loaded machine)
        assert body["jobs"][0]["state"] in ("queued", "running")
        # the run goes on after the answer and ends with a record
        job = await _job_when(client, body["job_id"], "succeeded")
        assert job["state"] == "succeeded" and job["delivery_id"], job
    assert len(emulators.hub.received("webhook")) == 1


async def test_wait_seconds_over_the_limit_is_422(seeded: httpx.AsyncClient) -> None:
    resp = await seeded.post(ROUTE, json={**WEBHOOK, "wait_seconds": 121})
    assert resp.status_code == 422 and "wait_seconds" in resp.text


async def test_the_servers_worker_writes_the_note_of_a_job_it_runs(
    make_client: AppFactory, emulators: EmulatorServer
) -> None:
    """``"wait": false``: the server's in-process worker runs the job. It shares the server's delivery
    runtime, so it knows the integration's completion note: ``last_delivery`` is written with the record."""
    from .conftest import SEED_EVENT, SPLUNK_INTEGRATION

    async with make_client(worker=True) as client:
        assert (await client.post("/integrations", json=SPLUNK_INTEGRATION)).status_code in (200, 201)
        resp = await client.post("/integrations/splunk/deliver", json={"event": SEED_EVENT, "wait": False})
        body = _accepted(resp)
        job = await _job_when(client, body["job_id"], "succeeded", within=60)
        assert job["state"] == "succeeded" and job["delivery_id"], job
        last = (await client.get("/integrations/splunk")).json()["last_delivery"]
        assert last["delivery_id"] == job["delivery_id"] and last["success"] is True
