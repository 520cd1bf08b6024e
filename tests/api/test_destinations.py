"""``/destinations``, destination names where providers are named, and integrations bound to destinations:
the app on the emulators (the demo config has two Slack destinations: ``slack`` and ``slack-release``)."""

from __future__ import annotations

import json

import httpx

from cavra.emulators.server import EmulatorServer
from cavra.emulators.slack import RELEASE_HOOK

from .conftest import SEED_EVENT, TOKENS, AppFactory, assert_error, bearer, token_set


def _slack_hooks(emulators: EmulatorServer) -> list[str]:
    return [r.path for r in emulators.hub.received("slack")]


async def test_deliver_to_a_second_destination_of_a_provider(
    client: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    body = {
        "integration_id": "release-room",
        "provider": "slack-release",
    }  # a destination where a provider was
    created = (await client.post("/integrations", json=body)).json()
    assert (created["provider"], created["destination"], created["category"]) == (
        "slack",
        "slack-release",
        "chatops",
    )
    resp = await client.post("/integrations/release-room/deliver", json={"event": SEED_EVENT})
    assert resp.status_code == 200, resp.text
    record = resp.json()
    (item,) = record["deliveries"]
    assert (item["provider"], item["destination"], item["success"]) == ("slack", "slack-release", True)
    assert _slack_hooks(emulators) == [f"/slack/services/{RELEASE_HOOK}"]
    assert RELEASE_HOOK not in json.dumps(record)  # the hook URL is the credential


async def test_release_delivery_to_destinations_and_history_by_either(
    seeded: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    resp = await seeded.post(
        "/rollback-executions/rre_prod/deliver", json={"provider": "slack,slack-release"}
    )
    assert resp.status_code == 200, resp.text
    assert sorted(d["destination"] for d in resp.json()["deliveries"]) == ["slack", "slack-release"]
    assert len(emulators.hub.received("slack")) == 2
    by_dest = (await seeded.get("/release-connector-deliveries?destination=slack-release")).json()
    assert [(i["provider"], i["destination"]) for i in by_dest["items"]] == [("slack", "slack-release")]
    by_provider = (await seeded.get("/release-connector-deliveries?provider=slack")).json()
    assert sorted(i["destination"] for i in by_provider["items"]) == ["slack", "slack-release"]
    board = (await seeded.get("/release-connector-deliveries/dashboard")).json()
    assert sorted(d["destination"] for d in board["destinations"]) == ["slack", "slack-release"]
    assert [p["provider"] for p in board["providers"]] == ["slack"]


async def test_an_integration_binds_to_a_destination(
    client: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    plain = (await client.post("/integrations", json={"integration_id": "chat", "provider": "slack"})).json()
    assert plain["destination"] == "slack"  # default: the destination named like its provider
    bound = {"integration_id": "rel", "provider": "slack", "destination": "slack-release"}
    assert (await client.post("/integrations", json=bound)).json()["destination"] == "slack-release"
    await client.post("/integrations/rel/deliver", json={"event": SEED_EVENT})
    assert _slack_hooks(emulators) == [f"/slack/services/{RELEASE_HOOK}"]
    wrong = {"integration_id": "x", "provider": "splunk", "destination": "slack-release"}
    err = assert_error(await client.post("/integrations", json=wrong), 422)
    assert "'slack-release' is a slack destination, not a splunk one" in err["detail"]
    unknown = {"integration_id": "x", "provider": "slack", "destination": "slack-soc"}
    err = assert_error(await client.post("/integrations", json=unknown), 422)
    assert "field destination: 'slack-soc' is not a destination" in err["detail"]


async def test_destinations_list_health_and_breaker_without_secrets(
    client: httpx.AsyncClient, emulators: EmulatorServer
) -> None:
    await client.post("/integrations", json={"integration_id": "rel", "provider": "slack-release"})
    await client.post("/integrations/rel/deliver", json={"event": SEED_EVENT})
    resp = await client.get("/destinations")
    assert resp.status_code == 200, resp.text
    items = {d["name"]: d for d in resp.json()["items"]}
    assert {"slack", "slack-release", "splunk", "webhook"} <= set(items)
    release = items["slack-release"]
    assert (release["provider"], release["category"], release["enabled"], release["loaded"]) == (
        "slack",
        "chatops",
        True,
        True,
    )
    assert release["health"]["status"] == "healthy" and release["health"]["deliveries"] == 1
    assert items["slack"]["health"]["status"] == "unknown"
    assert release["breaker"]["state"] == "closed"
    text = resp.text
    assert "/slack/services/" not in text and "whsec_" not in text and emulators.base_url not in text


async def test_destination_test_sends_a_marked_event_and_never_counts(
    make_client: AppFactory, emulators: EmulatorServer
) -> None:
    async with make_client(tokens=token_set()) as client:
        denied = await client.post("/destinations/slack-release/test", headers=bearer("operator"))
        assert_error(denied, 403)
        resp = await client.post("/destinations/slack-release/test", headers=bearer("admin"))
        assert resp.status_code == 200, resp.text
        record = resp.json()
        assert record["verdict"] == "delivered" and record["metadata_kind"] == "destination-test-delivery"
        assert record["event_type"] == "cavra.destination.test"
        (item,) = record["deliveries"]
        assert item["destination"] == "slack-release" and item["attempts"][0]["request"]["url"].endswith(
            "**REDACTED**"
        )
        (sent,) = emulators.hub.received("slack")
        assert b"destination test" in sent.body
        board = (
            await client.get("/release-connector-deliveries/dashboard", headers=bearer("auditor"))
        ).json()
        assert board["totals"]["deliveries"] == 0
        listed = (await client.get("/destinations", headers=bearer("auditor"))).json()["items"]
        assert next(d for d in listed if d["name"] == "slack-release")["health"]["deliveries"] == 0
        missing = await client.post("/destinations/slack-soc/test", headers=bearer("admin"))
        assert "slack-soc" in assert_error(missing, 404)["detail"]
        assert TOKENS["admin"] not in resp.text
