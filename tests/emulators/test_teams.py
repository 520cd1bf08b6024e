"""The Teams emulator (Workflows and the legacy O365 connector), over real loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from cavra.emulators.server import EmulatorServer
from cavra.emulators.teams import (
    ADAPTIVE,
    DEMO_LEGACY,
    DEMO_SIG,
    DEMO_WORKFLOW,
    O365_CARD,
    teams_state,
    workflow_url,
)

LEGACY_PATH = "/teams/webhookb2/" + DEMO_LEGACY


def adaptive_message(**card: Any) -> dict[str, Any]:
    content = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "hi"}]} | card
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE, "contentUrl": None, "content": content}],
    }


@pytest.fixture
async def server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["teams"]) as srv:
        yield srv


async def post(url: str, body: Any, *, raw: bytes | None = None) -> tuple[int, str, dict[str, str]]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers={"Content-Type": "application/json"}) as resp,
    ):
        return resp.status, await resp.text(), {k.lower(): v for k, v in resp.headers.items()}


def error_code(text: str) -> str:
    return str(json.loads(text)["error"]["code"])


async def test_workflow_success_is_202_empty(server: EmulatorServer) -> None:
    status, text, _ = await post(workflow_url(server.base_url, DEMO_WORKFLOW, DEMO_SIG), adaptive_message())
    assert (status, text) == (202, "")
    (post_,) = teams_state(server.hub).posts
    assert post_.kind == "workflows"
    assert post_.rendered is True


async def test_power_platform_url_form(server: EmulatorServer) -> None:
    url = workflow_url(server.base_url, DEMO_WORKFLOW, DEMO_SIG).replace(
        "/teams/workflows/", "/teams/powerautomate/automations/direct/workflows/"
    )
    assert (await post(url, adaptive_message()))[0] == 202


@pytest.mark.parametrize(
    ("drop", "status", "code"),
    [
        ("api-version", 400, "MissingApiVersionParameter"),
        ("sp", 401, "DirectApiAuthorizationRequired"),
        ("sv", 401, "DirectApiAuthorizationRequired"),
        ("sig", 401, "DirectApiAuthorizationRequired"),
    ],
)
async def test_required_query_parameters(server: EmulatorServer, drop: str, status: int, code: str) -> None:
    base, query = workflow_url(server.base_url, DEMO_WORKFLOW, DEMO_SIG).split("?")
    kept = "&".join(p for p in query.split("&") if not p.startswith(drop + "="))
    got_status, text, _ = await post(f"{base}?{kept}", adaptive_message())
    assert (got_status, error_code(text)) == (status, code)


async def test_wrong_sig_and_unknown_workflow(server: EmulatorServer) -> None:
    status, text, _ = await post(workflow_url(server.base_url, DEMO_WORKFLOW, "forged"), adaptive_message())
    assert (status, error_code(text)) == (401, "DirectApiInvalidAuthorizationSignature")
    status, text, _ = await post(workflow_url(server.base_url, "f" * 32, DEMO_SIG), adaptive_message())
    assert (status, error_code(text)) == (404, "WorkflowNotFound")
    assert teams_state(server.hub).posts == []


async def test_wrong_sig_status_configurable(emulator_factory: Callable[..., EmulatorServer]) -> None:
    async with emulator_factory(providers=["teams"], overrides={"teams": {"wrong_sig_status": 403}}) as srv:
        assert (await post(workflow_url(srv.base_url, DEMO_WORKFLOW, "forged"), adaptive_message()))[0] == 403


@pytest.mark.parametrize(
    "body",
    [
        {"text": "plain text is not the template's schema"},
        {"type": "card", "attachments": [{"contentType": ADAPTIVE}]},
        {"type": "message", "attachments": []},
        {"type": "message"},
        {"type": "message", "attachments": [{"content": {}}]},
        {"type": "message", "attachments": [{"contentType": 7}]},
        ["message"],
    ],
)
async def test_schema_mismatch_is_400(server: EmulatorServer, body: Any) -> None:
    status, text, _ = await post(workflow_url(server.base_url, DEMO_WORKFLOW, DEMO_SIG), body)
    assert (status, error_code(text)) == (400, "TriggerInputSchemaMismatch")


async def test_invalid_json_is_400(server: EmulatorServer) -> None:
    assert (await post(workflow_url(server.base_url, DEMO_WORKFLOW, DEMO_SIG), None, raw=b"{oops"))[0] == 400


async def test_bad_card_is_accepted_but_not_rendered(server: EmulatorServer) -> None:
    url = workflow_url(server.base_url, DEMO_WORKFLOW, DEMO_SIG)
    assert (await post(url, adaptive_message(actions=[{"type": "Action.Submit", "title": "x"}])))[0] == 202
    card = {"@type": "MessageCard", "summary": "s"}
    assert (
        await post(url, {"type": "message", "attachments": [{"contentType": O365_CARD, "content": card}]})
    )[0] == 202
    first, second = teams_state(server.hub).posts
    assert (first.rendered, first.render_error) == (False, "Action.Submit is not supported")
    # Workflows post Adaptive Cards only: the MessageCard run fails inside the flow, still 202 to the sender
    assert second.rendered is False
    assert "Adaptive Cards only" in str(second.render_error)


async def test_workflows_message_over_28_kb_is_accepted_but_not_posted(server: EmulatorServer) -> None:
    url = workflow_url(server.base_url, DEMO_WORKFLOW, DEMO_SIG)
    big = adaptive_message()
    big["attachments"][0]["content"]["body"].append({"type": "TextBlock", "text": "x" * 29_000})
    small = adaptive_message()
    assert (await post(url, big))[0] == 202
    assert (await post(url, small))[0] == 202
    too_big, fine = teams_state(server.hub).posts
    assert (too_big.rendered, fine.rendered) == (False, True)
    assert "28KB" in str(too_big.render_error)


async def test_legacy_message_over_28_kb_is_a_413_in_a_200(server: EmulatorServer) -> None:
    status, text, _ = await post(server.base_url + LEGACY_PATH, {"text": "x" * 29_000})
    assert status == 200
    assert "HTTP error 413" in text
    assert teams_state(server.hub).posts == []


async def test_throttle_toggle(emulator_factory: Callable[..., EmulatorServer]) -> None:
    overrides = {"teams": {"throttled": True, "throttle_retry_after": 2}}
    async with emulator_factory(providers=["teams"], overrides=overrides) as srv:
        status, _, headers = await post(
            workflow_url(srv.base_url, DEMO_WORKFLOW, DEMO_SIG), adaptive_message()
        )
        assert (status, headers["retry-after"]) == (429, "2")


async def test_legacy_success_and_missing_text(server: EmulatorServer) -> None:
    url = server.base_url + LEGACY_PATH
    assert (await post(url, {"@type": "MessageCard", "summary": "s", "sections": []}))[:2] == (200, "1")
    assert (await post(url, {"text": "plain"}))[:2] == (200, "1")
    assert (await post(url, adaptive_message()))[:2] == (200, "1")
    assert (await post(url, {"@type": "MessageCard", "sections": []}))[:2] == (
        400,
        "Summary or Text is required.",
    )
    assert (await post(server.base_url + "/teams/webhookb2/unknown", {"text": "x"}))[0] == 404
    assert [p.kind for p in teams_state(server.hub).posts] == ["legacy"] * 3


async def test_legacy_throttle_is_200_with_429_in_body(server: EmulatorServer) -> None:
    url = server.base_url + LEGACY_PATH
    answers = [await post(url, {"text": f"m{i}"}) for i in range(5)]
    assert [a[:2] for a in answers[:4]] == [(200, "1")] * 4
    assert answers[4][0] == 200
    assert "HTTP error 429" in answers[4][1]
    assert teams_state(server.hub).throttled == 1
    assert len(teams_state(server.hub).posts) == 4


async def test_legacy_retired_switch(emulator_factory: Callable[..., EmulatorServer]) -> None:
    async with emulator_factory(providers=["teams"], overrides={"teams": {"legacy_retired": True}}) as srv:
        assert (await post(srv.base_url + LEGACY_PATH, {"text": "x"}))[0] == 410


def test_demo_config_uses_workflows_url() -> None:
    from cavra.emulators.teams import Settings, demo_config

    entry, env = demo_config("http://127.0.0.1:9", Settings())
    assert entry == {"url_env": "TEAMS_WEBHOOK_URL", "card_format": "adaptive", "allow_http": True}
    assert env["TEAMS_WEBHOOK_URL"].startswith(
        f"http://127.0.0.1:9/teams/workflows/{DEMO_WORKFLOW}/triggers/"
    )
    assert "api-version=" in env["TEAMS_WEBHOOK_URL"]
    assert f"sig={DEMO_SIG}" in env["TEAMS_WEBHOOK_URL"]
