"""The Splunk HEC connector: envelope, URL forms, HEC ``code`` verdicts, and delivery to the HEC emulator."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, PayloadTooLarge, Reject, Response, Retry
from cavra.connectors.splunk import SplunkConnector, SplunkSettings, envelope, event_url
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators import splunk as hec
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.errors import ConfigError
from cavra.transport import AiohttpTransport

TOKEN = "5ec7e7a1-0b1d-4c2e-9f3a-1eaac0ffee99"
ACK_TOKEN = "0acc0acc-1111-4222-8333-444455556666"
EVENT: dict[str, Any] = {
    "event_type": "cavra.evidence_bundle",
    "event_id": "evt_splunk_0001",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "high",
}
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = SplunkConnector()
TOKENS = {TOKEN: {"name": "cavra", "indexes": ["main", "cavra"]}, ACK_TOKEN: {"name": "acked", "ack": True}}


def settings(**kw: Any) -> SplunkSettings:
    return SplunkSettings.model_validate({"url": "https://splunk.example:8088", "token": TOKEN, **kw})


def judge(status: int, body: Any, **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    s = settings()
    ctx = Context(delivery_key="dk_test")
    req = CONNECTOR.prepare(EVENT, s, ctx, None)
    return CONNECTOR.interpret(req, Response(status=status, headers=headers, body=raw), s, ctx, None)


def server(**overrides: Any) -> EmulatorServer:
    return EmulatorServer(providers=["splunk"], overrides={"splunk": {"tokens": TOKENS, **overrides}})


def target(srv: EmulatorServer, **extra: Any) -> Target:
    raw = {
        "url": srv.base_url + "/splunk/services/collector",
        "token": TOKEN,
        "index": "cavra",
        "allow_http": True,
        **extra,
    }
    return target_from_mapping("splunk", raw)


# -- unit: request ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://s.example:8088", "https://s.example:8088/services/collector/event"),
        ("https://s.example:8088/", "https://s.example:8088/services/collector/event"),
        ("https://s.example/services/collector", "https://s.example/services/collector/event"),
        ("https://s.example/services/collector/", "https://s.example/services/collector/event"),
        ("https://s.example/services/collector/event", "https://s.example/services/collector/event"),
        ("https://s.example/services/collector/event/1.0", "https://s.example/services/collector/event/1.0"),
        ("https://s.example/prefix", "https://s.example/prefix/services/collector/event"),
    ],
)
def test_url_forms(given: str, expected: str) -> None:
    assert event_url(given) == expected


@pytest.mark.parametrize("bad", ["https://s.example/services/collector/raw", "ftp://s.example", "not a url"])
def test_bad_urls(bad: str) -> None:
    with pytest.raises(ConfigError, match="splunk: url"):
        event_url(bad)


def test_envelope_carries_metadata_raw_event_and_flat_fields() -> None:
    env = envelope(
        EVENT, settings(index="cavra", source="src", sourcetype="st", host="h1"), now=1_700_000_000.0
    )
    assert env == {
        "time": 1_700_000_000.0,
        "host": "h1",
        "source": "src",
        "sourcetype": "st",
        "index": "cavra",
        "event": EVENT,
        "fields": {
            "event_type": "cavra.evidence_bundle",
            "event_id": "evt_splunk_0001",
            "session_id": "demo-session",
            "severity": "high",
        },
    }
    assert all(isinstance(v, str) for v in env["fields"].values())


def test_envelope_defaults_and_event_time() -> None:
    env = envelope({"event_type": "x", "timestamp": "2026-01-02T03:04:05Z"}, settings(), now=1.0)
    assert env["time"] == 1767323045.0
    assert (env["source"], env["sourcetype"]) == ("cavra", "_json")
    assert "index" not in env and "host" not in env
    assert env["fields"]["severity"] == "info"
    assert env["fields"]["event_id"].startswith("evt_")


def test_prepare_headers_channel_and_scheme() -> None:
    ctx = Context(delivery_key="dk_1")
    req = CONNECTOR.prepare(EVENT, settings(authorization_scheme="Bearer"), ctx, None)
    assert req.method == "POST"
    assert req.url == "https://splunk.example:8088/services/collector/event"
    auth = req.headers["Authorization"]
    assert not isinstance(auth, str)
    assert auth.reveal() == f"Bearer {TOKEN}"
    channel = str(req.headers["X-Splunk-Request-Channel"])
    assert str(uuid.UUID(channel)) == channel
    # stable for the delivery (retries reuse it), distinct between deliveries
    assert CONNECTOR.prepare(EVENT, settings(), ctx, None).headers["X-Splunk-Request-Channel"] == channel
    other = CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk_2"), None)
    assert other.headers["X-Splunk-Request-Channel"] != channel
    assert json.loads(req.body)["event"] == EVENT


def test_oversized_event_is_refused_before_sending() -> None:
    with pytest.raises(PayloadTooLarge, match="900000-byte"):
        CONNECTOR.prepare({**EVENT, "blob": "x" * 950_000}, settings(), Context(delivery_key="dk"), None)


def test_settings_require_url_and_token_and_a_one_word_scheme() -> None:
    with pytest.raises(ConfigError, match="splunk: token is required"):
        SplunkSettings.model_validate({"url": "https://s.example"})
    with pytest.raises(ConfigError, match="splunk: url is required"):
        SplunkSettings.model_validate({"token": TOKEN})
    with pytest.raises(ConfigError, match="one word"):
        settings(authorization_scheme="Splunk token")


# -- unit: verdicts (HEC's code field decides, not the status alone) ------------------------------------
def test_success_needs_code_zero() -> None:
    assert judge(200, {"text": "Success", "code": 0}) == Delivered(detail={"hec_code": 0})
    verdict = judge(200, {"text": "Success", "code": 0, "ackId": 7})
    assert isinstance(verdict, Delivered) and verdict.remote_id == "ackId:7"
    # a 200 that is not HEC's success (a proxy page, another code) is not a delivery
    assert isinstance(judge(200, b"<html>login</html>"), Reject)
    assert isinstance(judge(200, {"text": "HEC is healthy", "code": 17}), Reject)


@pytest.mark.parametrize("code", [6, 7, 12, 13, 15])
def test_bad_event_codes_are_rejected_with_the_event_number(code: int) -> None:
    verdict = judge(400, {"text": "Incorrect index", "code": code, "invalid-event-number": 0})
    assert isinstance(verdict, Reject)
    assert "event number 0" in verdict.reason and f"code {code}" in verdict.reason
    assert verdict.detail["invalid_event_number"] == 0


@pytest.mark.parametrize(("status", "code"), [(503, 9), (503, 18), (503, 19), (503, 20), (500, 8)])
def test_busy_and_internal_errors_are_retried(status: int, code: int) -> None:
    verdict = judge(status, {"text": "Server is busy", "code": code}, **{"retry-after": "3"})
    assert verdict == Retry(f"HTTP {status} code {code} (Server is busy)", after=3.0)


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [(401, 2, "no token"), (401, 3, "malformed"), (403, 4, "not valid"), (403, 1, "disabled")],
)
def test_credential_codes_are_rejected(status: int, code: int, hint: str) -> None:
    verdict = judge(status, {"text": "x", "code": code})
    assert isinstance(verdict, Reject) and hint in verdict.reason


def test_other_statuses() -> None:
    assert isinstance(judge(413, b"too big"), Reject)
    assert isinstance(
        judge(404, {"text": "The requested URL was not found on this server.", "code": 404}), Reject
    )
    assert isinstance(judge(429, b"", **{"retry-after": "1"}), Retry)
    assert isinstance(judge(502, b"bad gateway"), Retry)
    assert isinstance(judge(400, {"text": "Data channel is missing", "code": 10}), Reject)


# -- integration: against the HEC emulator ---------------------------------------------------------------
async def test_happy_path_indexes_the_envelope() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(target(srv, sourcetype="cavra:evidence"), EVENT, policy=POLICY, transport=tr)
        assert d.success, d.error
        assert (d.status_code, d.attempt_count) == (200, 1)
        (ev,) = hec.state(srv.hub).events
        assert (ev.index, ev.sourcetype, ev.source) == ("cavra", "cavra:evidence", "cavra")
        assert ev.event == EVENT
        assert ev.fields["session_id"] == "demo-session"
        (received,) = srv.hub.received("splunk")
        assert received.path == "/splunk/services/collector/event"
        assert received.headers["Authorization"] == f"Splunk {TOKEN}"
        assert uuid.UUID(received.headers["X-Splunk-Request-Channel"])
        record = d.to_dict()
        assert record["request"]["headers"]["Authorization"] == "Splunk **REDACTED**"


async def test_ack_token_gives_the_ack_id_as_remote_id() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(target(srv, token=ACK_TOKEN, index=None), EVENT, policy=POLICY, transport=tr)
        assert d.success, d.error
        assert str(d.remote_id) == "ackId:0"


async def test_invalid_token_rejected_once() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        bad = "00000000-dead-4bad-8bad-000000000000"
        d = await deliver_one(target(srv, token=bad), EVENT, policy=POLICY, transport=tr)
        assert not d.success
        assert (d.status_code, d.attempt_count) == (403, 1)
        assert d.error is not None and "code 4" in d.error and "not valid" in d.error


async def test_missing_credential_rejected_once() -> None:
    """HEC sees no usable token (wrong scheme word): 401 code 3, never retried."""
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(target(srv, authorization_scheme="Bearer"), EVENT, policy=POLICY, transport=tr)
        assert (d.success, d.status_code, d.attempt_count) == (False, 401, 1)
        assert d.error is not None and "authorization_scheme" in d.error
        srv.hub.add_fault("splunk", Fault(status=401, body='{"text":"Token is required","code":2}'))
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=tr)
        assert (d.success, d.status_code, d.attempt_count) == (False, 401, 1)
        assert d.error is not None and "no token was sent" in d.error
    with pytest.raises(ConfigError, match="environment variable HEC is empty"):
        target_from_mapping("splunk", {"url": "https://s.example", "token_env": "HEC"}, environ={"HEC": "  "})
    with pytest.raises(ConfigError, match="splunk: token is required"):
        target_from_mapping("splunk", {"url": "https://s.example"})


async def test_bad_index_reports_the_invalid_event_number() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(target(srv, index="forbidden"), EVENT, policy=POLICY, transport=tr)
        assert (d.success, d.status_code, d.attempt_count) == (False, 400, 1)
        assert d.error is not None
        assert "event number 0" in d.error and "code 7" in d.error and "index" in d.error
        assert hec.state(srv.hub).events == []


async def test_busy_collector_retried_then_delivered() -> None:
    async with server(failure="busy") as srv, AiohttpTransport() as tr:
        srv.hub.add_fault("splunk", Fault(status=500, body='{"text":"Internal server error","code":8}'))

        waits: list[float] = []

        async def recover(delay: float) -> None:
            waits.append(delay)
            if len(waits) == 2:  # the collector recovers after the 500 and one 503
                srv.settings["splunk"].failure = None

        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=tr, sleep=recover)
        assert d.success, d.error
        assert [a.status_code for a in d.attempts] == [500, 503, 200]
        assert [a.verdict for a in d.attempts] == ["retry", "retry", "delivered"]


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), base64.b64encode(value.encode()).decode()]


async def test_no_secret_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "c4a1a2a3-beef-4fed-8bad-0c0ffee0ca11"
    async with server(tokens={canary: {"name": "canary"}}) as srv, AiohttpTransport() as tr:
        url = srv.base_url + "/splunk/services/collector"
        env = {"HEC_URL": url, "HEC_TOKEN": canary}
        tgt = target_from_mapping(
            "splunk", {"url_env": "HEC_URL", "token_env": "HEC_TOKEN", "allow_http": True}, environ=env
        )
        ok = await deliver_one(tgt, EVENT, policy=POLICY, transport=tr)
        srv.hub.add_fault(
            "splunk", Fault(status=403, body=json.dumps({"text": f"Invalid token {canary}", "code": 4}))
        )
        bad = await deliver_one(tgt, {**EVENT, "event_id": "evt_2"}, policy=POLICY, transport=tr)
        srv.hub.add_fault("splunk", Fault(status=503, count=5, body=json.dumps({"text": canary, "code": 9})))
        busy = await deliver_one(tgt, {**EVENT, "event_id": "evt_3"}, policy=POLICY, transport=tr)
    assert ok.success and not bad.success and not busy.success
    errors: list[str] = []
    try:
        assert isinstance(tgt.settings, SplunkSettings)
        CONNECTOR.prepare({**EVENT, "blob": "x" * 950_000}, tgt.settings, Context(delivery_key="dk"), None)
    except PayloadTooLarge as exc:
        errors.append(str(exc))
    texts = [json.dumps(d.to_dict()) for d in (ok, bad, busy)] + [caplog.text, repr(tgt.settings), *errors]
    for form in _forms(canary) + _forms(f"Splunk {canary}"):
        for text in texts:
            assert form not in text
