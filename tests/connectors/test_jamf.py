"""The Jamf connector: profile upsert by name, read-back proof, token cache and refresh, faults."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import (
    CachedToken,
    Context,
    Delivered,
    Next,
    PreparedRequest,
    Reject,
    Response,
    Retry,
    TokenCache,
)
from cavra.connectors.endpoint.export import configuration_from_mobileconfig, parse_export
from cavra.connectors.flow import FlowState
from cavra.connectors.jamf import JamfConnector, JamfSettings, profile_xml
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators import jamf as jamf_emulator
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.secrets import Secret
from cavra.transport import AiohttpTransport, SendOptions
from tests.connectors.kit import publication_event

CLIENT_ID = "cavra-leak-test-client"
CLIENT_SECRET = "jamfCanarySecret~7Qp2Xw9Lz4"
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = JamfConnector()
EVENT = publication_event("evt_jamf_test_0001")


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    overrides = {"jamf": {"clients": {CLIENT_ID: CLIENT_SECRET}}}
    async with EmulatorServer(providers=["jamf"], overrides=overrides) as srv:
        yield srv


def target(srv: EmulatorServer | None, **extra: Any) -> Target:
    url = srv.base_url + "/jamf" if srv is not None else extra.pop("url")
    raw = {"url": url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "allow_http": True, **extra}
    return target_from_mapping("jamf", {k: v for k, v in raw.items() if v is not None})


def settings(**extra: Any) -> JamfSettings:
    values = {"url": "https://jamf.example", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **extra}
    return JamfSettings.model_validate(values)


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), quote_plus(value), base64.b64encode(value.encode()).decode()]


def steps(delivery: Any) -> list[tuple[str, int | None, str]]:
    return [(a.step, a.status_code, a.verdict) for a in delivery.attempts]


def profiles(srv: EmulatorServer) -> dict[int, jamf_emulator.Profile]:
    return jamf_emulator.state(srv.hub).profiles


# -- unit ------------------------------------------------------------------------------------------------
def test_profile_body_is_what_the_emulator_accepts_and_carries_the_configuration() -> None:
    export = parse_export(EVENT, "jamf")
    body = profile_xml(export)
    root, error = jamf_emulator.parse_profile(body)
    assert error is None
    assert root is not None
    assert root.findtext("general/name") == "CAVRA eme_kit"
    assert root.find("scope") is None  # the administrator's scope is never overwritten
    config = configuration_from_mobileconfig((root.findtext("general/payloads") or "").encode())
    assert config is not None
    assert config["export_id"] == "eme_kit"
    assert config["artifacts"][0]["sha256"] == EVENT["artifacts"][0]["sha256"]
    assert export.digest() in (root.findtext("general/description") or "")


def test_first_step_fetches_a_token_then_uses_the_cached_one() -> None:
    s, ctx = settings(), Context(delivery_key="dk")
    req = CONNECTOR.prepare(EVENT, s, ctx, None)
    assert (req.step, req.method, req.url) == ("token", "POST", "https://jamf.example/api/v1/oauth/token")
    assert b"grant_type=client_credentials" in req.body
    ctx.tokens.put(
        CachedToken(
            "https://jamf.example/api/v1/oauth/token|" + CLIENT_ID + "|",
            Secret("tok-1234"),
            time.monotonic() + 600,
        )
    )
    req = CONNECTOR.prepare(EVENT, s, ctx, None)
    assert req.step == "lookup"
    assert req.url == "https://jamf.example/JSSResource/osxconfigurationprofiles/name/CAVRA%20eme_kit"
    assert isinstance(req.headers["Authorization"], Secret)
    assert req.new_secrets == (Secret("tok-1234"),)


def test_token_path_setting_is_used_and_validated() -> None:
    req = CONNECTOR.prepare(EVENT, settings(token_path="/api/oauth/token"), Context(delivery_key="dk"), None)
    assert req.url == "https://jamf.example/api/oauth/token"
    with pytest.raises(ValueError, match="token_path"):
        settings(token_path="api/oauth/token")


def interpret(step: str, status: int, body: bytes, state: FlowState, request_body: bytes = b"") -> Any:
    req_state = state
    req = CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk"), req_state)
    req = type(req)(
        method=req.method, url=req.url, headers=req.headers, body=request_body or req.body, step=step
    )
    return CONNECTOR.interpret(req, Response(status, {}, body), settings(), Context(delivery_key="dk"), state)


def test_duplicate_name_on_create_looks_up_again_once() -> None:
    tok = FlowState(step="create", token=Secret("tok-1234"), token_expires=time.monotonic() + 60)
    dup = b"<html><body><p>Error: Duplicate name</p></body></html>"
    verdict = interpret("create", 409, dup, tok)
    assert isinstance(verdict, Next)
    assert verdict.state.step == "lookup"
    again = interpret("create", 409, dup, verdict.state.go("create"))
    assert isinstance(again, Reject)
    assert "Duplicate name" in again.reason


def test_401_refreshes_a_cached_token_once_but_not_a_fresh_one() -> None:
    cached = FlowState(step="lookup")
    verdict = interpret("lookup", 401, b"", cached)
    assert isinstance(verdict, Next)
    assert verdict.state.refetch and verdict.state.refreshed
    assert isinstance(interpret("lookup", 401, b"", verdict.state), Reject)
    fresh = FlowState(step="lookup", token=Secret("tok-1234"), token_expires=time.monotonic() + 60)
    assert isinstance(interpret("lookup", 401, b"", fresh), Reject)
    expired = FlowState(step="lookup", token=Secret("tok-1234"), token_expires=time.monotonic() - 1)
    assert isinstance(interpret("lookup", 401, b"", expired), Next)


def test_verify_compares_the_configuration_digest() -> None:
    export = parse_export(EVENT, "jamf")
    body = profile_xml(export)
    state = FlowState(step="verify", remote_id="4", digest=export.digest(), token=Secret("tok-1234"))
    good = ET.fromstring(body)
    ET.SubElement(good.find("general"), "id").text = "4"  # type: ignore[arg-type]
    verdict = interpret("verify", 200, ET.tostring(good), state)
    assert isinstance(verdict, Delivered)
    assert verdict.remote_id == "4"
    assert verdict.proof is not None and export.digest() in verdict.proof
    other = parse_export({**EVENT, "release": "2026.12.0"}, "jamf")
    verdict = interpret("verify", 200, profile_xml(other), state)
    assert isinstance(verdict, Reject)
    assert "differs" in verdict.reason
    assert isinstance(interpret("verify", 200, b"<not xml", state), Reject)


def test_classic_5xx_is_retried_and_400_rejected_with_its_message() -> None:
    state = FlowState(step="create", token=Secret("tok-1234"))
    assert isinstance(interpret("create", 503, b"", state), Retry)
    verdict = interpret("create", 400, b"<p>Error: Problem with element</p>", state)
    assert isinstance(verdict, Reject)
    assert "Problem with element" in verdict.reason


# -- against the emulator --------------------------------------------------------------------------------
async def test_happy_path_creates_and_proves_the_profile(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert d.status == "delivered", d.error
    assert steps(d) == [
        ("token", 200, "next"),
        ("lookup", 404, "next"),
        ("create", 201, "next"),
        ("verify", 200, "delivered"),
    ]
    assert d.remote_id == "1"
    assert d.proof is not None and d.proof.startswith("read back: Jamf configuration profile 1")
    assert d.detail["action"] == "created"
    stored = profiles(server)[1]
    assert stored.name == "CAVRA eme_kit"
    sent = server.hub.received("jamf")
    token_form = sent[0].body.decode()
    assert sent[0].path == "/jamf/api/v1/oauth/token"
    assert "grant_type=client_credentials" in token_form
    assert sent[2].method == "POST" and sent[2].path.endswith("/osxconfigurationprofiles/id/0")
    assert sent[2].headers["Content-Type"].startswith("text/xml")
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in sent[1:])
    config = configuration_from_mobileconfig((stored.element.findtext("general/payloads") or "").encode())
    assert config is not None and config["release"] == "2026.11.1"


async def test_republish_updates_in_place(server: EmulatorServer, transport: AiohttpTransport) -> None:
    tokens = TokenCache()
    first = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    newer = {**publication_event("evt_jamf_test_0002"), "release": "2026.11.2"}
    second = await deliver_one(target(server), newer, policy=POLICY, transport=transport, tokens=tokens)
    assert first.success and second.success, (first.error, second.error)
    assert steps(second) == [("lookup", 200, "next"), ("update", 201, "next"), ("verify", 200, "delivered")]
    assert second.remote_id == first.remote_id == "1"
    assert second.detail["action"] == "updated"
    assert len(profiles(server)) == 1
    config = configuration_from_mobileconfig(
        (profiles(server)[1].element.findtext("general/payloads") or "").encode()
    )
    assert config is not None and config["release"] == "2026.11.2"
    assert (
        sum(r.path.endswith("/oauth/token") for r in server.hub.received("jamf")) == 1
    )  # the token was cached


async def test_expired_token_is_refetched_once(server: EmulatorServer, transport: AiohttpTransport) -> None:
    tokens = TokenCache()
    assert (
        await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    ).success
    for issued in server.hub.tokens.values():
        issued.expires_at = time.time() - 1  # Jamf considers it expired; our cache does not know yet
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    assert d.success, d.error
    assert steps(d) == [
        ("lookup", 401, "next"),
        ("token", 200, "next"),
        ("lookup", 200, "next"),
        ("update", 201, "next"),
        ("verify", 200, "delivered"),
    ]
    assert sum(r.path.endswith("/oauth/token") for r in server.hub.received("jamf")) == 2


async def test_token_expiring_during_the_flow_is_refetched_once(transport: AiohttpTransport) -> None:
    overrides = {"jamf": {"clients": {CLIENT_ID: CLIENT_SECRET}, "token_lifetime": 0.3}}
    async with EmulatorServer(providers=["jamf"], overrides=overrides) as srv:
        # the create is answered 503 with Retry-After 0.6: by the retry, the 0.3 s token has expired
        srv.hub.add_fault("jamf", Fault(count=2))  # token and look-up pass through
        srv.hub.add_fault("jamf", Fault(status=503, count=1, headers={"Retry-After": "0.6"}))
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
        assert d.success, d.error
        assert steps(d) == [
            ("token", 200, "next"),
            ("lookup", 404, "next"),
            ("create", 503, "retry"),
            ("create", 401, "next"),
            ("token", 200, "next"),
            ("create", 201, "next"),
            ("verify", 200, "delivered"),
        ]
        assert len(profiles(srv)) == 1


class RefuseAfterRefresh:
    """A transport that answers the second look-up with 401 itself: the new token is refused too."""

    def __init__(self, inner: AiohttpTransport) -> None:
        self.inner = inner
        self.lookups = 0

    async def send(self, request: PreparedRequest, options: SendOptions) -> Response:
        if request.step == "lookup":
            self.lookups += 1
            if self.lookups == 2:
                return Response(401, {"content-type": "text/html"}, b"<p>Error: Unauthorized</p>")
        return await self.inner.send(request, options)

    async def close(self) -> None:
        return None


async def test_refreshed_token_refused_again_fails_without_looping(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    tokens = TokenCache()
    assert (
        await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    ).success
    for issued in server.hub.tokens.values():
        issued.expires_at = time.time() - 1
    d = await deliver_one(
        target(server), EVENT, policy=POLICY, transport=RefuseAfterRefresh(transport), tokens=tokens
    )
    assert steps(d) == [("lookup", 401, "next"), ("token", 200, "next"), ("lookup", 401, "reject")]
    assert d.status == "failed"
    assert d.error is not None and "newly fetched" in d.error


async def test_short_lived_tokens_still_serve_their_flow(transport: AiohttpTransport) -> None:
    overrides = {"jamf": {"clients": {CLIENT_ID: CLIENT_SECRET}, "token_lifetime": 5}}
    async with EmulatorServer(providers=["jamf"], overrides=overrides) as srv:
        tokens = TokenCache()
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
        assert d.success, d.error
        assert [a.step for a in d.attempts].count("token") == 1
        # 5 s is inside the cache's safety margin: the next delivery fetches a new token up front
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
        assert d.success and d.attempts[0].step == "token"


async def test_invalid_client_secret_is_rejected_once(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(
        target(server, client_secret="wrong-secret-value"), EVENT, policy=POLICY, transport=transport
    )
    assert d.status == "failed"
    assert steps(d) == [("token", 401, "reject")]
    assert d.error is not None and "invalid_client" in d.error and "client_secret" in d.error
    assert len(server.hub.received("jamf")) == 1


async def test_missing_credentials_are_a_config_failure_before_sending(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(server, client_secret=None), EVENT, policy=POLICY, transport=transport)
    assert d.status == "failed"
    assert d.attempt_count == 0
    assert d.error is not None and "jamf: client_secret is required" in d.error
    assert server.hub.received("jamf") == []


async def test_export_without_artifacts_is_refused_before_sending(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(server), {**EVENT, "artifacts": []}, policy=POLICY, transport=transport)
    assert d.status == "failed" and d.attempt_count == 0
    assert d.error is not None and "artifacts" in d.error
    assert server.hub.received("jamf") == []


async def test_5xx_retried_then_delivered(server: EmulatorServer, transport: AiohttpTransport) -> None:
    tokens = TokenCache()
    await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    server.hub.add_fault("jamf", Fault(status=502, count=1))
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    assert d.success, d.error
    assert steps(d)[:2] == [("lookup", 502, "retry"), ("lookup", 200, "next")]


async def test_429_retry_after_is_honoured(server: EmulatorServer, transport: AiohttpTransport) -> None:
    tokens = TokenCache()
    await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    server.hub.add_fault("jamf", Fault(status=429, count=1, headers={"Retry-After": "1"}))
    started = time.monotonic()
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    assert d.success, d.error
    assert time.monotonic() - started >= 1.0
    assert d.attempts[0].retry_after == 1.0
    # waited_ms is the wait before an attempt: the retry after the 429 waited the Retry-After
    assert d.attempts[0].waited_ms == 0 and d.attempts[1].waited_ms >= 1000


async def test_4xx_is_not_retried(server: EmulatorServer, transport: AiohttpTransport) -> None:
    tokens = TokenCache()
    await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    server.hub.add_fault(
        "jamf", Fault(status=403, count=1, body="<p>Error: Forbidden</p>", content_type="text/html")
    )
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    assert d.status == "failed"
    assert steps(d) == [("lookup", 403, "reject")]
    assert d.error is not None and "Forbidden" in d.error


async def test_timeout_is_retried(server: EmulatorServer, transport: AiohttpTransport) -> None:
    server.hub.add_fault("jamf", Fault(delay=0.6, count=1))
    d = await deliver_one(target(server, timeout_seconds=0.2), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert d.attempts[0].status_code is None and d.attempts[0].verdict == "retry"
    assert d.attempts[0].reason is not None and "no answer within" in d.attempts[0].reason


async def test_connection_refused(transport: AiohttpTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    d = await deliver_one(
        target(None, url=f"http://127.0.0.1:{port}/jamf"),
        EVENT,
        policy=RetryPolicy(retries=1, base_delay=0.01, max_delay=0.02),
        transport=transport,
    )
    assert d.status == "failed"
    assert d.attempt_count == 2
    assert all(a.status_code is None for a in d.attempts)
    assert d.error is not None and "cannot connect" in d.error


async def test_no_secret_leaks(
    server: EmulatorServer, transport: AiohttpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = TokenCache()
    ok = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    issued = list(server.hub.tokens)
    echo = " ".join([CLIENT_SECRET, *(f"Bearer {t} {t}" for t in issued)])
    server.hub.add_fault("jamf", Fault(status=500, count=1, body=f"<p>Error: bad credential {echo}</p>"))
    # the cached token is used (and echoed back): the redactor must know it although it was not fetched here
    bad = await deliver_one(
        target(server), EVENT, policy=RetryPolicy(retries=0), transport=transport, tokens=tokens
    )
    wrong = await deliver_one(
        target(server, client_secret=CLIENT_SECRET + "x"), EVENT, policy=POLICY, transport=transport
    )
    assert ok.success and not bad.success and not wrong.success
    assert bad.attempts[0].step == "lookup"
    texts = [json.dumps(d.to_dict()) for d in (ok, bad, wrong)] + [
        caplog.text,
        str(bad.error),
        str(wrong.error),
    ]
    for secret in [CLIENT_SECRET, CLIENT_SECRET + "x", *issued]:
        for form in _forms(secret):
            for text in texts:
                assert form not in text
