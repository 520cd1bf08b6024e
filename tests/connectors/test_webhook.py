"""The generic webhook connector: envelope, Standard Webhooks signing, verdicts, delivery to the emulator."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from standardwebhooks import Webhook

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, Reject, Response, Retry
from cavra.connectors.webhook import WebhookConnector, WebhookSettings, envelope, sign, webhook_id
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.emulators.webhook import receiver_state, signature_matches
from cavra.errors import ConfigError
from cavra.events import WEBHOOK_SCHEMA
from cavra.secrets import Secret
from cavra.transport import AiohttpTransport

SECRET = "whsec_" + base64.b64encode(b"leak-canary-webhook-key-7f3a9c21").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"some-other-receivers-key-5e6d7c8").decode()
TOKEN = "tok-canary-webhook-4b2e9d"
EVENT: dict[str, Any] = {
    "event_type": "cavra.evidence_bundle",
    "event_id": "evt_webhook_test_0001",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "high",
}
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = WebhookConnector()


def settings(**extra: Any) -> WebhookSettings:
    values = {"url": "https://receiver.example/hook", "signing_secret": SECRET} | extra
    return WebhookSettings.model_validate(values)


def response(status: int, body: bytes = b"", **headers: str) -> Response:
    return Response(
        status=status, headers={k.lower().replace("_", "-"): v for k, v in headers.items()}, body=body
    )


def judge(status: int, **headers: str) -> Any:
    s = settings()
    ctx = Context(delivery_key="dk_1")
    req = CONNECTOR.prepare(EVENT, s, ctx, None)
    return CONNECTOR.interpret(req, response(status, **headers), s, ctx, None)


# -- unit: the request -----------------------------------------------------------------------------------
def test_envelope_shape() -> None:
    req = CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk_1", now=1_700_000_000.25), None)
    body = json.loads(req.body)
    assert body == {
        "type": "cavra.evidence_bundle",
        "timestamp": "2023-11-14T22:13:20.250Z",
        "schema": WEBHOOK_SCHEMA,
        "event_id": "evt_webhook_test_0001",
        "session_id": "demo-session",
        "data": EVENT,
    }
    assert req.method == "POST"
    assert req.headers["Content-Type"] == "application/json"


def test_envelope_uses_the_events_own_timestamp_and_derives_missing_ids() -> None:
    env = envelope({"event_type": "x.y", "timestamp": "2026-01-02T03:04:05+00:00"}, now=0)
    assert env["timestamp"] == "2026-01-02T03:04:05.000Z"
    assert env["session_id"] is None
    assert env["event_id"].startswith("evt_")


def test_signing_matches_the_spec_test_vector() -> None:
    got = sign(
        Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        '{"test": 2432232314}',
    )
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_headers_verify_with_library_and_emulator() -> None:
    req = CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk_1"), None)
    headers = {k: str(v) for k, v in req.headers.items()}
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert Webhook(SECRET).verify(req.body, headers)["event_id"] == EVENT["event_id"]
    assert signature_matches(
        SECRET, headers["webhook-id"], headers["webhook-timestamp"], req.body, headers["webhook-signature"]
    )
    assert not signature_matches(
        OTHER_SECRET,
        headers["webhook-id"],
        headers["webhook-timestamp"],
        req.body,
        headers["webhook-signature"],
    )


def test_webhook_id_is_stable_per_delivery_key_and_has_no_dot() -> None:
    a1 = CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk_a"), None).headers["webhook-id"]
    a2 = CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk_a", attempt=3), None).headers[
        "webhook-id"
    ]
    b = CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk_b"), None).headers["webhook-id"]
    assert a1 == a2 == webhook_id("dk_a")
    assert a1 != b
    assert "." not in webhook_id("a.b.c")


def test_authorization_headers_are_secrets() -> None:
    req = CONNECTOR.prepare(EVENT, settings(token=TOKEN), Context(delivery_key="k"), None)
    auth = req.headers["Authorization"]
    assert isinstance(auth, Secret)
    assert auth.reveal() == f"Bearer {TOKEN}"
    req = CONNECTOR.prepare(
        EVENT, settings(authorization="Basic dXNlcjpwYXNz"), Context(delivery_key="k"), None
    )
    assert isinstance(req.headers["Authorization"], Secret)
    assert req.headers["Authorization"].reveal() == "Basic dXNlcjpwYXNz"
    req = CONNECTOR.prepare(
        EVENT, settings(token=TOKEN, authorization_scheme="Token"), Context(delivery_key="k"), None
    )
    assert str(req.headers["Authorization"]) == "**REDACTED**"
    assert req.headers["Authorization"].reveal() == f"Token {TOKEN}"  # type: ignore[union-attr]


def test_no_signature_without_secret() -> None:
    req = CONNECTOR.prepare(EVENT, settings(signing_secret=None), Context(delivery_key="k"), None)
    assert "webhook-signature" not in req.headers
    assert req.headers["webhook-id"] == webhook_id("k")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"signing_secret": SECRET}, "webhook: url is required"),
        (
            {"url": "https://x.example", "signing_secret": "not-a-whsec-secret-value"},
            "signing_secret must be",
        ),
        ({"url": "https://x.example", "signing_secret": "whsec_!!!notbase64!!!"}, "signing_secret must be"),
        ({"url": "https://x.example", "token": TOKEN, "authorization": "Bearer abcdef"}, "not both"),
    ],
)
def test_settings_validation(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        WebhookSettings.model_validate(values)
    assert "not-a-whsec" not in str(info.value)
    assert TOKEN not in str(info.value)


# -- unit: the verdicts ----------------------------------------------------------------------------------
def test_verdicts() -> None:
    ok = judge(204)
    assert isinstance(ok, Delivered)
    assert ok.remote_id == webhook_id("dk_1")
    gone = judge(410)
    assert isinstance(gone, Reject)
    assert "asked to be disabled" in gone.reason
    assert isinstance(judge(302, location="https://elsewhere.example/"), Reject)
    assert "redirect" in judge(301).reason
    throttled = judge(429, retry_after="7")
    assert isinstance(throttled, Retry)
    assert throttled.after == 7.0
    for status in (500, 502, 503, 504, 408):
        assert isinstance(judge(status), Retry), status
    for status in (400, 401, 403, 404, 413, 501):
        assert isinstance(judge(status), Reject), status


# -- integration against the emulator --------------------------------------------------------------------
@pytest.fixture
async def server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["webhook"], overrides={"webhook": {"secret": SECRET}}) as srv:
        yield srv


def target(url: str, **extra: Any) -> Target:
    return target_from_mapping("webhook", {"url": url, "signing_secret": SECRET, "allow_http": True} | extra)


def posts(srv: EmulatorServer) -> list[Any]:
    return [r for r in srv.hub.received("webhook") if r.method == "POST"]


async def test_happy_path(server: EmulatorServer, transport: AiohttpTransport) -> None:
    delivery = await deliver_one(
        target(server.base_url + "/webhook/cavra"), EVENT, policy=POLICY, transport=transport
    )
    assert delivery.success, delivery.error
    assert (delivery.status_code, delivery.attempt_count) == (200, 1)
    (received,) = posts(server)
    assert received.path == "/webhook/cavra"
    assert Webhook(SECRET).verify(received.body, received.headers)["schema"] == WEBHOOK_SCHEMA
    state = receiver_state(server.hub)
    assert state.unique == 1
    (payload,) = state.payloads("cavra")
    assert payload["type"] == "cavra.evidence_bundle"
    assert payload["data"] == EVENT
    assert str(delivery.remote_id) == received.headers["webhook-id"]


async def test_redelivery_is_deduplicated_by_the_receiver(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    t = target(server.base_url + "/webhook/cavra")
    first = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    second = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert first.success
    assert second.success
    assert len({r.headers["webhook-id"] for r in posts(server)}) == 1
    stats = receiver_state(server.hub).stats()
    assert (stats["unique"], stats["duplicates"]) == (1, 1)


async def test_missing_signature_rejected_once(server: EmulatorServer, transport: AiohttpTransport) -> None:
    t = target_from_mapping("webhook", {"url": server.base_url + "/webhook/cavra", "allow_http": True})
    delivery = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert not delivery.success
    assert (delivery.status_code, delivery.attempt_count) == (400, 1)


async def test_wrong_secret_rejected_once(server: EmulatorServer, transport: AiohttpTransport) -> None:
    t = target(server.base_url + "/webhook/cavra", signing_secret=OTHER_SECRET)
    delivery = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert not delivery.success
    assert (delivery.status_code, delivery.attempt_count) == (401, 1)
    assert receiver_state(server.hub).unique == 0


async def test_bearer_token(
    emulator_factory: Callable[..., EmulatorServer], transport: AiohttpTransport
) -> None:
    overrides = {"webhook": {"secret": SECRET, "bearer_token": TOKEN}}
    async with emulator_factory(providers=["webhook"], overrides=overrides) as srv:
        url = srv.base_url + "/webhook/cavra"
        missing = await deliver_one(target(url), EVENT, policy=POLICY, transport=transport)
        wrong = await deliver_one(
            target(url, token="tok-wrong-value"), EVENT, policy=POLICY, transport=transport
        )
        good = await deliver_one(target(url, token=TOKEN), EVENT, policy=POLICY, transport=transport)
        assert [(d.success, d.status_code, d.attempt_count) for d in (missing, wrong, good)] == [
            (False, 401, 1),
            (False, 401, 1),
            (True, 200, 1),
        ]
        assert good.request is not None
        assert good.request.to_dict()["headers"]["Authorization"] == "Bearer **REDACTED**"


async def test_5xx_retried_with_the_same_webhook_id(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    server.hub.add_fault("webhook", Fault(status=503, count=2))
    delivery = await deliver_one(
        target(server.base_url + "/webhook/cavra"), EVENT, policy=POLICY, transport=transport
    )
    assert delivery.success
    assert [a.status_code for a in delivery.attempts] == [503, 503, 200]
    ids = {r.headers["webhook-id"] for r in posts(server)}
    assert len(ids) == 1
    assert receiver_state(server.hub).unique == 1


@pytest.mark.parametrize(
    ("status", "text"), [(400, "HTTP 400"), (410, "asked to be disabled"), (302, "redirect")]
)
async def test_permanent_answers_not_retried(
    server: EmulatorServer, transport: AiohttpTransport, status: int, text: str
) -> None:
    server.hub.add_fault(
        "webhook", Fault(status=status, headers={"Location": server.base_url + "/webhook/other"})
    )
    delivery = await deliver_one(
        target(server.base_url + "/webhook/cavra"), EVENT, policy=POLICY, transport=transport
    )
    assert not delivery.success
    assert delivery.attempt_count == 1
    assert text in str(delivery.error)
    assert len(posts(server)) == 1  # a redirect is never followed


async def test_gone_receiver(
    emulator_factory: Callable[..., EmulatorServer], transport: AiohttpTransport
) -> None:
    overrides = {"webhook": {"secret": SECRET, "gone_receivers": ["old"]}}
    async with emulator_factory(providers=["webhook"], overrides=overrides) as srv:
        delivery = await deliver_one(
            target(srv.base_url + "/webhook/old"), EVENT, policy=POLICY, transport=transport
        )
        assert (delivery.success, delivery.status_code, delivery.attempt_count) == (False, 410, 1)
        assert "disabled" in str(delivery.error)


async def test_query_string_is_redacted(server: EmulatorServer, transport: AiohttpTransport) -> None:
    delivery = await deliver_one(
        target(server.base_url + "/webhook/cavra?api_key=qs-canary-123456"),
        EVENT,
        policy=POLICY,
        transport=transport,
    )
    assert delivery.success
    dumped = json.dumps(delivery.to_dict())
    assert "qs-canary-123456" not in dumped
    assert "api_key=**REDACTED**" in dumped


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    out = {secret, quote(secret, safe=""), quote_plus(secret), base64.b64encode(raw).decode()}
    out.add(base64.b64encode(raw).decode().rstrip("="))
    if secret.startswith("whsec_"):
        out.add(secret[len("whsec_") :])
    return out


@pytest.mark.parametrize("outcome", ["success", "failure"])
async def test_no_secret_leaks(
    emulator_factory: Callable[..., EmulatorServer],
    transport: AiohttpTransport,
    caplog: pytest.LogCaptureFixture,
    outcome: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    overrides = {"webhook": {"secret": SECRET, "bearer_token": TOKEN}}
    async with emulator_factory(providers=["webhook"], overrides=overrides) as srv:
        if outcome == "failure":
            srv.hub.add_fault("webhook", Fault(status=500, count=5, body=f"echo {TOKEN} {SECRET}"))
        delivery = await deliver_one(
            target(srv.base_url + "/webhook/cavra", token=TOKEN), EVENT, policy=POLICY, transport=transport
        )
    assert delivery.success is (outcome == "success")
    text = json.dumps(delivery.to_dict()) + caplog.text + str(delivery.error)
    for secret in (SECRET, TOKEN):
        for form in forms(secret):
            assert form not in text, f"a form of a secret leaked: {outcome}"
