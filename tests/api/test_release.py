"""Release records over the API: register, read, deliver, publish, and their history and dashboards."""

from __future__ import annotations

import json

import httpx
import pytest

from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer

from .conftest import EXPORT, PROMOTION, ROLLBACK, AppFactory, assert_error, load

WEBHOOK = {"provider": "webhook", "retries": 1}


async def test_register_and_read_records(client: httpx.AsyncClient) -> None:
    for route, path, key in (
        ("/promotion-executions", PROMOTION, "execution_id"),
        ("/rollback-executions", ROLLBACK, "execution_id"),
        ("/endpoint-management-exports", EXPORT, "export_id"),
    ):
        record = load(path)
        created = await client.post(route, json=record)
        assert created.status_code == 201, created.text
        got = await client.get(f"{route}/{record[key]}")
        assert got.status_code == 200
        assert got.json()[key] == record[key]
        assert got.json()["schema_version"] == record["schema_version"]
        assert_error(await client.get(f"{route}/{record[key]}_missing"), 404, "not_found")


@pytest.mark.parametrize(
    ("route", "path", "change", "fragment"),
    [
        ("/promotion-executions", PROMOTION, {"execution_id": "prod"}, "body.execution_id"),
        ("/promotion-executions", PROMOTION, {"status": "done"}, "body.status"),
        ("/promotion-executions", PROMOTION, {"started_at": "yesterday"}, "body.started_at"),
        ("/rollback-executions", ROLLBACK, {"reason": None}, "body.reason"),
        ("/endpoint-management-exports", EXPORT, {"providers": ["splunk"]}, "body.providers[0]"),
        ("/endpoint-management-exports", EXPORT, {"unknown_key": 1}, "body.unknown_key: unknown field"),
    ],
)
async def test_invalid_record_is_422_naming_the_field(
    client: httpx.AsyncClient, route: str, path: object, change: dict[str, object], fragment: str
) -> None:
    body = {**load(path), **change}  # type: ignore[arg-type]
    err = assert_error(await client.post(route, json=body), 422)
    assert fragment in err["detail"]


async def test_seed_release_deliveries(seeded: httpx.AsyncClient, emulators: EmulatorServer) -> None:
    client = seeded
    promo = await client.post("/promotion-executions/rpe_prod/audit-export/deliver", json=WEBHOOK)
    assert promo.status_code == 200, promo.text
    rollback = await client.post("/rollback-executions/rre_prod/deliver", json=WEBHOOK)
    publish = await client.post(
        "/endpoint-management-exports/eme_stable/publish", json={"provider": "jamf", "retries": 1}
    )
    for resp, kind in (
        (promo, "release-connector-delivery"),
        (rollback, "release-connector-delivery"),
        (publish, "endpoint-management-publication-delivery"),
    ):
        record = resp.json()
        assert resp.status_code == 200 and record["success"] is True, record
        assert record["schema_version"] == "cavra.connector.delivery.v1"
        assert record["metadata_kind"] == kind
    hooks = [json.loads(r.body) for r in emulators.hub.received("webhook")]
    assert len(hooks) == 2
    assert emulators.hub.received("jamf")

    history = (await client.get("/release-connector-deliveries", params={"provider": "webhook"})).json()
    assert history["total"] == 2 and {i["provider"] for i in history["items"]} == {"webhook"}
    assert (await client.get("/release-connector-deliveries?provider=webhook&success=false")).json()[
        "items"
    ] == []
    pubs = (await client.get("/endpoint-management-publications?provider=jamf&success=true")).json()
    assert pubs["total"] == 1 and pubs["items"][0]["delivery_id"] == publish.json()["id"]

    board = (await client.get("/release-connector-deliveries/dashboard")).json()
    assert board["status"] == "ok" and board["totals"]["succeeded"] == 2
    pboard = (await client.get("/endpoint-management-publications/dashboard")).json()
    assert pboard["totals"]["succeeded"] == 1 and pboard["exports"]["published"] == 1


