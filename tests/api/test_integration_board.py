"""``/integration-deliveries`` and its dashboard: SIEM and ChatOps deliveries raise the release alerts."""

from __future__ import annotations

import json

import httpx

from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer

from .conftest import SEED_EVENT

DATADOG = {"integration_id": "datadog", "provider": "datadog", "category": "siem", "status": "active"}
#: Datadog's answer to an API key it does not know (the emulator's own shape for it)
FORBIDDEN = json.dumps({"errors": [{"status": "403", "title": "Forbidden", "detail": "API key is invalid"}]})


async def test_three_datadog_403s_raise_a_provider_alert_on_the_integration_board(
    client: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    assert (await client.post("/integrations", json=DATADOG)).status_code == 200
    emulators.hub.add_fault("datadog", Fault(status=403, count=3, body=FORBIDDEN))
    for n in range(3):
        event = {**SEED_EVENT, "session_id": f"s-{n}"}
        resp = await client.post("/integrations/datadog/deliver", json={"event": event, "retries": 1})
        assert resp.status_code == 200, resp.text
        assert resp.json()["success"] is False
        assert resp.json()["deliveries"][0]["attempt_count"] == 1  # a 403 is not retried

    board = (await client.get("/integration-deliveries/dashboard")).json()
    assert board["schema_version"] == "cavra.integration.delivery_dashboard.v1"
    assert board["metadata_kinds"] == ["integration-delivery"]
    assert board["status"] == "critical"
    [failing] = [a for a in board["alerts"] if a["code"] == "provider_delivery_failing"]
    assert failing["provider"] == "datadog" and failing["level"] == "critical" and failing["count"] == 3
    assert "HTTP 403" in failing["message"]
    assert board["totals"] == {
        "deliveries": 3,
        "succeeded": 0,
        "failed": 3,
        "pending": 0,
        "attempts": 3,
        "providers": 1,
    }
    [dd] = board["providers"]
    assert dd["provider"] == "datadog" and dd["consecutive_failures"] == 3
    assert len(board["latest_failures"]) == 3

    # the release board does not see them
    release = (await client.get("/release-connector-deliveries/dashboard")).json()
    assert release["totals"]["deliveries"] == 0
    assert not [a for a in release["alerts"] if a["provider"] == "datadog"]

    page = (await client.get("/integration-deliveries", params={"provider": "datadog", "limit": 2})).json()
    assert page["total"] == 3 and page["count"] == 2 and page["next_cursor"]
    assert {i["metadata_kind"] for i in page["items"]} == {"integration-delivery"}
    rest = (await client.get("/integration-deliveries", params={"cursor": page["next_cursor"]})).json()
    assert rest["count"] == 1

    # the provider delivers again: the alert clears
    resp = await client.post("/integrations/datadog/deliver", json={"event": SEED_EVENT, "retries": 1})
    assert resp.json()["success"] is True
    board = (await client.get("/integration-deliveries/dashboard")).json()
    assert not [a for a in board["alerts"] if a["code"] == "provider_delivery_failing"]


async def test_integration_history_validates_its_filters(client: httpx.AsyncClient) -> None:
    resp = await client.get("/integration-deliveries", params={"limit": 0})
    assert resp.status_code == 422 and "limit" in resp.text
    resp = await client.get("/integration-deliveries", params={"cursor": "nonsense"})
    assert resp.status_code == 422 and "cursor" in resp.text
