"""The Datadog Logs connector: log entry, limits before sending, verdicts, delivery to the emulator."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any
from urllib.parse import quote

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, PayloadTooLarge, Reject, Response, Retry
from cavra.connectors.datadog import DatadogConnector, DatadogSettings, intake_url, log_entry, message_of
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators import datadog as intake
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.errors import ConfigError
from cavra.transport import AiohttpTransport

KEY = "ddc0ffee1234567890abcdef0123cafe"
EVENT: dict[str, Any] = {
    "event_type": "cavra.evidence_bundle",
    "event_id": "evt_datadog_0001",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "high",
}
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = DatadogConnector()


def settings(**kw: Any) -> DatadogSettings:
    return DatadogSettings.model_validate({"api_key": KEY, **kw})


def judge(status: int, body: Any, **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    s = settings()
    ctx = Context(delivery_key="dk")
    req = CONNECTOR.prepare(EVENT, s, ctx, None)
    return CONNECTOR.interpret(req, Response(status=status, headers=headers, body=raw), s, ctx, None)


def server(**overrides: Any) -> EmulatorServer:
    return EmulatorServer(
        providers=["datadog"], overrides={"datadog": {"api_keys": {KEY: "test"}, **overrides}}
    )


def target(srv: EmulatorServer, **extra: Any) -> Target:
    raw = {"url": srv.base_url + "/datadog/api/v2/logs", "api_key": KEY, "allow_http": True, **extra}
    return target_from_mapping("datadog", raw)


# -- unit ------------------------------------------------------------------------------------------------
def test_intake_url_from_site_or_url() -> None:
    assert intake_url(settings()) == "https://http-intake.logs.datadoghq.com/api/v2/logs"
    assert intake_url(settings(site="datadoghq.eu")) == "https://http-intake.logs.datadoghq.eu/api/v2/logs"
    assert intake_url(settings(url="https://intake.example")) == "https://intake.example/api/v2/logs"
    given = "https://intake.example/api/v2/logs"
    assert intake_url(settings(url=given)) == given
    with pytest.raises(ConfigError, match="datadog: site"):
        settings(site="https://datadoghq.com/")


def test_api_key_is_required() -> None:
    with pytest.raises(ConfigError, match="datadog: api_key is required"):
        DatadogSettings.model_validate({"site": "datadoghq.com"})


def test_log_entry_for_the_evidence_bundle() -> None:
    entry = log_entry(
        EVENT, settings(service="gov", ddsource="cavra-ci", tags=["env:prod", "team:sec"], hostname="h1")
    )
    assert entry["message"] == (
        "CAVRA evidence bundle: demo-session (Decisions 7, Blocked 4, Approval required 1, "
        "Max severity high, Event id evt_datadog_0001)"
    )
    assert entry["ddsource"] == "cavra-ci"
    assert entry["service"] == "gov"
    assert entry["hostname"] == "h1"
    assert entry["status"] == "error"
    assert entry["ddtags"] == "env:prod,team:sec,event_type:cavra.evidence_bundle,severity:high"
    for key, value in EVENT.items():
        assert entry[key] == value


def test_log_entry_defaults_and_reserved_names() -> None:
    entry = log_entry({"event_type": "cavra.custom", "message": "mine", "status": "done", "x": 1}, settings())
    assert entry["message"].startswith("CAVRA event cavra.custom")
    assert (entry["cavra_message"], entry["cavra_status"], entry["x"]) == ("mine", "done", 1)
    assert (entry["status"], entry["service"], entry["ddsource"]) == ("info", "cavra", "cavra")
    assert "hostname" not in entry
    assert entry["event_id"].startswith("evt_")
    assert message_of({"event_type": "e"}) == "CAVRA event e"


@pytest.mark.parametrize(
    ("sev", "status"), [("critical", "critical"), ("high", "error"), ("medium", "warn"), ("low", "notice")]
)
def test_status_from_severity(sev: str, status: str) -> None:
    assert log_entry({"event_type": "e", "severity": sev}, settings())["status"] == status


def test_prepare_sends_a_json_array_with_the_key_as_a_secret_header() -> None:
    req = CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk"), None)
    body = json.loads(req.body)
    assert isinstance(body, list) and len(body) == 1
    key = req.headers["DD-API-KEY"]
    assert not isinstance(key, str) and key.reveal() == KEY
    assert req.headers["Content-Type"] == "application/json"


def test_limits_are_enforced_before_sending() -> None:
    with pytest.raises(PayloadTooLarge, match="1000000 bytes per log"):
        CONNECTOR.prepare({**EVENT, "blob": "x" * 1_000_001}, settings(), Context(delivery_key="dk"), None)


def test_verdicts() -> None:
    assert judge(202, {}) == Delivered(detail={"status": 202})
    unauthorized = judge(
        401, {"errors": [{"status": "401", "title": "Unauthorized", "detail": "API key is missing"}]}
    )
    assert isinstance(unauthorized, Reject) and "check api_key" in unauthorized.reason
    forbidden = judge(
        403, {"errors": [{"status": "403", "title": "Forbidden", "detail": "API key is invalid"}]}
    )
    assert isinstance(forbidden, Reject) and "API key is invalid" in forbidden.reason
    assert isinstance(judge(403, {"detail": "API key is invalid"}), Reject)  # the older body shape
    assert isinstance(judge(413, {}), Reject)
    assert isinstance(judge(400, {}), Reject)
    for status in (408, 429, 500, 503):
        assert isinstance(judge(status, {}), Retry)
    assert judge(429, {}, **{"retry-after": "4"}) == Retry("HTTP 429", after=4.0)


# -- integration -----------------------------------------------------------------------------------------
async def test_happy_path() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(
            target(srv, service="cavra-gov", tags=["env:test"]), EVENT, policy=POLICY, transport=tr
        )
        assert d.success, d.error
        assert (d.status_code, d.attempt_count) == (202, 1)
        (log,) = intake.state(srv.hub).logs
        assert not log.truncated
        assert log.entry["service"] == "cavra-gov"
        assert log.entry["blocked_count"] == 4
        assert "env:test" in log.entry["ddtags"].split(",")
        (received,) = srv.hub.received("datadog")
        assert received.headers["DD-API-KEY"] == KEY
        assert d.to_dict()["request"]["headers"]["DD-API-KEY"] == "**REDACTED**"


async def test_invalid_key_rejected_once() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(target(srv, api_key="0" * 32), EVENT, policy=POLICY, transport=tr)
        assert (d.success, d.status_code, d.attempt_count) == (False, 403, 1)
        assert d.error is not None and "refused the API key" in d.error


async def test_missing_key_rejected_once() -> None:
    """The intake's answer when no key arrives (e.g. a proxy stripped it): 401, not retried."""
    async with server() as srv, AiohttpTransport() as tr:
        body = '{"errors":[{"status":"401","title":"Unauthorized","detail":"API key is missing"}]}'
        srv.hub.add_fault("datadog", Fault(status=401, body=body))
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=tr)
        assert (d.success, d.status_code, d.attempt_count) == (False, 401, 1)
        assert d.error is not None and "did not receive an API key" in d.error
    with pytest.raises(ConfigError, match="api_key is required"):
        target_from_mapping("datadog", {"url": "https://intake.example"})