async def test_failed_release_delivery_shows_in_history_and_alerts(
    seeded: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    emulators.hub.add_fault("webhook", Fault(status=500, count=10))
    resp = await seeded.post(
        "/rollback-executions/rre_prod/deliver", json={"provider": "webhook", "retries": 0}
    )
    assert resp.status_code == 200 and resp.json()["success"] is False
    failed = (await seeded.get("/release-connector-deliveries?provider=webhook&success=false")).json()
    assert failed["total"] == 1 and failed["items"][0]["status_code"] == 500
    board = (await seeded.get("/release-connector-deliveries/dashboard")).json()
    assert board["status"] == "critical"
    assert {a["code"] for a in board["alerts"]} >= {"rollback_delivery_failed"}


async def test_history_pages_with_cursor(seeded: httpx.AsyncClient) -> None:
    for n in range(3):  # three requests (each its own Idempotency-Key), three deliveries
        answer = await seeded.post(
            "/promotion-executions/rpe_prod/audit-export/deliver",
            json=WEBHOOK,
            headers={"Idempotency-Key": f"k-{n}"},
        )
        assert answer.status_code == 200
    first = (await seeded.get("/release-connector-deliveries", params={"limit": 2})).json()
    assert first["count"] == 2 and first["total"] == 3 and first["next_cursor"]
    second = (
        await seeded.get("/release-connector-deliveries", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert second["count"] == 1 and second["next_cursor"] is None
    ids = [i["delivery_id"] for i in first["items"] + second["items"]]
    assert len(set(ids)) == 3
    future = (
        await seeded.get("/release-connector-deliveries", params={"since": "2999-01-01T00:00:00Z"})
    ).json()
    assert future["total"] == 0
    by_type = (await seeded.get("/release-connector-deliveries", params={"event_type": "nope"})).json()
    assert by_type["total"] == 0


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=501", "success=maybe", "since=yesterday", "cursor=not-a-cursor", "status=lost"],
)
async def test_bad_history_query_is_422(client: httpx.AsyncClient, query: str) -> None:
    err = assert_error(await client.get(f"/release-connector-deliveries?{query}"), 422)
    assert query.split("=")[0] in err["detail"]


async def test_deliver_unknown_record_is_404(client: httpx.AsyncClient, emulators: EmulatorServer) -> None:
    assert_error(await client.post("/promotion-executions/rpe_nope/audit-export/deliver", json=WEBHOOK), 404)
    assert_error(await client.post("/rollback-executions/rre_nope/deliver", json=WEBHOOK), 404)
    assert_error(
        await client.post("/endpoint-management-exports/eme_nope/publish", json={"provider": "jamf"}), 404
    )
    assert emulators.hub.received() == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"provider": "nosuch", "retries": 1}, "unknown provider 'nosuch'"),
        ({"provider": "webhook", "retries": 99}, "body.retries"),
        ({"retries": 1}, "body.provider: field required"),
        ({"provider": ""}, "body.provider"),
    ],
)
async def test_bad_release_delivery_request_is_422(
    seeded: httpx.AsyncClient, body: dict[str, object], fragment: str
) -> None:
    err = assert_error(await seeded.post("/rollback-executions/rre_prod/deliver", json=body), 422)
    assert fragment in err["detail"]


async def test_unconfigured_provider_is_422(make_client: AppFactory, tmp_path: object) -> None:
    async with make_client(environ={}) as c:
        await c.post("/rollback-executions", json=load(ROLLBACK))
        err = assert_error(await c.post("/rollback-executions/rre_prod/deliver", json=WEBHOOK), 422)
        assert "webhook" in err["detail"]


async def test_publication_refused_is_422_and_recorded(
    make_client: AppFactory, tmp_path: object, emulators: EmulatorServer
) -> None:
    async with make_client(exports_dir=str(EXPORT.parent.parent)) as c:  # artifacts are not found there
        await c.post("/endpoint-management-exports", json=load(EXPORT))
        err = assert_error(
            await c.post("/endpoint-management-exports/eme_stable/publish", json={"provider": "jamf"}), 422
        )
        assert "publication refused" in err["detail"]
        failed = (await c.get("/endpoint-management-publications?success=false")).json()
        assert failed["total"] == 1
    assert emulators.hub.received("jamf") == []


async def test_delivery_finishes_when_the_client_goes_away(
    seeded: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    import asyncio

    emulators.hub.add_fault("webhook", Fault(delay=0.5, count=1))
    request = asyncio.create_task(seeded.post("/rollback-executions/rre_prod/deliver", json=WEBHOOK))
    while not emulators.hub.received("webhook"):
        await asyncio.sleep(0.01)
    request.cancel()  # the client disconnects while the provider still holds the request
    with pytest.raises(asyncio.CancelledError):
        await request
    deadline = asyncio.get_running_loop().time() + 60  # a bound for a hung test, not a speed check
    while True:
        page = (await seeded.get("/release-connector-deliveries?provider=webhook")).json()
        if page["total"] or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.01)
    assert page["total"] == 1 and page["items"][0]["success"] is True
