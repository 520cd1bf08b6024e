"""The Sentinel connector (Logs Ingestion with an Entra token; API-key mode) and the shared token step."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.auth import ClientCredentials, entra_token_url, token_request, token_verdict
from cavra.connectors.base import (
    CachedToken,
    Context,
    Delivered,
    Next,
    PayloadTooLarge,
    Reject,
    Response,
    Retry,
    TokenCache,
)
from cavra.connectors.sentinel import (
    Refetch,
    Send,
    SentinelConnector,
    SentinelSettings,
    ingestion_url,
    row_of,
)
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators import entra
from cavra.emulators import sentinel as ingestion
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.errors import ConfigError
from cavra.secrets import Secret
from cavra.transport import AiohttpTransport

DCR = ingestion.DEMO_DCR
STREAM = ingestion.DEMO_STREAM
EVENT: dict[str, Any] = {
    "event_type": "cavra.evidence_bundle",
    "event_id": "evt_sentinel_0001",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "high",
}
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = SentinelConnector()
BASE = {
    "url": "https://dce.example.ingest.monitor.azure.com",
    "dcr_immutable_id": DCR,
    "stream_name": STREAM,
    "tenant_id": entra.DEMO_TENANT_ID,
    "client_id": entra.SENTINEL_CLIENT_ID,
    "client_secret": entra.SENTINEL_CLIENT_SECRET,
}


def settings(**kw: Any) -> SentinelSettings:
    return SentinelSettings.model_validate({**BASE, **kw})


def resp(status: int, body: Any = b"", **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status=status, headers=headers, body=raw)


def server(**overrides: Any) -> EmulatorServer:
    return EmulatorServer(providers=["entra", "sentinel"], overrides={"sentinel": overrides})


def target(srv: EmulatorServer, **extra: Any) -> Target:
    raw = {
        **BASE,
        "url": srv.base_url + "/sentinel",
        "authority_url": srv.base_url + "/entra",
        "allow_http": True,
    }
    return target_from_mapping("sentinel", {**raw, **extra})


# -- unit: the shared token step (cavra.connectors.auth) ------------------------------------------------
def test_token_request_is_a_form_post() -> None:
    creds = ClientCredentials(
        "https://login.example/t/oauth2/v2.0/token", "cid", Secret("s+e/c=r&t"), "api://x/.default"
    )
    req = token_request(creds)
    assert (req.method, req.step, req.url) == ("POST", "token", creds.token_url)
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(req.body.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["cid"],
        "client_secret": ["s+e/c=r&t"],
        "scope": ["api://x/.default"],
    }
    assert creds.cache_key == "https://login.example/t/oauth2/v2.0/token|cid|api://x/.default"
    no_scope = ClientCredentials("https://jamf.example/api/oauth/token", "cid", Secret("pw"))
    assert "scope" not in parse_qs(token_request(no_scope).body.decode())


def test_entra_token_url() -> None:
    assert entra_token_url(None, "t1") == "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
    assert entra_token_url("https://login.microsoftonline.us/", "t 2") == (
        "https://login.microsoftonline.us/t%202/oauth2/v2.0/token"
    )


def test_token_verdicts() -> None:
    before = time.monotonic()
    got = token_verdict(resp(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": "tok"}), "k")
    assert isinstance(got, CachedToken)
    assert (got.key, got.value.reveal()) == ("k", "tok")
    assert before + 3599 <= got.expires_at <= time.monotonic() + 3599
    assert isinstance(token_verdict(resp(200, {"expires_in": "60", "access_token": "t"}), "k"), CachedToken)
    for bad in (
        {"token_type": "Bearer"},
        {"access_token": "t", "token_type": "mac"},
        {"access_token": "t", "expires_in": "x"},
    ):
        verdict = token_verdict(resp(200, bad), "k")
        assert isinstance(verdict, Reject), bad
    invalid_client = token_verdict(resp(401, {"error": "invalid_client", "error_codes": [7000215]}), "k")
    assert isinstance(invalid_client, Reject)
    assert (
        "invalid_client (AADSTS7000215)" in invalid_client.reason and "client_secret" in invalid_client.reason
    )
    scope = token_verdict(resp(400, {"error": "invalid_scope", "error_codes": [70011]}), "k")
    assert isinstance(scope, Reject) and "/.default" in scope.reason
    assert token_verdict(resp(503, b"", **{"retry-after": "2"}), "k") == Retry(
        "OAuth endpoint: HTTP 503", after=2.0
    )
    assert isinstance(token_verdict(resp(302, b""), "k"), Reject)


# -- unit: settings, row and URL -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client_secret": None}, "client_secret is required"),
        ({"dcr_immutable_id": None}, "dcr_immutable_id is required"),
        ({"dcr_immutable_id": "my-dcr"}, "dcr-<32 hex digits>"),
        ({"scope": "https://monitor.azure.com"}, "/.default"),
        ({"mode": "api_key", "api_key": None}, "api_key is required in api_key mode"),
    ],
)
def test_settings_validation(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SentinelSettings.model_validate({**BASE, **change})


def test_row_flattens_the_event_into_valid_columns() -> None:
    row = row_of(EVENT, now=0.0)
    assert row == {
        "TimeGenerated": "1970-01-01T00:00:00.000Z",
        "EventId": "evt_sentinel_0001",
        "EventType": "cavra.evidence_bundle",
        "SessionId": "demo-session",
        "Severity": "high",
        "EventData": {
            "decision_count": 7,
            "blocked_count": 4,
            "approval_required_count": 1,
            "max_severity": "high",
        },
    }
    # the emulator's own column rules (names, declared columns, types) accept it
    assert ingestion.check_rows([row], ingestion.Settings().dcrs[DCR][STREAM], check_types=True) is None
    other = row_of({"event_type": "x", "timestamp": "2026-03-04T05:06:07Z", "nested": {"a": [1]}}, now=0.0)
    assert other["TimeGenerated"] == "2026-03-04T05:06:07.000Z"
    assert other["SessionId"] is None and other["Severity"] == "info"
    assert other["EventData"] == {"timestamp": "2026-03-04T05:06:07Z", "nested": {"a": [1]}}


def test_ingestion_url() -> None:
    assert ingestion_url(settings()) == (
        f"https://dce.example.ingest.monitor.azure.com/dataCollectionRules/{DCR}/streams/{STREAM}"
        "?api-version=2023-01-01"
    )
    full = f"https://dcr.example/dataCollectionRules/{DCR}/streams/{STREAM}?api-version=2023-01-01"
    assert ingestion_url(settings(url=full)) == full


# -- unit: the two-step flow -----------------------------------------------------------------------------
def test_first_step_fetches_a_token_then_posts_with_it() -> None:
    s, ctx = settings(), Context(delivery_key="dk")
    req = CONNECTOR.prepare(EVENT, s, ctx, None)
    assert req.step == "token"
    assert req.url == f"https://login.microsoftonline.com/{entra.DEMO_TENANT_ID}/oauth2/v2.0/token"
    assert parse_qs(req.body.decode())["scope"] == ["https://monitor.azure.com/.default"]
    verdict = CONNECTOR.interpret(req, resp(200, {"access_token": "at-1", "expires_in": 3599}), s, ctx, None)
    assert isinstance(verdict, Next) and isinstance(verdict.state, Send) and verdict.token is not None
    send = CONNECTOR.prepare(EVENT, s, ctx, verdict.state)
    assert send.step == "send"
    auth = send.headers["Authorization"]
    assert isinstance(auth, Secret) and auth.reveal() == "Bearer at-1"
    assert json.loads(send.body) == [row_of(EVENT, ctx.now)]
    assert CONNECTOR.interpret(send, resp(204), s, ctx, verdict.state) == Delivered(detail={"status": 204})
    # a fresh token refused: no loop
    assert isinstance(CONNECTOR.interpret(send, resp(401), s, ctx, verdict.state), Reject)


def test_cached_token_skips_the_token_step_and_401_refetches_once() -> None:
    s, ctx = settings(), Context(delivery_key="dk", tokens=TokenCache())
    key = f"https://login.microsoftonline.com/{entra.DEMO_TENANT_ID}/oauth2/v2.0/token|{entra.SENTINEL_CLIENT_ID}|"
    key += "https://monitor.azure.com/.default"
    ctx.tokens.put(CachedToken(key, Secret("cached"), time.monotonic() + 600))
    send = CONNECTOR.prepare(EVENT, s, ctx, None)
    assert send.step == "send"
    assert CONNECTOR.interpret(send, resp(401), s, ctx, None) == Next(Refetch())
    refetch = CONNECTOR.prepare(EVENT, s, ctx, Refetch())
    assert refetch.step == "token"
    after = CONNECTOR.interpret(refetch, resp(200, {"access_token": "new"}), s, ctx, Refetch())
    assert isinstance(after, Next) and after.state == Send(Secret("new"), refetched=True)
    assert isinstance(CONNECTOR.interpret(send, resp(401), s, ctx, after.state), Reject)


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (403, Reject, "Monitoring Metrics Publisher"),
        (404, Reject, "stream_name"),
        (413, Reject, "1 MB"),
        (400, Reject, "EventData"),
        (200, Reject, "answers 204"),
        (429, Retry, "HTTP 429"),
        (503, Retry, "HTTP 503"),
    ],
)
def test_ingestion_verdicts(status: int, kind: type, words: str) -> None:
    s, ctx = settings(), Context(delivery_key="dk")
    send = CONNECTOR.prepare(EVENT, s, ctx, Send(Secret("t")))
    verdict = CONNECTOR.interpret(
        send, resp(status, {"error": {"code": "C", "message": "m"}}), s, ctx, Send(Secret("t"))
    )
    assert isinstance(verdict, kind)
    assert isinstance(verdict, Reject | Retry)
    assert words in verdict.reason
    if status == 403:
        assert "propagated" in verdict.reason


def test_body_over_one_mebibyte_is_refused_before_sending() -> None:
    with pytest.raises(PayloadTooLarge, match="1 MB"):
        CONNECTOR.prepare({**EVENT, "blob": "x" * 1_048_576}, settings(), Context(delivery_key="dk"), None)


def test_api_key_mode_request_and_verdicts() -> None:
    s = SentinelSettings.model_validate(
        {
            "mode": "api_key",
            "url": "https://ingest.example/api/logs",
            "api_key": "k3y-value",
            "api_key_header": "X-Key",
        }
    )
    ctx = Context(delivery_key="dk")
    req = CONNECTOR.prepare(EVENT, s, ctx, None)
    assert (req.url, req.step) == ("https://ingest.example/api/logs", "send")
    key = req.headers["X-Key"]
    assert isinstance(key, Secret) and key.reveal() == "k3y-value"
    assert "Authorization" not in req.headers
    assert isinstance(CONNECTOR.interpret(req, resp(200, {}), s, ctx, None), Delivered)
    assert isinstance(CONNECTOR.interpret(req, resp(401), s, ctx, None), Reject)
    assert isinstance(CONNECTOR.interpret(req, resp(403), s, ctx, None), Reject)
    assert isinstance(CONNECTOR.interpret(req, resp(503), s, ctx, None), Retry)
    assert "X-Key" in s.extra_credential_headers()


# -- integration: Entra emulator + Logs Ingestion emulator -----------------------------------------------
async def test_happy_path_token_then_204_and_the_token_is_reused() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        tokens = TokenCache()
        tgt = target(srv)
        d = await deliver_one(tgt, EVENT, policy=POLICY, transport=tr, tokens=tokens)
        assert d.success, d.error
        assert [(a.step, a.status_code) for a in d.attempts] == [("token", 200), ("send", 204)]
        (row,) = ingestion.state(srv.hub).rows[(DCR, STREAM)]
        assert (row["EventId"], row["SessionId"], row["Severity"]) == (
            "evt_sentinel_0001",
            "demo-session",
            "high",
        )
        assert row["EventData"]["blocked_count"] == 4
        (token_req,) = srv.hub.received("entra")
        form = parse_qs(token_req.body.decode())
        assert form["scope"] == ["https://monitor.azure.com/.default"]
        assert form["grant_type"] == ["client_credentials"]
        (sent,) = srv.hub.received("sentinel")
        assert sent.query == "api-version=2023-01-01"
        assert sent.headers["Content-Type"] == "application/json"
        assert sent.headers["Authorization"].startswith("Bearer ")
        assert uuid.UUID(sent.headers["x-ms-client-request-id"])
        assert d.to_dict()["attempts"][1]["request"]["headers"]["Authorization"] == "Bearer **REDACTED**"
        again = await deliver_one(
            tgt, {**EVENT, "event_id": "evt_2"}, policy=POLICY, transport=tr, tokens=tokens
        )
        assert again.success, again.error
        assert [a.step for a in again.attempts] == ["send"]
        assert len(srv.hub.received("entra")) == 1


async def test_invalid_client_secret_rejected_at_the_token_step() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(
            target(srv, client_secret="wrong-secret-value"), EVENT, policy=POLICY, transport=tr
        )
        assert (d.success, d.status_code, d.attempt_count) == (False, 401, 1)
        assert d.attempts[0].step == "token"
        assert d.error is not None and "client_secret" in d.error
        # the reason survives redaction readable (no "token <word>" shape for the redactor's patterns)
        assert "Entra ID OAuth endpoint: HTTP 401 invalid_client (AADSTS7000215)" in d.error
        assert srv.hub.received("sentinel") == []


async def test_missing_credentials() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        unknown = "11111111-2222-4333-8444-555555555555"
        d = await deliver_one(target(srv, client_id=unknown), EVENT, policy=POLICY, transport=tr)
        assert (d.success, d.status_code, d.attempt_count) == (False, 400, 1)
        assert d.error is not None and "unauthorized_client" in d.error
    with pytest.raises(ConfigError, match="client_secret is required"):
        target_from_mapping("sentinel", {k: v for k, v in BASE.items() if k != "client_secret"})


async def test_app_without_the_dcr_role_is_rejected_with_the_reason() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        tgt = target(srv, client_id=entra.NOROLE_CLIENT_ID, client_secret=entra.NOROLE_CLIENT_SECRET)
        d = await deliver_one(tgt, EVENT, policy=POLICY, transport=tr)
        assert not d.success
        assert [(a.step, a.status_code) for a in d.attempts] == [("token", 200), ("send", 403)]
        assert d.error is not None
        assert "Monitoring Metrics Publisher" in d.error and "not propagated yet" in d.error
        assert len(srv.hub.received("sentinel")) == 1


async def test_token_for_the_wrong_audience_is_rejected_without_a_loop() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(
            target(srv, scope="https://graph.microsoft.com/.default"), EVENT, policy=POLICY, transport=tr
        )
        assert not d.success
        assert [(a.step, a.status_code) for a in d.attempts] == [("token", 200), ("send", 401)]
        assert d.error is not None and "scope" in d.error


async def test_revoked_cached_token_is_fetched_again_once() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        tokens, tgt = TokenCache(), target(srv)
        assert (await deliver_one(tgt, EVENT, policy=POLICY, transport=tr, tokens=tokens)).success
        srv.hub.tokens.clear()  # the issuer forgets it: the cached token is now refused
        d = await deliver_one(tgt, {**EVENT, "event_id": "evt_2"}, policy=POLICY, transport=tr, tokens=tokens)
        assert d.success, d.error
        assert [(a.step, a.status_code) for a in d.attempts] == [("send", 401), ("token", 200), ("send", 204)]
        # refused again after the refetch: rejected, no second refetch
        srv.hub.tokens.clear()
        srv.hub.add_fault("sentinel", Fault(status=401, count=5, body="{}"))
        d = await deliver_one(tgt, {**EVENT, "event_id": "evt_3"}, policy=POLICY, transport=tr, tokens=tokens)
        assert not d.success
        assert [(a.step, a.status_code) for a in d.attempts] == [("send", 401), ("token", 200), ("send", 401)]


async def test_5xx_retried_then_delivered_on_both_steps() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        srv.hub.add_fault("entra", Fault(status=503, count=1, body="{}"))
        srv.hub.add_fault("sentinel", Fault(status=500, count=1, body="{}"))
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=tr)
        assert d.success, d.error
        assert [(a.step, a.status_code) for a in d.attempts] == [
            ("token", 503),
            ("token", 200),
            ("send", 500),
            ("send", 204),
        ]


async def test_unknown_stream_404_not_retried() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(target(srv, stream_name="Custom-Nope"), EVENT, policy=POLICY, transport=tr)
        assert not d.success
        assert [a.status_code for a in d.attempts] == [200, 404]
        assert d.error is not None and "stream_name" in d.error


async def test_oversized_event_is_not_sent() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(target(srv), {**EVENT, "blob": "x" * 1_100_000}, policy=POLICY, transport=tr)
        assert (d.success, d.attempt_count) == (False, 0)
        assert d.error is not None and "1 MB" in d.error
        assert srv.hub.received() == []


async def test_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    dead = f"http://127.0.0.1:{port}"
    tgt = target_from_mapping("sentinel", {**BASE, "url": dead, "authority_url": dead, "allow_http": True})
    async with AiohttpTransport() as tr:
        d = await deliver_one(tgt, EVENT, policy=POLICY, transport=tr)
    assert (d.success, d.attempt_count) == (False, 3)
    assert all(a.step == "token" for a in d.attempts)
    assert d.error is not None and "cannot connect" in d.error


async def test_api_key_mode_against_the_emulator() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        raw = {
            "mode": "api_key",
            "url": srv.base_url + "/sentinel/api/logs",
            "api_key": ingestion.DEMO_API_KEY,
        }
        d = await deliver_one(
            target_from_mapping("sentinel", {**raw, "allow_http": True}), EVENT, policy=POLICY, transport=tr
        )
        assert d.success, d.error
        assert (d.status_code, d.attempt_count) == (200, 1)
        assert ingestion.state(srv.hub).api_rows[0]["EventId"] == "evt_sentinel_0001"
        assert d.to_dict()["request"]["headers"]["x-api-key"] == "**REDACTED**"
        bad = {**raw, "api_key": "not-the-key", "allow_http": True}
        d = await deliver_one(target_from_mapping("sentinel", bad), EVENT, policy=POLICY, transport=tr)
        assert (d.success, d.status_code, d.attempt_count) == (False, 403, 1)
        assert d.error is not None and "refused the API key" in d.error


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), quote_plus(value), base64.b64encode(value.encode()).decode()]


async def test_no_secret_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sentinelCanary+Secret/9Zx=7&Qw"
    api_key = "sentinelApiKeyCanary42Xq"
    clients = {
        entra.SENTINEL_CLIENT_ID: {
            "secret": secret,
            "roles": {"https://monitor.azure.com": ["Monitoring Metrics Publisher"]},
        }
    }
    overrides: dict[str, dict[str, Any]] = {
        "entra": {"clients": clients},
        "sentinel": {"api_keys": {api_key: "canary"}},
    }
    async with (
        EmulatorServer(providers=["entra", "sentinel"], overrides=overrides) as srv,
        AiohttpTransport() as tr,
    ):
        env = {"S_SECRET": secret, "S_URL": srv.base_url + "/sentinel", "S_KEY": api_key}
        raw = {**BASE, "authority_url": srv.base_url + "/entra", "allow_http": True}
        raw.pop("client_secret")
        raw.pop("url")
        tgt = target_from_mapping(
            "sentinel", {**raw, "url_env": "S_URL", "client_secret_env": "S_SECRET"}, environ=env
        )
        ok = await deliver_one(tgt, EVENT, policy=POLICY, transport=tr)
        issued = list(srv.hub.tokens)
        srv.hub.add_fault(
            "entra", Fault(status=401, body=json.dumps({"error": "invalid_client", "echo": secret}))
        )
        bad = await deliver_one(tgt, {**EVENT, "event_id": "evt_2"}, policy=POLICY, transport=tr)
        echo = json.dumps({"error": {"code": "X", "message": f"token {issued[0]} secret {secret}"}})
        srv.hub.add_fault("sentinel", Fault(status=500, count=5, body=echo))
        down = await deliver_one(tgt, {**EVENT, "event_id": "evt_3"}, policy=POLICY, transport=tr)
        key_raw = {"mode": "api_key", "url_env": "S_URL", "api_key_env": "S_KEY", "allow_http": True}
        key_tgt = target_from_mapping("sentinel", key_raw, environ=env)
        srv.hub.faults.clear()  # the API-key target does not know the client secret: echo only its own key
        srv.hub.add_fault(
            "sentinel", Fault(status=403, body=json.dumps({"error": {"code": "F", "message": api_key}}))
        )
        key_bad = await deliver_one(key_tgt, EVENT, policy=POLICY, transport=tr)
    assert ok.success and not bad.success and not down.success and not key_bad.success
    assert issued
    texts = [json.dumps(d.to_dict()) for d in (ok, bad, down, key_bad)]
    texts += [caplog.text, repr(tgt.settings), repr(key_tgt.settings)]
    for value in (secret, api_key, *issued):
        for form in _forms(value):
            for text in texts:
                assert form not in text