async def test_oversized_entry_is_not_sent() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(target(srv), {**EVENT, "blob": "y" * 1_100_000}, policy=POLICY, transport=tr)
        assert (d.success, d.attempt_count) == (False, 0)
        assert d.error is not None and "not sent" in d.error and "1000000" in d.error
        assert srv.hub.received("datadog") == []


async def test_no_secret_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "ddcanary0000leak1111secret2222zz"
    async with server(api_keys={canary: "canary"}) as srv, AiohttpTransport() as tr:
        env = {"DD_URL": srv.base_url + "/datadog/api/v2/logs", "DD_KEY": canary}
        tgt = target_from_mapping(
            "datadog", {"url_env": "DD_URL", "api_key_env": "DD_KEY", "allow_http": True}, environ=env
        )
        ok = await deliver_one(tgt, EVENT, policy=POLICY, transport=tr)
        echo = json.dumps({"errors": [{"status": "403", "detail": f"API key {canary} is invalid"}]})
        srv.hub.add_fault("datadog", Fault(status=403, body=echo))
        bad = await deliver_one(tgt, {**EVENT, "event_id": "evt_2"}, policy=POLICY, transport=tr)
        srv.hub.add_fault("datadog", Fault(status=500, count=5, body=canary))
        down = await deliver_one(tgt, {**EVENT, "event_id": "evt_3"}, policy=POLICY, transport=tr)
    assert ok.success and not bad.success and not down.success
    texts = [json.dumps(d.to_dict()) for d in (ok, bad, down)] + [caplog.text, repr(tgt.settings)]
    for form in (canary, quote(canary, safe=""), base64.b64encode(canary.encode()).decode()):
        for text in texts:
            assert form not in text
