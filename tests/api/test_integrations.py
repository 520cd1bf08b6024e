"""``/integrations``: records, validation, and delivering through an active integration."""

from __future__ import annotations

import json

import httpx
import pytest

from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer

from .conftest import SEED_EVENT, SPLUNK_INTEGRATION, AppFactory, assert_error


async def test_seed_register_then_deliver(client: httpx.AsyncClient, emulators: EmulatorServer) -> None:
    resp = await client.post("/integrations", json=SPLUNK_INTEGRATION)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {k: body[k] for k in SPLUNK_INTEGRATION} == SPLUNK_INTEGRATION
    assert body["created_at"] and body["updated_at"]

    resp = await client.post("/integrations/splunk/deliver", json={"event": SEED_EVENT, "retries": 1})
    assert resp.status_code == 200, resp.text
    record = resp.json()
    assert record["schema_version"] == "cavra.connector.delivery.v1"
    assert record["success"] is True
    assert record["metadata_kind"] == "integration-delivery"
    [item] = record["deliveries"]
    assert item["provider"] == "splunk" and item["status_code"] == 200 and item["attempt_count"] == 1
    assert item["request"]["headers"]["Authorization"].endswith("**REDACTED**")
    # the emulator really received the event
    [received] = emulators.hub.received("splunk")
    assert json.loads(received.body)["event"]["session_id"] == "demo-session"

    # persisted, with its attempts, under the id the answer gave
    stored = await client.get(f"/deliveries/{record['id']}")
    assert stored.status_code == 200
    doc = stored.json()
    assert doc["metadata_kind"] == "integration-delivery"
    assert doc["integration_id"] == "splunk"
    assert doc["deliveries"][0]["attempts"][0]["status_code"] == 200

    # the integration remembers its last delivery
    again = (await client.get("/integrations/splunk")).json()
    assert again["last_delivery"]["delivery_id"] == record["id"]
    assert again["last_delivery"]["success"] is True


async def test_list_get_update_delete(client: httpx.AsyncClient) -> None:
    assert (await client.get("/integrations")).json() == {"items": [], "count": 0}
    await client.post("/integrations", json=SPLUNK_INTEGRATION)
    await client.post("/integrations", json={"integration_id": "chat", "provider": "slack"})
    listing = (await client.get("/integrations")).json()
    assert listing["count"] == 2
    chat = next(i for i in listing["items"] if i["integration_id"] == "chat")
    assert chat["category"] == "chatops"  # defaulted from the provider
    assert chat["status"] == "active" and chat["health_status"] == "unknown"

    updated = await client.post("/integrations", json={**SPLUNK_INTEGRATION, "health_status": "degraded"})
    assert updated.status_code == 200
    assert (await client.get("/integrations/splunk")).json()["health_status"] == "degraded"

    deleted = await client.delete("/integrations/splunk", headers={"X-CAVRA-Request": "1"})
    assert deleted.json() == {"deleted": True, "id": "splunk"}
    assert_error(await client.get("/integrations/splunk"), 404, "not_found")
    assert_error(
        await client.delete("/integrations/splunk", headers={"X-CAVRA-Request": "1"}), 404, "not_found"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SPLUNK_INTEGRATION, "provider": "nosuch"}, "unknown provider 'nosuch'"),
        ({**SPLUNK_INTEGRATION, "category": "itsm"}, "does not match provider 'splunk'"),
        ({**SPLUNK_INTEGRATION, "category": "email"}, "body.category"),
        ({**SPLUNK_INTEGRATION, "status": "on"}, "body.status"),
        ({**SPLUNK_INTEGRATION, "health_status": "great"}, "body.health_status"),
        ({**SPLUNK_INTEGRATION, "integration_id": "bad id/x"}, "body.integration_id"),
        ({**SPLUNK_INTEGRATION, "colour": "red"}, "body.colour: unknown field"),
        ({"provider": "splunk"}, "body.integration_id: field required"),
        ([1, 2], "body"),
    ],
)
async def test_invalid_integration_is_422_naming_the_field(
    client: httpx.AsyncClient, body: object, field: str
) -> None:
    err = assert_error(await client.post("/integrations", json=body), 422)
    assert field in err["detail"]
    assert (await client.get("/integrations")).json()["count"] == 0


