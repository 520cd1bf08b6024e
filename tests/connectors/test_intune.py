"""The Intune connector: Entra token, upsert by displayName, group assignment, read-back proof."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, Next, Reject, Response, TokenCache
from cavra.connectors.endpoint.export import parse_export
from cavra.connectors.flow import FlowState
from cavra.connectors.intune import (
    IntuneConnector,
    IntuneFlow,
    IntuneSettings,
    configuration_body,
    filter_query,
    graph_error,
    payload_configuration,
)
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators import entra, graph
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.secrets import Secret
from cavra.transport import AiohttpTransport
from tests.connectors.kit import publication_event

CLIENT_ID = "4d7e1f0a-8b2c-4c3d-9e5f-6a7b8c9d0e1f"
CLIENT_SECRET = "intuneCanarySecret~Rk3Vn8Wq1"
GROUP = graph.DEMO_GROUP_ID
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = IntuneConnector()
EVENT = publication_event("evt_intune_test_0001")
CONFIGS = "/graph/v1.0/deviceManagement/deviceConfigurations"


def overrides(**graph_settings: Any) -> dict[str, dict[str, Any]]:
    clients = entra.Settings().clients
    clients[CLIENT_ID] = {"secret": CLIENT_SECRET, "roles": {entra.GRAPH_AUDIENCE: [entra.INTUNE_ROLE]}}
    return {"entra": {"clients": clients}, "graph": graph_settings}


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(providers=["entra", "graph"], overrides=overrides()) as srv:
        yield srv


def target(srv: EmulatorServer | None, **extra: Any) -> Target:
    base = srv.base_url if srv is not None else extra.pop("base")
    raw = {
        "url": base + "/graph",
        "authority_url": base + "/entra",
        "tenant_id": entra.DEMO_TENANT_ID,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "group_id": GROUP,
        "allow_http": True,
        **extra,
    }
    return target_from_mapping("intune", {k: v for k, v in raw.items() if v is not None})


def steps(delivery: Any) -> list[tuple[str, int | None, str]]:
    return [(a.step, a.status_code, a.verdict) for a in delivery.attempts]


def objects(srv: EmulatorServer) -> dict[str, dict[str, Any]]:
    return graph.state(srv.hub).collection("deviceConfigurations")


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), quote_plus(value), base64.b64encode(value.encode()).decode()]


# -- unit ------------------------------------------------------------------------------------------------
def test_body_is_a_valid_graph_object_carrying_the_configuration() -> None:
    export = parse_export(EVENT, "intune")
    body = configuration_body(export)
    assert graph.validate(body, "deviceConfigurations", "v1.0") is None  # the emulator's own checks
    assert body["displayName"] == "CAVRA eme_kit"
    config = payload_configuration(body)
    assert config is not None and config["export_id"] == "eme_kit"


def test_filter_quotes_odata_strings() -> None:
    query = filter_query("CAVRA o'neil")
    assert parse_qs(query)["$filter"] == ["displayName eq 'CAVRA o''neil'"]


def test_scope_follows_the_graph_cloud() -> None:
    settings = IntuneSettings.model_validate(
        {
            "url": "https://graph.microsoft.us",
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": "secret-1",
            "group_id": GROUP,
        }
    )
    req = CONNECTOR.prepare(EVENT, settings, Context(delivery_key="dk"), None)
    assert req.step == "token"
    assert req.url == "https://login.microsoftonline.com/t/oauth2/v2.0/token"
    assert parse_qs(req.body.decode())["scope"] == ["https://graph.microsoft.us/.default"]


def interpret(step: str, status: int, body: Any, state: FlowState) -> Any:
    s = IntuneSettings.model_validate(
        {"tenant_id": "t", "client_id": "c", "client_secret": "secret-1", "group_id": GROUP}
    )
    req = CONNECTOR.prepare(EVENT, s, Context(delivery_key="dk"), state)
    raw = json.dumps(body).encode() if body is not None else b""
    return CONNECTOR.interpret(req, Response(status, {}, raw), s, Context(delivery_key="dk"), state)


def test_search_result_chooses_create_or_update() -> None:
    tok = Secret("tok-1234")
    verdict = interpret("search", 200, {"value": []}, FlowState(step="search", token=tok))
    assert isinstance(verdict, Next) and verdict.state.step == "create"
    name = "CAVRA eme_kit"
    item = {"id": "abc", "displayName": name, "@odata.type": "#microsoft.graph.macOSCustomConfiguration"}
    verdict = interpret("search", 200, {"value": [item]}, FlowState(step="search", token=tok))
    assert isinstance(verdict, Next) and (verdict.state.step, verdict.state.remote_id) == ("update", "abc")
    other = {"id": "abc", "displayName": name, "@odata.type": "#microsoft.graph.windows10CustomConfiguration"}
    verdict = interpret("search", 200, {"value": [other]}, FlowState(step="search", token=tok))
    assert isinstance(verdict, Reject) and "another type" in verdict.reason


def test_search_checks_the_names_itself() -> None:
    # Graph may ignore a $filter it does not support and return every object: never update another one
    tok = Secret("tok-1234")
    mac = "#microsoft.graph.macOSCustomConfiguration"
    older = {
        "id": "old",
        "displayName": "Wi-Fi for sales",
        "@odata.type": mac,
        "createdDateTime": "2020-01-01",
    }
    near = {"id": "near", "displayName": "cavra eme_kit", "@odata.type": mac, "createdDateTime": "2021-01-01"}
    ours = {"id": "ours", "displayName": "CAVRA eme_kit", "@odata.type": mac, "createdDateTime": "2026-01-01"}
    verdict = interpret("search", 200, {"value": [older, near]}, FlowState(step="search", token=tok))
    assert isinstance(verdict, Next) and verdict.state.step == "create"
    verdict = interpret("search", 200, {"value": [older, ours, near]}, FlowState(step="search", token=tok))
    assert isinstance(verdict, Next) and (verdict.state.step, verdict.state.remote_id) == ("update", "ours")


def test_search_follows_a_linked_page_on_the_same_host_only() -> None:
    tok = Secret("tok-1234")
    link = "https://graph.microsoft.com/v1.0/deviceManagement/deviceConfigurations?$skiptoken=2"
    page = {"value": [{"id": "x", "displayName": "other"}], "@odata.nextLink": link}
    verdict = interpret("search", 200, page, FlowState(step="search", token=tok))
    assert isinstance(verdict, Next) and isinstance(verdict.state, IntuneFlow)
    assert (verdict.state.step, verdict.state.next_link, verdict.state.name) == (
        "search",
        link,
        "CAVRA eme_kit",
    )
    s = IntuneSettings.model_validate(
        {"tenant_id": "t", "client_id": "c", "client_secret": "secret-1", "group_id": GROUP}
    )
    second = CONNECTOR.prepare(EVENT, s, Context(delivery_key="dk"), verdict.state)
    assert (second.step, second.url) == ("search", link)
    ours = {
        "id": "o",
        "displayName": "CAVRA eme_kit",
        "@odata.type": "#microsoft.graph.macOSCustomConfiguration",
    }
    found = CONNECTOR.interpret(
        second,
        Response(200, {}, json.dumps({"value": [ours]}).encode()),
        s,
        Context(delivery_key="dk"),
        verdict.state,
    )
    assert isinstance(found, Next) and (found.state.step, found.state.remote_id) == ("update", "o")
    assert isinstance(found.state, IntuneFlow) and found.state.next_link is None
    elsewhere = {"value": [], "@odata.nextLink": "https://evil.example/v1.0/deviceManagement/x"}
    verdict = interpret("search", 200, elsewhere, FlowState(step="search", token=tok))
    assert isinstance(verdict, Reject) and "another host" in verdict.reason


def test_intune_error_messages_are_json_strings() -> None:
    inner = {
        "_version": 3,
        "Message": "Application is not authorized to perform this operation. Application must have one of "
        "the following scopes: DeviceManagementConfiguration.ReadWrite.All - Operation ID (for customer "
        "support): 00000000-0000-0000-0000-000000000000 - Activity ID: 5c977c7f-ae03-4be0-82c2-408eafb65caf "
        "- Url: https://fef.msub05.manage.microsoft.com/DeviceConfiguration_1911/x",
        "CustomApiErrorPhrase": "",
    }
    body = {"error": {"code": "Forbidden", "message": json.dumps(inner, indent=2).replace("\n", "\r\n")}}
    reason = graph_error(Response(403, {}, json.dumps(body).encode()))
    assert reason == (
        "HTTP 403 Forbidden: Application is not authorized to perform this operation. Application must have "
        "one of the following scopes: DeviceManagementConfiguration.ReadWrite.All "
        "(Activity ID: 5c977c7f-ae03-4be0-82c2-408eafb65caf)"
    )
    plain = {"error": {"code": "BadRequest", "message": "The property 'x' does not exist on type 'y'."}}
    assert graph_error(Response(400, {}, json.dumps(plain).encode())).endswith("does not exist on type 'y'.")


def test_verify_needs_the_digest_and_the_group() -> None:
    export = parse_export(EVENT, "intune")
    body = configuration_body(export)
    state = FlowState(step="verify", remote_id="abc", digest=export.digest(), token=Secret("tok-1234"))
    assigned = {**body, "id": "abc", "assignments": [{"target": {"groupId": GROUP}}]}
    verdict = interpret("verify", 200, assigned, state)
    assert isinstance(verdict, Delivered) and verdict.proof is not None and GROUP in verdict.proof
    verdict = interpret("verify", 200, {**assigned, "assignments": []}, state)
    assert isinstance(verdict, Reject) and "not assigned" in verdict.reason
    other = configuration_body(parse_export({**EVENT, "channel": "beta"}, "intune"))
    verdict = interpret("verify", 200, {**other, "assignments": assigned["assignments"]}, state)
    assert isinstance(verdict, Reject) and "differs" in verdict.reason


def test_403_names_the_permission() -> None:
    body = {"error": {"code": "accessDenied", "message": "no"}}
    verdict = interpret("search", 403, body, FlowState(step="search", token=Secret("tok-1234")))
    assert isinstance(verdict, Reject)
    assert "DeviceManagementConfiguration.ReadWrite.All" in verdict.reason


# -- against the emulators -------------------------------------------------------------------------------
async def test_happy_path_creates_assigns_and_proves(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert d.status == "delivered", d.error
    assert steps(d) == [
        ("token", 200, "next"),
        ("search", 200, "next"),
        ("create", 201, "next"),
        ("assign", 200, "next"),
        ("verify", 200, "delivered"),
    ]
    ((item_id, item),) = objects(server).items()
    assert d.remote_id == item_id
    assert d.proof is not None and d.proof.startswith("read back: Intune deviceConfiguration")
    assert item["@odata.type"] == "#microsoft.graph.macOSCustomConfiguration"
    assert payload_configuration(item) is not None
    assert graph.state(server.hub).assignments[item_id][0]["target"]["groupId"] == GROUP
    form = parse_qs(server.hub.received("entra")[0].body.decode())
    assert form["scope"] == ["https://graph.microsoft.com/.default"]
    sent = server.hub.received("graph")
    assert parse_qs(sent[0].query)["$filter"] == ["displayName eq 'CAVRA eme_kit'"]
    assert [r.method for r in sent] == ["GET", "POST", "POST", "GET"]
    assert sent[2].path == f"{CONFIGS}/{item_id}/assign"
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in sent)


async def test_republish_updates_in_place(server: EmulatorServer, transport: AiohttpTransport) -> None:
    tokens = TokenCache()
    first = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    newer = {**publication_event("evt_intune_test_0002"), "release": "2026.11.2"}
    second = await deliver_one(target(server), newer, policy=POLICY, transport=transport, tokens=tokens)
    assert first.success and second.success, (first.error, second.error)
    assert steps(second) == [
        ("search", 200, "next"),
        ("update", 200, "next"),
        ("assign", 200, "next"),
        ("verify", 200, "delivered"),
    ]
    assert second.remote_id == first.remote_id
    assert len(objects(server)) == 1
    config = payload_configuration(objects(server)[str(first.remote_id)])
    assert config is not None and config["release"] == "2026.11.2"
    assert len(server.hub.received("entra")) == 1


async def test_graph_write_throttle_429_is_waited_out(transport: AiohttpTransport) -> None:
    async with EmulatorServer(
        providers=["entra", "graph"], overrides=overrides(write_limit=2, write_window=1.0)
    ) as srv:
        tokens = TokenCache()
        assert (
            await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
        ).success
        started = time.monotonic()
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
        assert d.success, d.error
        throttled = [a for a in d.attempts if a.status_code == 429]
        assert throttled and throttled[0].verdict == "retry"
        assert throttled[0].retry_after is not None and throttled[0].retry_after >= 1
        assert time.monotonic() - started >= throttled[0].retry_after
        assert len(objects(srv)) == 1


async def test_expired_token_is_refetched_once(server: EmulatorServer, transport: AiohttpTransport) -> None:
    tokens = TokenCache()
    assert (
        await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    ).success
    for issued in server.hub.tokens.values():
        issued.expires_at = time.time() - 1
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    assert d.success, d.error
    assert steps(d)[:3] == [("search", 401, "next"), ("token", 200, "next"), ("search", 200, "next")]
    assert len(server.hub.received("entra")) == 2


async def test_invalid_client_secret_is_rejected_once(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(
        target(server, client_secret="not-the-secret"), EVENT, policy=POLICY, transport=transport
    )
    assert d.status == "failed"
    assert steps(d) == [("token", 401, "reject")]
    assert d.error is not None and "invalid_client" in d.error
    assert server.hub.received("graph") == []


async def test_application_without_the_role_is_403_not_retried(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    t = target(server, client_id=entra.NOROLE_CLIENT_ID, client_secret=entra.NOROLE_CLIENT_SECRET)
    d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert steps(d) == [("token", 200, "next"), ("search", 403, "reject")]
    assert d.error is not None and "ReadWrite.All" in d.error


async def test_missing_settings_fail_before_sending(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    for missing, name in (
        (dict(group_id=None), "group_id"),
        (dict(client_secret=None), "client_secret"),
        (dict(tenant_id=None), "tenant_id"),
    ):
        d = await deliver_one(target(server, **missing), EVENT, policy=POLICY, transport=transport)
        assert d.status == "failed" and d.attempt_count == 0
        assert d.error is not None and f"intune: {name} is required" in d.error
    d = await deliver_one(target(server), {**EVENT, "artifacts": None}, policy=POLICY, transport=transport)
    assert d.attempt_count == 0 and d.error is not None and "artifacts" in d.error
    assert server.hub.received() == []


async def test_5xx_retried_then_delivered(server: EmulatorServer, transport: AiohttpTransport) -> None:
    server.hub.add_fault("graph", Fault(status=503, count=1))
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert steps(d)[1:3] == [("search", 503, "retry"), ("search", 200, "next")]


async def test_429_retry_after_is_honoured(server: EmulatorServer, transport: AiohttpTransport) -> None:
    server.hub.add_fault("graph", Fault(status=429, count=1, headers={"Retry-After": "1"}))
    started = time.monotonic()
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert time.monotonic() - started >= 1.0
    assert d.attempts[1].retry_after == 1.0 and d.attempts[2].waited_ms >= 1000  # the wait before it


async def test_4xx_is_not_retried(server: EmulatorServer, transport: AiohttpTransport) -> None:
    body = json.dumps({"error": {"code": "invalidRequest", "message": "Bad filter"}})
    server.hub.add_fault("graph", Fault(status=400, count=1, body=body))
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert steps(d) == [("token", 200, "next"), ("search", 400, "reject")]
    assert d.error is not None and "invalidRequest: Bad filter" in d.error


async def test_an_ignored_filter_does_not_update_somebody_elses_configuration(
    transport: AiohttpTransport,
) -> None:
    async with EmulatorServer(
        providers=["entra", "graph"], overrides=overrides(ignore_filter=True, page_size=2)
    ) as srv:
        mac = "#microsoft.graph.macOSCustomConfiguration"
        payload = base64.b64encode(b"<plist/>").decode()
        for i in range(3):  # older objects, not ours, that an ignored filter returns first
            graph.state(srv.hub).collection("deviceConfigurations")[f"other-{i}"] = {
                "id": f"other-{i}",
                "@odata.type": mac,
                "displayName": f"Wi-Fi profile {i}",
                "payloadName": "x",
                "payload": payload,
                "createdDateTime": f"2020-01-0{i + 1}T00:00:00Z",
            }
        first = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
        assert first.status == "delivered", first.error
        # two pages of other objects were read, none of them touched; ours was created
        assert [s for s, _, _ in steps(first)] == ["token", "search", "search", "create", "assign", "verify"]
        others = [o for k, o in objects(srv).items() if k.startswith("other-")]
        assert all(o["payload"] == payload and "version" not in o for o in others)
        again = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
        assert again.status == "delivered", again.error
        assert again.remote_id == first.remote_id and len(objects(srv)) == 4
        assert [s for s, _, _ in steps(again)][:3] == ["token", "search", "search"]
        assert again.detail["action"] == "updated"


async def test_a_tenant_without_the_graph_resource_is_explained(transport: AiohttpTransport) -> None:
    spec = overrides()
    spec["entra"]["resources"] = ["https://monitor.azure.com"]
    async with EmulatorServer(providers=["entra", "graph"], overrides=spec) as srv:
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert steps(d) == [("token", 400, "reject")]
    assert d.error is not None and "invalid_resource (AADSTS500011)" in d.error
    assert "resource in the scope is unknown" in d.error


async def test_forbidden_quotes_intunes_message(transport: AiohttpTransport) -> None:
    async with EmulatorServer(providers=["entra", "graph"], overrides=overrides()) as srv:
        t = target(srv, client_id=entra.NOROLE_CLIENT_ID, client_secret=entra.NOROLE_CLIENT_SECRET)
        d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert steps(d) == [("token", 200, "next"), ("search", 403, "reject")]
    assert d.error is not None and "HTTP 403 Forbidden: Application is not authorized" in d.error
    assert "_version" not in d.error and "Activity ID:" in d.error


async def test_timeout_is_retried(server: EmulatorServer, transport: AiohttpTransport) -> None:
    server.hub.add_fault("graph", Fault(delay=0.6, count=1))
    d = await deliver_one(target(server, timeout_seconds=0.2), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert d.attempts[1].status_code is None and d.attempts[1].verdict == "retry"


async def test_connection_refused(transport: AiohttpTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    d = await deliver_one(
        target(None, base=f"http://127.0.0.1:{port}"),
        EVENT,
        policy=RetryPolicy(retries=1, base_delay=0.01, max_delay=0.02),
        transport=transport,
    )
    assert d.status == "failed" and d.attempt_count == 2
    assert d.error is not None and "cannot connect" in d.error


async def test_no_secret_leaks(
    server: EmulatorServer, transport: AiohttpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = TokenCache()
    ok = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    issued = list(server.hub.tokens)
    echo = json.dumps({"error": {"code": "x", "message": " ".join([CLIENT_SECRET, *issued])}})
    server.hub.add_fault("graph", Fault(status=500, count=1, body=echo))
    bad = await deliver_one(
        target(server), EVENT, policy=RetryPolicy(retries=0), transport=transport, tokens=tokens
    )
    wrong = await deliver_one(
        target(server, client_secret=CLIENT_SECRET + "x"), EVENT, policy=POLICY, transport=transport
    )
    assert ok.success and not bad.success and not wrong.success
    texts = [json.dumps(d.to_dict()) for d in (ok, bad, wrong)] + [
        caplog.text,
        str(bad.error),
        str(wrong.error),
    ]
    for secret in [CLIENT_SECRET, CLIENT_SECRET + "x", *issued]:
        for form in _forms(secret):
            for text in texts:
                assert form not in text
