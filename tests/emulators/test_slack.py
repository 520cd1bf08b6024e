"""The Slack incoming-webhook emulator, over real loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from cavra.emulators.server import EmulatorServer
from cavra.emulators.slack import DEMO_HOOK, slack_state

HOOK_PATH = "/slack/services/" + DEMO_HOOK


@pytest.fixture
async def server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["slack"], overrides={"slack": {"rate_limit": False}}) as srv:
        yield srv


async def post(
    srv: EmulatorServer,
    body: Any,
    *,
    path: str = HOOK_PATH,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, str, dict[str, str]]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(srv.base_url + path, data=data, headers={"Content-Type": content_type}) as resp,
    ):
        return resp.status, await resp.text(), {k.lower(): v for k, v in resp.headers.items()}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


async def test_success_is_plain_ok(server: EmulatorServer) -> None:
    status, text, headers = await post(server, {"text": "hello", "blocks": [section("hi")]})
    assert (status, text) == (200, "ok")
    assert headers["content-type"].startswith("text/plain")
    (msg,) = slack_state(server.hub).messages
    assert msg.channel == "#cavra-governance"
    assert msg.payload["text"] == "hello"


async def test_form_encoded_payload_accepted(server: EmulatorServer) -> None:
    raw = b"payload=" + quote(json.dumps({"text": "form"}), safe="").encode()
    status, text, _ = await post(server, None, raw=raw, content_type="application/x-www-form-urlencoded")
    assert (status, text) == (200, "ok")


@pytest.mark.parametrize(
    "path",
    [
        "/slack/services/T0CAVRA01/B0CAVRA01/wrongSecret000000000000",
        "/slack/services/T0OTHER/B0CAVRA01/cavraDemoSlackHook000001",
        "/slack/services/T0CAVRA01",
    ],
)
async def test_unknown_hook_is_no_service(server: EmulatorServer, path: str) -> None:
    assert (await post(server, {"text": "x"}, path=path))[:2] == (404, "no_service")


async def test_unknown_hook_can_be_invalid_token(emulator_factory: Callable[..., EmulatorServer]) -> None:
    overrides = {"slack": {"unknown_hook_error": "invalid_token", "revoked_hooks": []}}
    async with emulator_factory(providers=["slack"], overrides=overrides) as srv:
        bad = "/slack/services/T0CAVRA01/B0CAVRA01/nope"
        assert (await post(srv, {"text": "x"}, path=bad))[:2] == (403, "invalid_token")


async def test_revoked_hook(emulator_factory: Callable[..., EmulatorServer]) -> None:
    async with emulator_factory(
        providers=["slack"], overrides={"slack": {"revoked_hooks": [DEMO_HOOK]}}
    ) as srv:
        assert (await post(srv, {"text": "x"}))[:2] == (403, "invalid_token")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "no_text"),
        ({"text": "   "}, "no_text"),
        ({"text": "", "blocks": [], "attachments": []}, "no_text"),
        ([1, 2], "invalid_payload"),
        ({"text": 5}, "invalid_payload"),
        ({"attachments": [{"text": "a"}] * 101}, "too_many_attachments"),
        ({"blocks": [section("x")] * 51}, "invalid_payload"),
        ({"blocks": [section("x" * 3001)]}, "invalid_payload"),
        (
            {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
            "invalid_payload",
        ),
        ({"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]}, "invalid_payload"),
        (
            {"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}]},
            "invalid_payload",
        ),
        (
            {"blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}]},
            "invalid_payload",
        ),
        ({"blocks": [{"type": "section"}]}, "invalid_payload"),
        ({"blocks": [{"type": "bogus"}]}, "invalid_payload"),
        ({"blocks": [section("x") | {"block_id": "b" * 256}]}, "invalid_payload"),
    ],
)
async def test_payload_errors(server: EmulatorServer, body: Any, error: str) -> None:
    assert (await post(server, body))[:2] == (400, error)
    assert slack_state(server.hub).messages == []


async def test_invalid_json(server: EmulatorServer) -> None:
    assert (await post(server, None, raw=b"{not json"))[:2] == (400, "invalid_payload")


async def test_limits_exactly_at_the_edge_pass(server: EmulatorServer) -> None:
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "h" * 150}}, section("x" * 3000)]
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 10})
    blocks += [{"type": "divider"}] * (50 - len(blocks))
    assert (await post(server, {"text": "t", "blocks": blocks, "attachments": [{"text": "a"}] * 100}))[
        0
    ] == 200


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("archived", (410, "channel_is_archived")),
        ("deleted", (404, "channel_not_found")),
        ("prohibited", (403, "action_prohibited")),
    ],
)
async def test_channel_toggles(server: EmulatorServer, state: str, expected: tuple[int, str]) -> None:
    server.settings["slack"].channel_states["#cavra-governance"] = state
    assert (await post(server, {"text": "x"}))[:2] == expected
    server.settings["slack"].channel_states.clear()
    assert (await post(server, {"text": "x"}))[:2] == (200, "ok")


async def test_token_bucket(emulator_factory: Callable[..., EmulatorServer]) -> None:
    overrides = {"slack": {"rate_limit": True, "burst": 3, "rate_per_second": 1.0}}
    async with emulator_factory(providers=["slack"], overrides=overrides) as srv:
        answers = [await post(srv, {"text": f"m{i}"}) for i in range(5)]
        assert [a[0] for a in answers] == [200, 200, 200, 429, 429]
        assert answers[3][1] == "rate_limited"
        assert answers[3][2]["retry-after"] == "1"
        assert slack_state(srv.hub).throttled == 2
        assert len(slack_state(srv.hub).messages) == 3


def test_rate_limit_is_on_by_default_with_a_small_burst() -> None:
    from cavra.emulators.slack import Settings, demo_config

    s = Settings()
    assert (s.rate_limit, s.burst, s.rate_per_second) == (True, 5, 1.0)
    entry, env = demo_config("http://127.0.0.1:9", s)
    assert entry == {"url_env": "SLACK_WEBHOOK_URL", "allow_http": True}
    assert env["SLACK_WEBHOOK_URL"] == "http://127.0.0.1:9/slack/services/" + DEMO_HOOK