async def test_inactive_integration_does_not_deliver(
    client: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    await client.post("/integrations", json={**SPLUNK_INTEGRATION, "status": "inactive"})
    err = assert_error(
        await client.post("/integrations/splunk/deliver", json={"event": SEED_EVENT}), 409, "conflict"
    )
    assert "inactive" in err["detail"]
    assert emulators.hub.received("splunk") == []


async def test_unknown_integration_is_404(client: httpx.AsyncClient) -> None:
    assert_error(
        await client.post("/integrations/ghost/deliver", json={"event": SEED_EVENT}), 404, "not_found"
    )
    assert_error(await client.get("/deliveries/dlv_000000000000"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"event": SEED_EVENT, "retries": 11}, "body.retries"),
        ({"event": SEED_EVENT, "retries": -1}, "body.retries"),
        ({"event": SEED_EVENT, "retries": "x"}, "body.retries"),
        ({"event": SEED_EVENT, "timeout_seconds": 0}, "body.timeout_seconds"),
        ({"event": SEED_EVENT, "timeout_seconds": 301}, "body.timeout_seconds"),
        ({"event": "text"}, "body.event"),
        ({"retries": 1}, "body.event: field required"),
        ({"event": {"session_id": "s"}}, "event_type"),
        ({"event": SEED_EVENT, "providers": ["nosuch"]}, "unknown provider 'nosuch'"),
        ({"event": SEED_EVENT, "providers": []}, "body.providers"),
        ({"event": SEED_EVENT, "extra": 1}, "body.extra: unknown field"),
    ],
)
async def test_invalid_delivery_request_is_422(
    client: httpx.AsyncClient, emulators: EmulatorServer, body: dict[str, object], fragment: str
) -> None:
    await client.post("/integrations", json=SPLUNK_INTEGRATION)
    err = assert_error(await client.post("/integrations/splunk/deliver", json=body), 422)
    assert fragment in err["detail"]
    assert emulators.hub.received("splunk") == []


async def test_failed_delivery_is_a_200_record_with_the_error(
    client: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    await client.post("/integrations", json=SPLUNK_INTEGRATION)
    emulators.hub.add_fault("splunk", Fault(status=503, count=5))
    resp = await client.post("/integrations/splunk/deliver", json={"event": SEED_EVENT, "retries": 2})
    assert resp.status_code == 200
    record = resp.json()
    assert record["success"] is False
    [item] = record["deliveries"]
    assert item["attempt_count"] == 3 and item["status_code"] == 503
    assert "gave up after 3 attempts" in item["error"]
    assert (await client.get("/integrations/splunk")).json()["last_delivery"]["success"] is False


async def test_timeout_seconds_applies_to_the_attempt(
    client: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    await client.post("/integrations", json=SPLUNK_INTEGRATION)
    emulators.hub.add_fault("splunk", Fault(delay=2.0, count=1))
    resp = await client.post(
        "/integrations/splunk/deliver", json={"event": SEED_EVENT, "retries": 0, "timeout_seconds": 0.3}
    )
    record = resp.json()
    assert record["success"] is False
    assert record["deliveries"][0]["attempts"][0]["duration_ms"] < 1500


async def test_provider_not_in_config_is_422(make_client: AppFactory, tmp_path: object) -> None:
    async with make_client(environ={}) as c:  # every *_env variable unset: every connector fails to load
        await c.post("/integrations", json=SPLUNK_INTEGRATION)
        err = assert_error(await c.post("/integrations/splunk/deliver", json={"event": SEED_EVENT}), 422)
        assert "SPLUNK_HEC_TOKEN" in err["detail"] or "SPLUNK_HEC_URL" in err["detail"]


async def test_no_connector_config_is_503(make_client: AppFactory) -> None:
    async with make_client(config_path=None, environ={}) as c:
        await c.post("/integrations", json=SPLUNK_INTEGRATION)
        err = assert_error(await c.post("/integrations/splunk/deliver", json={"event": SEED_EVENT}), 503)
        assert "CAVRA_CONNECTOR_CONFIG" in err["detail"]
        status = (await c.get("/connectors")).json()
        assert status["source"] is None and status["providers"] == {}


async def test_providers_overrides_the_integration_provider(
    client: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    await client.post("/integrations", json=SPLUNK_INTEGRATION)
    resp = await client.post(
        "/integrations/splunk/deliver",
        json={"event": SEED_EVENT, "retries": 0, "providers": ["slack", "splunk"]},
    )
    record = resp.json()
    assert resp.status_code == 200 and record["success"] is True
    assert sorted(d["provider"] for d in record["deliveries"]) == ["slack", "splunk"]
    assert emulators.hub.received("slack") and emulators.hub.received("splunk")


def test_request_schema_matches_the_service_model() -> None:
    """The API documents the same enumerations the service validates (one truth, checked)."""
    from cavra.api.schemas import IntegrationIn
    from cavra.governance.integrations import Integration

    for name in ("category", "status", "health_status"):
        ours = IntegrationIn.model_json_schema()["properties"][name]
        theirs = Integration.model_json_schema()["properties"][name]
        assert ours == theirs, name
    assert set(IntegrationIn.model_fields) == set(Integration.model_fields) - {"last_delivery"}
