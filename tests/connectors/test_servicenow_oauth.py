"""The ServiceNow connector with OAuth client credentials: token step, cache, refetch on 401, no leaks."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import CachedToken, Context, Next, Reject, Response, Retry, TokenCache
from cavra.connectors.servicenow import ServiceNowConnector, ServiceNowSettings, ServiceNowState
from cavra.connectors.servicenow.connector import PROOF_CREATED, PROOF_NOTED, oauth_credentials
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.emulators.servicenow import servicenow_emulator
from cavra.errors import ConfigError
from cavra.secrets import Secret
from cavra.transport import AiohttpTransport

CLIENT_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
CLIENT_SECRET = "leak-canary-sn-client-secret-9c2e4a"
BASE = "https://acme.service-now.com"
EVENT: dict[str, Any] = {
    "event_type": "cavra.evidence_bundle",
    "event_id": "evt_sn_oauth_0001",
    "session_id": "demo-session",
    "decision_count": 3,
    "blocked_count": 1,
    "max_severity": "high",
}
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = ServiceNowConnector()
OVERRIDES = {"servicenow": {"oauth_clients": {CLIENT_ID: CLIENT_SECRET}}}
NOT_AUTH = json.dumps(
    {
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
        "status": "failure",
    }
)


def settings(**extra: Any) -> ServiceNowSettings:
    values: dict[str, Any] = {"url": BASE, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **extra}
    return ServiceNowSettings.model_validate({k: v for k, v in values.items() if v is not None})


def resp(status: int, body: Any = None) -> Response:
    raw = b"" if body is None else json.dumps(body).encode()
    return Response(status=status, headers={"content-type": "application/json"}, body=raw)


def ctx(attempt: int = 1, tokens: TokenCache | None = None) -> Context:
    c = Context(delivery_key="dk_oauth", tokens=tokens or TokenCache(), now=1_700_000_000.0)
    c.attempt = attempt
    return c


# -- settings ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"client_id": CLIENT_ID}, "client_secret is required with client_id"),
        ({"client_secret": CLIENT_SECRET}, "client_id is required with client_secret"),
        (
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "username": "u", "password": "p" * 12},
            "not both password and client_secret",
        ),
        (
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token": "t" * 20},
            "not both token and client_secret",
        ),
    ],
)
def test_client_credential_settings_are_checked(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        target_from_mapping("servicenow", {"url": BASE, **raw})
    assert fragment in str(info.value) and CLIENT_SECRET not in str(info.value)


def test_client_secret_env_is_resolved_into_a_secret() -> None:
    t = target_from_mapping(
        "servicenow",
        {"url": BASE, "client_id": CLIENT_ID, "client_secret_env": "SN_CLIENT_SECRET"},
        environ={"SN_CLIENT_SECRET": CLIENT_SECRET},
    )
    assert isinstance(t.settings, ServiceNowSettings)
    assert isinstance(t.settings.client_secret, Secret) and t.settings.client_secret.reveal() == CLIENT_SECRET
    assert CLIENT_SECRET not in repr(t.settings)


# -- requests and verdicts ----------------------------------------------------------------------------------
def test_token_step_first_then_bearer_with_the_fetched_token() -> None:
    s, c = settings(), ctx()
    req = CONNECTOR.prepare(EVENT, s, c, None)
    assert (req.method, req.url, req.step) == ("POST", BASE + "/oauth_token.do", "token")
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(req.body.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }
    answer = resp(200, {"access_token": "at-1", "token_type": "Bearer", "expires_in": 1799, "scope": "x"})
    verdict = CONNECTOR.interpret(req, answer, s, c, None)
    assert isinstance(verdict, Next) and isinstance(verdict.token, CachedToken)
    assert verdict.token.key == oauth_credentials(s).cache_key == f"{BASE}/oauth_token.do|{CLIENT_ID}|"
    state = verdict.state
    assert isinstance(state, ServiceNowState) and state.step == "query" and state.token == Secret("at-1")
    c.attempt = 2
    query = CONNECTOR.prepare(EVENT, s, c, state)
    assert query.step == "query" and urlsplit(query.url).path == "/api/now/table/change_request"
    auth = query.headers["Authorization"]
    assert isinstance(auth, Secret) and auth.reveal() == "Bearer at-1"
    assert [x.reveal() for x in query.new_secrets] == ["at-1"]
    # the token is carried through the flow's later steps
    found = CONNECTOR.interpret(query, resp(200, {"result": []}), s, c, state)
    assert isinstance(found, Next) and found.state.step == "create" and found.state.token == Secret("at-1")


def test_cached_token_skips_the_token_step_and_a_401_refetches_once() -> None:
    s = settings()
    tokens = TokenCache()
    tokens.put(CachedToken(oauth_credentials(s).cache_key, Secret("cached-1"), time.monotonic() + 600))
    c = ctx(tokens=tokens)
    query = CONNECTOR.prepare(EVENT, s, c, None)
    assert query.step == "query" and query.headers["Authorization"] == Secret("Bearer cached-1")
    refetch = CONNECTOR.interpret(query, resp(401, json.loads(NOT_AUTH)), s, c, None)
    assert isinstance(refetch, Next) and refetch.state.refetch and refetch.state.refreshed
    c.attempt = 2
    again = CONNECTOR.prepare(EVENT, s, c, refetch.state)
    assert again.step == "token"  # the refused token is not taken from the cache again
    got = CONNECTOR.interpret(
        again, resp(200, {"access_token": "fresh-2", "expires_in": 1799}), s, c, refetch.state
    )
    assert isinstance(got, Next) and got.state.step == "query"
    c.attempt = 3
    retried = CONNECTOR.prepare(EVENT, s, c, got.state)
    assert retried.step == "query" and retried.headers["Authorization"] == Secret("Bearer fresh-2")
    refused = CONNECTOR.interpret(retried, resp(401, json.loads(NOT_AUTH)), s, c, got.state)
    assert isinstance(refused, Reject)
    assert "newly fetched" in refused.reason and "User Not Authenticated" in refused.reason


def test_token_refetched_during_a_retried_insert_rechecks_first() -> None:
    s = settings()
    creating = ServiceNowState(
        step="create", since=3, token=Secret("old"), token_expires=time.monotonic() - 1
    )
    c = ctx(attempt=4)
    # the insert at attempt 3 got no answer; its retry's token ran out: 401 on the re-check
    recheck = CONNECTOR.prepare(EVENT, s, c, creating)
    assert recheck.step == "recheck"
    nxt = CONNECTOR.interpret(recheck, resp(401, json.loads(NOT_AUTH)), s, c, creating)
    assert isinstance(nxt, Next) and nxt.state.step == "recheck"
    # and a token fetched because the create's retry found none in the cache leads to a re-check as well
    stale = ServiceNowState(step="create", since=3)
    c = ctx(attempt=4)
    token_req = CONNECTOR.prepare(EVENT, s, c, stale)
    assert token_req.step == "token"
    got = CONNECTOR.interpret(token_req, resp(200, {"access_token": "t2", "expires_in": 1799}), s, c, stale)
    assert isinstance(got, Next) and (got.state.step, got.state.since) == ("recheck", 5)


def test_token_endpoint_answers() -> None:
    s, c = settings(), ctx()
    req = CONNECTOR.prepare(EVENT, s, c, None)
    bad = CONNECTOR.interpret(
        req, resp(401, {"error": "invalid_client", "error_description": "nope"}), s, c, None
    )
    assert isinstance(bad, Reject) and "invalid_client" in bad.reason and "client_secret" in bad.reason
    assert isinstance(CONNECTOR.interpret(req, resp(503, {}), s, c, None), Retry)
    no_token = CONNECTOR.interpret(req, resp(200, {"token_type": "Bearer"}), s, c, None)
    assert isinstance(no_token, Reject) and "access_token" in no_token.reason


# -- against the emulator ---------------------------------------------------------------------------------
@pytest.fixture
async def srv(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["servicenow"], overrides=OVERRIDES) as server:
        yield server


def target(server: EmulatorServer, **extra: Any) -> Target:
    raw: dict[str, Any] = {
        "url": server.base_url + "/servicenow",
        "client_id": CLIENT_ID,
        "client_secret_env": "SN_CLIENT_SECRET",
        "allow_http": True,
        **extra,
    }
    clean = {k: v for k, v in raw.items() if v is not None}
    return target_from_mapping("servicenow", clean, environ={"SN_CLIENT_SECRET": CLIENT_SECRET})


def steps(d: Any) -> list[tuple[str, int | None, str]]:
    return [(a.step, a.status_code, a.verdict) for a in d.attempts]


def token_requests(server: EmulatorServer) -> int:
    return sum(r.path.endswith("/oauth_token.do") for r in server.hub.received("servicenow"))


async def test_happy_path_fetches_a_token_then_uses_the_cached_one(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    tokens = TokenCache()
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    assert d.success, d.error
    assert steps(d) == [("token", 200, "next"), ("query", 200, "next"), ("create", 201, "delivered")]
    assert d.proof == PROOF_CREATED
    (record,) = servicenow_emulator(srv.hub).store.tables["change_request"]
    assert record["sys_created_by"] == "cavra.oauth" and d.remote_id == record["number"]
    token_req, query, create = srv.hub.received("servicenow")
    assert token_req.method == "POST" and token_req.path == "/servicenow/oauth_token.do"
    assert parse_qs(token_req.body.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }
    (issued,) = srv.hub.tokens
    assert query.headers["Authorization"] == create.headers["Authorization"] == f"Bearer {issued}"
    assert d.to_dict()["attempts"][1]["request"]["headers"]["Authorization"] == "Bearer **REDACTED**"
    again = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    assert steps(again) == [("query", 200, "next"), ("work_note", 200, "delivered")]
    assert again.proof == PROOF_NOTED and token_requests(srv) == 1


async def test_bad_client_secret_is_rejected_not_retried(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    t = target(srv, client_secret_env=None, client_secret="wrong-client-secret-value")
    d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert d.status == "failed" and d.attempt_count == 1
    assert steps(d) == [("token", 401, "reject")]
    assert d.error is not None and "server_error" in d.error and "client_secret" in d.error
    assert "Application Registry entry is active" in d.error
    assert len(srv.hub.received("servicenow")) == 1 and srv.hub.tokens == {}


async def test_missing_oauth_application_user_is_explained(
    emulator_factory: Callable[..., EmulatorServer], transport: AiohttpTransport
) -> None:
    overrides = {"servicenow": {**OVERRIDES["servicenow"], "oauth_user": ""}}
    async with emulator_factory(providers=["servicenow"], overrides=overrides) as s:
        d = await deliver_one(target(s), EVENT, policy=POLICY, transport=transport)
    assert d.status == "failed" and steps(d) == [("token", 401, "reject")]
    assert d.error is not None and "unauthorized_client" in d.error
    assert "OAuth Application User" in d.error


async def test_token_endpoint_5xx_is_retried(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    srv.hub.add_fault("servicenow", Fault(status=503, body="{}"))
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert [a.step for a in d.attempts] == ["token", "token", "query", "create"]


async def test_expired_token_is_refetched_once(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    tokens = TokenCache()
    assert (await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)).success
    for issued in srv.hub.tokens.values():
        issued.expires_at = time.time() - 1  # the instance considers it expired; our cache does not know yet
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    assert d.success, d.error
    assert steps(d) == [
        ("query", 401, "next"),
        ("token", 200, "next"),
        ("query", 200, "next"),
        ("work_note", 200, "delivered"),
    ]
    assert token_requests(srv) == 2
    assert len(servicenow_emulator(srv.hub).store.tables["change_request"]) == 1


async def test_new_token_refused_again_fails_without_looping(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    tokens = TokenCache()
    assert (await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)).success
    srv.hub.add_fault("servicenow", Fault(status=401, body=NOT_AUTH))  # the cached token is refused
    srv.hub.add_fault("servicenow", Fault())  # the token request passes
    srv.hub.add_fault("servicenow", Fault(status=401, body=NOT_AUTH))  # and the new one is refused too
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    assert steps(d) == [("query", 401, "next"), ("token", 200, "next"), ("query", 401, "reject")]
    assert d.error is not None and "newly fetched" in d.error and "User Not Authenticated" in d.error


async def test_token_expiring_during_a_retried_insert(
    emulator_factory: Callable[..., EmulatorServer], transport: AiohttpTransport
) -> None:
    overrides = {"servicenow": {**OVERRIDES["servicenow"], "token_lifetime": 0.3}}
    async with emulator_factory(providers=["servicenow"], overrides=overrides) as server:
        server.hub.add_fault("servicenow", Fault(count=2))  # token and query pass
        server.hub.add_fault("servicenow", Fault(status=503, body="{}", headers={"Retry-After": "0.6"}))
        d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
        assert d.success, d.error
        assert steps(d) == [
            ("token", 200, "next"),
            ("query", 200, "next"),
            ("create", 503, "retry"),
            ("recheck", 401, "next"),
            ("token", 200, "next"),
            ("recheck", 200, "next"),
            ("create", 201, "delivered"),
        ]
        assert len(servicenow_emulator(server.hub).store.tables["change_request"]) == 1


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), base64.b64encode(value.encode()).decode()]


async def test_no_client_secret_or_token_leaks(
    srv: EmulatorServer, transport: AiohttpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = TokenCache()
    results = [await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)]
    (issued,) = srv.hub.tokens
    # the instance echoes the token it was sent, in an error the connector quotes
    echo = {"error": {"message": "Invalid token", "detail": f"Bearer {issued}"}, "status": "failure"}
    srv.hub.add_fault("servicenow", Fault(status=400, body=json.dumps(echo)))
    results.append(
        await deliver_one(
            target(srv), {**EVENT, "event_id": "evt_2"}, policy=POLICY, transport=transport, tokens=tokens
        )
    )
    # the token endpoint echoes the client secret it was sent
    echo_secret = {"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"}
    srv.hub.add_fault("servicenow", Fault(status=401, body=json.dumps(echo_secret)))
    results.append(
        await deliver_one(target(srv), {**EVENT, "event_id": "evt_3"}, policy=POLICY, transport=transport)
    )
    # a 401 refetch: the fresh token travels too
    srv.hub.add_fault("servicenow", Fault(status=401, body=NOT_AUTH))
    results.append(
        await deliver_one(
            target(srv), {**EVENT, "event_id": "evt_4"}, policy=POLICY, transport=transport, tokens=tokens
        )
    )
    assert [d.status for d in results] == ["delivered", "failed", "failed", "delivered"]
    assert results[1].error is not None and "Invalid token" in results[1].error
    assert results[2].error is not None and "invalid_client" in results[2].error
    assert [a.step for a in results[3].attempts] == ["query", "token", "query", "create"]
    issued_all = list(srv.hub.tokens)
    assert len(issued_all) == 2  # the third token request was answered by the echoing fault
    texts = [json.dumps(d.to_dict()) for d in results] + [caplog.text]
    for value in [CLIENT_SECRET, *issued_all]:
        for form in _forms(value):
            for text in texts:
                assert form not in text
    assert "**REDACTED**" in json.dumps(results[0].to_dict())


def test_state_is_a_flow_state() -> None:
    """The token fields and the one-refresh rule are the shared ones (endpoint.flow), not a copy."""
    from cavra.connectors.flow import FlowState

    state = ServiceNowState(step="create", since=2)
    assert isinstance(state, FlowState)
    assert replace(state, token=Secret("x")).since == 2
