"""The Teams connector: Adaptive Card and MessageCard rendering, Workflows and legacy verdicts, delivery."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, PayloadTooLarge, Reject, Response, Retry
from cavra.connectors.teams import (
    ADAPTIVE,
    TeamsConnector,
    TeamsSettings,
    adaptive_card,
    is_legacy,
    message_card,
    payload,
)
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.emulators.teams import check_message, render_problem, teams_state, workflow_url
from cavra.errors import ConfigError
from cavra.transport import AiohttpTransport

WORKFLOW = "9f1e2d3c4b5a69788796a5b4c3d2e1f0"
SIG = "teamsCanarySig_Qx7Zr4Lm9Vb2Nc8Wd5Ks1Jp6"
LEGACY = (
    "aaaaaaaa-0000-4000-8000-000000000001@bbbbbbbb-1111-4111-8111-111111111111"
    "/IncomingWebhook/feedfacecafebeef0123456789abcdef/cccccccc-2222-4222-8222-222222222222"
)
EVENT: dict[str, Any] = {
    "event_type": "cavra.evidence_bundle",
    "event_id": "evt_teams_test_0001",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "critical",
    "link": "https://cavra.example/s/demo-session",
}
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = TeamsConnector()
WF_URL = f"https://prod-01.westeurope.logic.azure.com:443/workflows/{WORKFLOW}/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
LEGACY_URL = f"https://contoso.webhook.office.com/webhookb2/{LEGACY}"


def judge(url: str, status: int, body: bytes = b"", **headers: str) -> Any:
    s = TeamsSettings.model_validate({"url": url})
    ctx = Context(delivery_key="dk")
    req = CONNECTOR.prepare(EVENT, s, ctx, None)
    resp = Response(status=status, headers={k.replace("_", "-"): v for k, v in headers.items()}, body=body)
    return CONNECTOR.interpret(req, resp, s, ctx, None)


# -- unit: rendering -------------------------------------------------------------------------------------
def test_adaptive_card_in_the_workflows_envelope() -> None:
    body = payload(EVENT, "adaptive")
    assert check_message(body) is None
    (att,) = body["attachments"]
    assert att["contentType"] == ADAPTIVE
    assert att["contentUrl"] is None
    assert render_problem(att) is None
    card = att["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title, facts, footer = card["body"]
    assert title["text"] == "CAVRA evidence bundle: demo-session"
    assert title["color"] == "Attention"
    got = {f["title"]: f["value"] for f in facts["facts"]}
    assert got == {
        "Event": "cavra.evidence_bundle",
        "Session": "demo-session",
        "Decisions": "7",
        "Blocked": "4",
        "Approval required": "1",
        "Max severity": "critical",
    }
    assert footer["text"] == "Event id evt_teams_test_0001"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in CAVRA", "url": EVENT["link"]}]


@pytest.mark.parametrize(("sev", "color"), [("medium", "Warning"), ("low", "Accent"), ("info", "Good")])
def test_title_colour_follows_severity(sev: str, color: str) -> None:
    assert adaptive_card(EVENT | {"max_severity": sev})["body"][0]["color"] == color


def test_message_card() -> None:
    card = message_card(EVENT)
    assert card["@type"] == "MessageCard"
    assert card["summary"] == "CAVRA evidence bundle: demo-session"
    assert card["themeColor"] == "A4262C"
    facts = {f["name"]: f["value"] for f in card["sections"][0]["facts"]}
    assert facts["Blocked"] == "4"
    assert card["potentialAction"][0]["targets"][0]["uri"] == EVENT["link"]
    assert payload(EVENT, "messagecard") == card


def test_generic_event_gets_a_severity_fact_and_no_action() -> None:
    card = adaptive_card({"event_type": "cavra.custom", "event_id": "e1", "note": "n"})
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Severity"] == "info"
    assert facts["Note"] == "n"
    assert "actions" not in card


def test_long_values_are_clipped_and_oversize_is_refused() -> None:
    event = {"event_type": "cavra.custom", "event_id": "e", "session_id": "s" * 5000}
    body = payload(event, "adaptive")
    assert all(len(f["value"]) <= 1000 for f in body["attachments"][0]["content"]["body"][1]["facts"])
    huge = {"event_type": "cavra.custom", "event_id": "e" * 40_000}
    with pytest.raises(PayloadTooLarge, match="28000 bytes"):
        CONNECTOR.prepare(
            huge, TeamsSettings.model_validate({"url": WF_URL}), Context(delivery_key="k"), None
        )


def test_url_kind_detection_and_settings() -> None:
    assert is_legacy(LEGACY_URL)
    assert is_legacy("http://127.0.0.1:8080/teams/webhookb2/x")
    assert not is_legacy(WF_URL)
    with pytest.raises(ConfigError, match="teams: url is required"):
        TeamsSettings.model_validate({"card_format": "adaptive"})
    with pytest.raises(ValueError, match="card_format"):
        TeamsSettings.model_validate({"url": WF_URL, "card_format": "html"})


# -- unit: verdicts --------------------------------------------------------------------------------------
def test_workflow_verdicts() -> None:
    assert isinstance(judge(WF_URL, 202), Delivered)
    assert isinstance(judge(WF_URL, 200), Delivered)
    throttled = judge(WF_URL, 429, **{"retry-after": "4"})
    assert isinstance(throttled, Retry)
    assert throttled.after == 4.0
    assert isinstance(judge(WF_URL, 502), Retry)
    body = b'{"error":{"code":"DirectApiInvalidAuthorizationSignature","message":"x"}}'
    rejected = judge(WF_URL, 401, body)
    assert isinstance(rejected, Reject)
    assert "DirectApiInvalidAuthorizationSignature" in rejected.reason
    for status in (400, 403, 404):
        assert isinstance(judge(WF_URL, status), Reject)


def test_legacy_verdicts() -> None:
    assert isinstance(judge(LEGACY_URL, 200, b"1"), Delivered)
    # the legacy connector's throttling is a 200 whose body mentions HTTP error 429
    throttled = judge(LEGACY_URL, 200, b"Microsoft Teams endpoint returned HTTP error 429 with ContextId x")
    assert isinstance(throttled, Retry)
    assert throttled.after is not None
    other = judge(LEGACY_URL, 200, b"Webhook Bad Request")
    assert isinstance(other, Reject)
    assert "without the success body" in other.reason
    missing = judge(LEGACY_URL, 400, b"Summary or Text is required.")
    assert isinstance(missing, Reject)
    assert "Summary or Text is required." in missing.reason
    assert isinstance(judge(LEGACY_URL, 503), Retry)


# -- integration -----------------------------------------------------------------------------------------
@pytest.fixture
async def server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    overrides = {"teams": {"workflows": {WORKFLOW: SIG}, "legacy_hooks": [LEGACY]}}
    async with emulator_factory(providers=["teams"], overrides=overrides) as srv:
        yield srv


def target(url: str, **extra: Any) -> Target:
    return target_from_mapping("teams", {"url": url, "allow_http": True} | extra)


def wf(srv: EmulatorServer, sig: str = SIG) -> str:
    return workflow_url(srv.base_url, WORKFLOW, sig)


async def test_workflow_happy_path(server: EmulatorServer, transport: AiohttpTransport) -> None:
    delivery = await deliver_one(target(wf(server)), EVENT, policy=POLICY, transport=transport)
    assert delivery.success, delivery.error
    assert (delivery.status_code, delivery.attempt_count) == (202, 1)
    (post,) = teams_state(server.hub).posts
    assert (post.kind, post.rendered) == ("workflows", True)
    assert post.payload == payload(EVENT, "adaptive")


@pytest.mark.parametrize("url", [WF_URL, WF_URL.replace("prod-01.westeurope.logic.azure.com:443", "x.y")])
def test_messagecard_with_a_workflows_url_is_refused_at_load(url: str) -> None:
    # Workflows post Adaptive Cards only: a MessageCard is accepted (202) and never posted
    with pytest.raises(ConfigError, match=r"connectors\.teams: card_format messagecard needs a legacy"):
        target_from_mapping("teams", {"url": url, "card_format": "messagecard"})
    legacy = target_from_mapping("teams", {"url": LEGACY_URL, "card_format": "messagecard"})
    assert legacy.settings.card_format == "messagecard"


async def test_messagecard_via_url_env_with_a_workflows_url_is_refused(server: EmulatorServer) -> None:
    env = {"TEAMS_WEBHOOK_URL": wf(server)}
    with pytest.raises(ConfigError, match="card_format messagecard"):
        target_from_mapping(
            "teams", {"url_env": "TEAMS_WEBHOOK_URL", "card_format": "messagecard"}, environ=env
        )
    assert teams_state(server.hub).posts == []


@pytest.mark.parametrize("card_format", ["messagecard", "adaptive"])
async def test_legacy_connector(
    server: EmulatorServer, transport: AiohttpTransport, card_format: str
) -> None:
    url = f"{server.base_url}/teams/webhookb2/{LEGACY}"
    delivery = await deliver_one(
        target(url, card_format=card_format), EVENT, policy=POLICY, transport=transport
    )
    assert delivery.success, delivery.error
    assert delivery.attempts[0].step == "legacy_connector"
    assert teams_state(server.hub).posts[0].kind == "legacy"


async def test_legacy_throttle_in_a_200_is_retried(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    url = f"{server.base_url}/teams/webhookb2/{LEGACY}"
    t = target(url, card_format="messagecard")
    events = [EVENT | {"event_id": f"evt_burst_{i}"} for i in range(5)]
    started = time.monotonic()
    results = [await deliver_one(t, e, policy=POLICY, transport=transport) for e in events]
    assert all(r.success for r in results), [r.error for r in results]
    last = results[-1]
    assert [a.verdict for a in last.attempts] == ["retry", "delivered"]
    assert last.attempts[0].status_code == 200
    assert time.monotonic() - started >= 1.0
    assert len(teams_state(server.hub).posts) == 5


async def test_legacy_retired_is_rejected(
    emulator_factory: Callable[..., EmulatorServer], transport: AiohttpTransport
) -> None:
    overrides = {"teams": {"legacy_hooks": [LEGACY], "legacy_retired": True}}
    async with emulator_factory(providers=["teams"], overrides=overrides) as srv:
        delivery = await deliver_one(
            target(f"{srv.base_url}/teams/webhookb2/{LEGACY}"), EVENT, policy=POLICY, transport=transport
        )
        assert (delivery.success, delivery.status_code, delivery.attempt_count) == (False, 410, 1)


async def test_missing_and_invalid_sig_rejected_once(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    missing = wf(server).split("&sig=")[0]
    for url, code in (
        (missing, "DirectApiAuthorizationRequired"),
        (wf(server, "forgedSig000000"), "DirectApiInvalidAuthorizationSignature"),
    ):
        delivery = await deliver_one(target(url), EVENT, policy=POLICY, transport=transport)
        assert (delivery.success, delivery.status_code, delivery.attempt_count) == (False, 401, 1)
        assert code in str(delivery.error)
    assert teams_state(server.hub).posts == []


async def test_429_retry_after_is_honoured(
    emulator_factory: Callable[..., EmulatorServer], transport: AiohttpTransport
) -> None:
    overrides = {"teams": {"workflows": {WORKFLOW: SIG}, "throttled": True, "throttle_retry_after": 1}}
    async with emulator_factory(providers=["teams"], overrides=overrides) as srv:
        settings = srv.settings["teams"]

        async def unthrottle_after_first(seconds: float) -> None:
            settings.throttled = False
            await asyncio.sleep(seconds)

        started = time.monotonic()
        delivery = await deliver_one(
            target(wf(srv)), EVENT, policy=POLICY, transport=transport, sleep=unthrottle_after_first
        )
        assert time.monotonic() - started >= 1.0
        assert delivery.success
        assert [a.status_code for a in delivery.attempts] == [429, 202]
        assert delivery.attempts[0].retry_after == 1.0


async def test_schema_mismatch_not_retried(server: EmulatorServer, transport: AiohttpTransport) -> None:
    server.hub.add_fault(
        "teams", Fault(status=400, body='{"error":{"code":"TriggerInputSchemaMismatch","message":"x"}}')
    )
    delivery = await deliver_one(target(wf(server)), EVENT, policy=POLICY, transport=transport)
    assert (delivery.success, delivery.attempt_count) == (False, 1)
    assert "TriggerInputSchemaMismatch" in str(delivery.error)


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    b64 = base64.b64encode(raw).decode()
    return {secret, quote(secret, safe=""), quote_plus(secret), b64, b64.rstrip("=")}


@pytest.mark.parametrize("kind", ["workflow", "legacy"])
@pytest.mark.parametrize("outcome", ["success", "failure"])
async def test_url_never_appears_in_the_record(
    server: EmulatorServer,
    transport: AiohttpTransport,
    caplog: pytest.LogCaptureFixture,
    outcome: str,
    kind: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = wf(server) if kind == "workflow" else f"{server.base_url}/teams/webhookb2/{LEGACY}"
    if outcome == "failure":
        echo = json.dumps({"error": {"code": "Boom", "message": f"{url} sig={SIG} {LEGACY}"}})
        server.hub.add_fault("teams", Fault(status=500, count=5, body=echo))
    card_format = "adaptive" if kind == "workflow" else "messagecard"
    delivery = await deliver_one(
        target(url, card_format=card_format), EVENT, policy=POLICY, transport=transport
    )
    assert delivery.success is (outcome == "success")
    record = delivery.to_dict()
    assert record["request"]["url"].startswith(server.base_url + "/**REDACTED**")
    text = json.dumps(record) + caplog.text + str(delivery.error)
    for secret in (SIG, url) if kind == "workflow" else (LEGACY, url):
        for form in forms(secret):
            assert form not in text
    assert "webhookb2" not in text
