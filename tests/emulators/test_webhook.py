"""The Standard Webhooks receiver emulator, over real loopback HTTP."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from standardwebhooks import Webhook

from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.emulators.webhook import DEMO_SECRET, expected_signature, receiver_state, signature_matches

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = "1614265330"
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def signed_headers(
    body: bytes, *, msg_id: str = "msg_1", secret: str = DEMO_SECRET, ts: int | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if ts is None else ts
    sig = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": sig}


@pytest.fixture
async def server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["webhook"]) as srv:
        yield srv


async def post(srv: EmulatorServer, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(srv.base_url + path, data=body, headers=headers) as resp,
    ):
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None)


def test_spec_test_vector() -> None:
    digest = expected_signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY)
    assert "v1," + base64.b64encode(digest).decode() == SPEC_SIG
    assert signature_matches(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY, SPEC_SIG)
    assert signature_matches(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY, "v1a,AAAA v2,xyz " + SPEC_SIG)
    assert not signature_matches(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY + b" ", SPEC_SIG)
    assert not signature_matches(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY, "v1a," + SPEC_SIG[3:])


async def test_accepts_signed_delivery_on_any_receiver_path(server: EmulatorServer) -> None:
    body = b'{"type": "a.b", "data": {}}'
    for path in ("/webhook/cavra", "/webhook/soc/ingest"):
        status, answer = await post(server, path, body, signed_headers(body, msg_id="msg_" + path[-4:]))
        assert status == 200
        assert answer["duplicate"] is False
    state = receiver_state(server.hub)
    assert state.unique == 2
    assert {d.receiver for d in state.deliveries.values()} == {"cavra", "soc/ingest"}


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_each_header_is_required(server: EmulatorServer, missing: str) -> None:
    body = b"{}"
    headers = signed_headers(body)
    del headers[missing]
    status, _ = await post(server, "/webhook/cavra", body, headers)
    assert status == 400
    assert receiver_state(server.hub).unique == 0


async def test_missing_header_status_is_configurable(emulator_factory: Callable[..., EmulatorServer]) -> None:
    async with emulator_factory(
        providers=["webhook"], overrides={"webhook": {"missing_header_status": 401}}
    ) as srv:
        status, _ = await post(srv, "/webhook/cavra", b"{}", {})
        assert status == 401


async def test_wrong_signature_and_tampered_body_rejected(server: EmulatorServer) -> None:
    body = b'{"n": 1}'
    wrong = signed_headers(
        body, secret="whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    )
    assert (await post(server, "/webhook/cavra", body, wrong))[0] == 401
    good = signed_headers(body)
    assert (await post(server, "/webhook/cavra", b'{"n": 2}', good))[0] == 401
    assert receiver_state(server.hub).unique == 0
    assert receiver_state(server.hub).rejected == 2


@pytest.mark.parametrize(("offset", "ok"), [(-299, True), (299, True), (-400, False), (400, False)])
async def test_timestamp_tolerance(server: EmulatorServer, offset: int, ok: bool) -> None:
    body = b"{}"
    status, _ = await post(server, "/webhook/cavra", body, signed_headers(body, ts=int(time.time()) + offset))
    assert (status == 200) is ok


async def test_multiple_signatures_any_v1_match(server: EmulatorServer) -> None:
    body = b"{}"
    headers = signed_headers(body)
    headers["webhook-signature"] = "v1,bm90LXRoZS1zaWduYXR1cmU= v1a,Zm9v " + headers["webhook-signature"]
    assert (await post(server, "/webhook/cavra", body, headers))[0] == 200


async def test_duplicate_webhook_id_is_not_reprocessed(server: EmulatorServer) -> None:
    body = b'{"x": 1}'
    first = await post(server, "/webhook/cavra", body, signed_headers(body, msg_id="msg_dup"))
    # a redelivery: same id, new timestamp and signature
    second = await post(
        server, "/webhook/cavra", body, signed_headers(body, msg_id="msg_dup", ts=int(time.time()) - 5)
    )
    assert first == (200, {"received": True, "webhook_id": "msg_dup", "duplicate": False})
    assert second == (200, {"received": True, "webhook_id": "msg_dup", "duplicate": True})
    async with aiohttp.ClientSession() as session, session.get(server.base_url + "/webhook/_stats") as resp:
        stats = await resp.json()
    assert stats["unique"] == 1
    assert stats["duplicates"] == 1
    assert stats["by_receiver"] == {"cavra": {"unique": 1, "duplicates": 1}}


async def test_bearer_token_check(emulator_factory: Callable[..., EmulatorServer]) -> None:
    async with emulator_factory(
        providers=["webhook"], overrides={"webhook": {"bearer_token": "tok-123"}}
    ) as srv:
        body = b"{}"
        assert (await post(srv, "/webhook/cavra", body, signed_headers(body)))[0] == 401
        headers = signed_headers(body) | {"Authorization": "Bearer wrong"}
        assert (await post(srv, "/webhook/cavra", body, headers))[0] == 401
        headers = signed_headers(body) | {"Authorization": "Bearer tok-123"}
        assert (await post(srv, "/webhook/cavra", body, headers))[0] == 200


async def test_gone_receiver_and_faults(emulator_factory: Callable[..., EmulatorServer]) -> None:
    overrides = {"webhook": {"gone_receivers": ["old"], "response_status": 204}}
    async with emulator_factory(providers=["webhook"], overrides=overrides) as srv:
        body = b"{}"
        assert (await post(srv, "/webhook/old", body, signed_headers(body)))[0] == 410
        assert (await post(srv, "/webhook/new", body, signed_headers(body))) == (204, None)
        srv.hub.add_fault("webhook", Fault(status=429, headers={"Retry-After": "1"}))
        assert (await post(srv, "/webhook/new", body, signed_headers(body, msg_id="m2")))[0] == 429
        assert receiver_state(srv.hub).unique == 1


async def test_non_json_body_rejected_and_reset_clears(server: EmulatorServer) -> None:
    body = b"not json"
    assert (await post(server, "/webhook/cavra", body, signed_headers(body)))[0] == 400
    good = b"[]"
    assert (await post(server, "/webhook/cavra", good, signed_headers(good, msg_id="m9")))[0] == 200
    server.hub.reset()
    assert receiver_state(server.hub).unique == 0


def test_demo_config_points_at_a_receiver() -> None:
    from cavra.emulators.webhook import Settings, demo_config

    entry, env = demo_config("http://127.0.0.1:9", Settings(bearer_token="t0ken"))
    assert entry == {
        "url_env": "WEBHOOK_URL",
        "signing_secret_env": "WEBHOOK_SIGNING_SECRET",
        "allow_http": True,
        "token_env": "WEBHOOK_TOKEN",
    }
    assert env["WEBHOOK_URL"] == "http://127.0.0.1:9/webhook/cavra"
    assert env["WEBHOOK_SIGNING_SECRET"].startswith("whsec_")
