"""The Slack connector: Block Kit rendering within limits, Slack's verdicts, and delivery to the emulator."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, Reject, Response, Retry
from cavra.connectors.slack import SlackConnector, SlackSettings, blocks, clip, escape, message
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.emulators.slack import check_message, slack_state
from cavra.errors import ConfigError
from cavra.transport import AiohttpTransport

HOOK = "T0LEAK001/B0LEAK001/slackCanarySecret9Zx7Qw3"
SECRET_PART = "slackCanarySecret9Zx7Qw3"
EVENT: dict[str, Any] = {
    "event_type": "cavra.evidence_bundle",
    "event_id": "evt_slack_test_0001",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "high",
    "console_url": "https://cavra.example/sessions/demo-session?tab=evidence&x=1",
}
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = SlackConnector()


def judge(status: int, body: bytes, **headers: str) -> Any:
    s = SlackSettings.model_validate({"url": "https://hooks.slack.com/services/T1/B1/x"})
    ctx = Context(delivery_key="dk")
    req = CONNECTOR.prepare(EVENT, s, ctx, None)
    resp = Response(status=status, headers={k.replace("_", "-"): v for k, v in headers.items()}, body=body)
    return CONNECTOR.interpret(req, resp, s, ctx, None)


def field_texts(msg: dict[str, Any]) -> list[str]:
    return [f["text"] for b in msg["blocks"] if b["type"] == "section" for f in b.get("fields", [])]


# -- unit: rendering -------------------------------------------------------------------------------------
def test_message_layout() -> None:
    msg = message(EVENT)
    kinds = [b["type"] for b in msg["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    assert msg["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": "CAVRA evidence bundle: demo-session",
        "emoji": True,
    }
    fields = field_texts(msg)
    assert "*Event*\ncavra.evidence_bundle" in fields
    assert "*Session*\ndemo-session" in fields
    assert "*Decisions*\n7" in fields
    assert "*Blocked*\n4" in fields
    assert "*Approval required*\n1" in fields
    assert "*Max severity*\nhigh" in fields
    link = msg["blocks"][2]["text"]["text"]
    assert link == "<https://cavra.example/sessions/demo-session?tab=evidence&amp;x=1|Open in CAVRA>"
    assert "evt_slack_test_0001" in msg["blocks"][3]["elements"][0]["text"]
    assert msg["text"].startswith("CAVRA evidence bundle: demo-session [high]")
    assert check_message(msg) is None  # the emulator's own Block Kit checks


def test_generic_event_gets_severity_and_no_link() -> None:
    msg = message({"event_type": "cavra.custom", "event_id": "e1", "detail": "<b>&"})
    assert [b["type"] for b in msg["blocks"]] == ["header", "section", "context"]
    fields = field_texts(msg)
    assert "*Severity*\ninfo" in fields
    assert "*Detail*\n&lt;b&gt;&amp;" in fields


def test_everything_is_clipped_to_block_kit_limits() -> None:
    huge = {f"field_{i}": "x" * 5000 for i in range(12)}
    event = {
        "event_type": "cavra.custom." + "t" * 400,
        "event_id": "e" * 4000,
        "session_id": "s" * 3000,
    } | huge
    msg = message(event)
    header = msg["blocks"][0]["text"]["text"]
    assert len(header) == 150
    assert header.endswith("…")
    assert all(len(t) <= 2000 for t in field_texts(msg))
    assert all(len(b.get("fields", [])) <= 10 for b in msg["blocks"])
    assert len(msg["text"]) <= 3000
    assert len(msg["blocks"][-1]["elements"][0]["text"]) <= 3000
    assert check_message(msg) is None


def test_clip_never_splits_an_entity() -> None:
    assert clip(escape("ab<"), 5) == "ab…"
    assert clip("abcdef", 4) == "abc…"
    assert clip("abc", 3) == "abc"


def test_url_is_required() -> None:
    with pytest.raises(ConfigError, match="slack: url is required"):
        SlackSettings.model_validate({})


def test_blocks_only_links_http_urls() -> None:
    assert len(blocks(EVENT | {"console_url": "javascript:alert(1)"})) == 3


# -- unit: verdicts --------------------------------------------------------------------------------------
def test_ok_is_the_only_success() -> None:
    assert isinstance(judge(200, b"ok"), Delivered)
    # Slack can answer 200 with an error string: that is a failure, not a delivery
    bad = judge(200, b"invalid_token")
    assert isinstance(bad, Reject)
    assert "invalid_token" in bad.reason


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b"invalid_payload"),
        (400, b"no_text"),
        (403, b"action_prohibited"),
        (404, b"channel_not_found"),
        (404, b"no_service"),
        (410, b"channel_is_archived"),
        (403, b"invalid_token"),
    ],
)
def test_permanent_errors_name_slacks_string(status: int, body: bytes) -> None:
    verdict = judge(status, body)
    assert isinstance(verdict, Reject)
    assert body.decode() in verdict.reason
    assert f"HTTP {status}" in verdict.reason


def test_retryable() -> None:
    throttled = judge(429, b"rate_limited", **{"retry-after": "3"})
    assert isinstance(throttled, Retry)
    assert throttled.after == 3.0
    assert isinstance(judge(500, b"rollup_error"), Retry)
    assert "rollup_error" in judge(503, b"rollup_error").reason


# -- integration -----------------------------------------------------------------------------------------
@pytest.fixture
async def server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    overrides = {"slack": {"hooks": {HOOK: "#soc"}, "rate_limit": False}}
    async with emulator_factory(providers=["slack"], overrides=overrides) as srv:
        yield srv


def target(srv: EmulatorServer, hook: str = HOOK, **extra: Any) -> Target:
    return target_from_mapping(
        "slack", {"url": f"{srv.base_url}/slack/services/{hook}", "allow_http": True} | extra
    )


async def test_happy_path(server: EmulatorServer, transport: AiohttpTransport) -> None:
    delivery = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert delivery.success, delivery.error
    assert (delivery.status_code, delivery.attempt_count) == (200, 1)
    (posted,) = slack_state(server.hub).messages
    assert posted.channel == "#soc"
    assert posted.payload == message(EVENT)
    (received,) = server.hub.received("slack")
    assert received.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("hook", "status", "error"),
    [
        ("T0LEAK001/B0LEAK001/wrongSecret0000000000000", 404, "no_service"),
        ("", 404, "no_service"),
    ],
)
async def test_invalid_or_missing_credential_rejected_once(
    server: EmulatorServer, transport: AiohttpTransport, hook: str, status: int, error: str
) -> None:
    delivery = await deliver_one(target(server, hook), EVENT, policy=POLICY, transport=transport)
    assert (delivery.success, delivery.status_code, delivery.attempt_count) == (False, status, 1)
    assert error in str(delivery.error)


async def test_200_with_an_error_body_is_a_failure(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    server.hub.add_fault("slack", Fault(status=200, body="invalid_token", content_type="text/plain"))
    delivery = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert (delivery.success, delivery.status_code, delivery.attempt_count) == (False, 200, 1)
    assert "invalid_token" in str(delivery.error)


@pytest.mark.parametrize(
    ("state", "status", "error"),
    [
        ("archived", 410, "channel_is_archived"),
        ("deleted", 404, "channel_not_found"),
        ("prohibited", 403, "action_prohibited"),
    ],
)
async def test_channel_states_rejected_with_slacks_string(
    server: EmulatorServer, transport: AiohttpTransport, state: str, status: int, error: str
) -> None:
    server.settings["slack"].channel_states["#soc"] = state
    delivery = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert (delivery.success, delivery.status_code, delivery.attempt_count) == (False, status, 1)
    assert error in str(delivery.error)


async def test_429_storm_with_the_token_bucket_on_still_delivers(
    emulator_factory: Callable[..., EmulatorServer], transport: AiohttpTransport
) -> None:
    overrides = {"slack": {"hooks": {HOOK: "#soc"}, "rate_limit": True, "burst": 2, "rate_per_second": 1.0}}
    async with emulator_factory(providers=["slack"], overrides=overrides) as srv:
        policy = RetryPolicy(retries=4, base_delay=0.01, max_delay=0.05)
        events = [EVENT | {"event_id": f"evt_storm_{i}"} for i in range(4)]
        started = time.monotonic()
        results = [await deliver_one(target(srv), e, policy=policy, transport=transport) for e in events]
        elapsed = time.monotonic() - started
        assert all(r.success for r in results), [r.error for r in results]
        assert slack_state(srv.hub).throttled >= 1
        assert any(a.status_code == 429 for r in results for a in r.attempts)
        assert elapsed >= 1.0  # the bucket refills at 1/s: the overflow waited for Retry-After
        assert len(slack_state(srv.hub).messages) == 4


async def test_invalid_payload_not_retried(server: EmulatorServer, transport: AiohttpTransport) -> None:
    server.hub.add_fault("slack", Fault(status=400, body="invalid_payload", content_type="text/plain"))
    delivery = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert (delivery.success, delivery.attempt_count) == (False, 1)
    assert "invalid_payload" in str(delivery.error)


async def test_connection_refused(transport: AiohttpTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t = target_from_mapping(
        "slack", {"url": f"http://127.0.0.1:{port}/slack/services/{HOOK}", "allow_http": True}
    )
    delivery = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert not delivery.success
    assert delivery.attempt_count == POLICY.attempts
    assert SECRET_PART not in json.dumps(delivery.to_dict())


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    b64 = base64.b64encode(raw).decode()
    return {secret, quote(secret, safe=""), quote_plus(secret), b64, b64.rstrip("=")}


@pytest.mark.parametrize("outcome", ["success", "failure"])
async def test_url_never_appears_in_the_record(
    server: EmulatorServer, transport: AiohttpTransport, caplog: pytest.LogCaptureFixture, outcome: str
) -> None:
    caplog.set_level(logging.DEBUG)
    if outcome == "failure":
        server.hub.add_fault(
            "slack", Fault(status=503, count=5, body=f"rollup_error {HOOK}", content_type="text/plain")
        )
    delivery = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert delivery.success is (outcome == "success")
    record = delivery.to_dict()
    assert record["request"]["url"] == server.base_url + "/**REDACTED**"
    text = json.dumps(record) + caplog.text + str(delivery.error)
    for secret in (HOOK, SECRET_PART, f"/slack/services/{HOOK}"):
        for form in forms(secret):
            assert form not in text
    assert "/slack/services" not in text
