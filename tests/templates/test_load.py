"""Templates are compiled and checked when the connectors file loads; errors name the file, the
destination, the template key and the line; a template too large for the provider is refused on a sample
event, and at run time falls back to the default rendering with a warning in the record."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cavra.config import load_config, target_from_mapping
from cavra.connectors import slack, teams
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.server import EmulatorServer
from cavra.emulators.slack import slack_state
from cavra.errors import ConfigError
from cavra.templates import default_templates
from cavra.transport import AiohttpTransport
from tests.templates.conftest import ENV, target

POLICY = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.05)
HOOK = "T0TPL0001/B0TPL0001/templateHookSecret000001"


def load(tmp_path: Path, entry: dict[str, Any]) -> Any:
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump({"connectors": {"slack-release": {"provider": "slack", **entry}}}))
    return load_config(str(path), ENV)


def test_syntax_error_names_file_destination_key_and_line(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"url_env": "SLACK_URL", "templates": {"text": "hello\n{{ title }\n"}})
    error = loaded.errors["slack-release"]
    assert error.startswith(f"{tmp_path}/connectors.yaml: connectors.slack-release.templates.text: line 2: ")
    assert "slack-release" not in loaded.targets


def test_unknown_key_and_provider_without_templates(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"url_env": "SLACK_URL", "templates": {"summary": "{{ title }}"}})
    assert "templates.summary: unknown template key (known: text, blocks)" in loaded.errors["slack-release"]
    with pytest.raises(ConfigError, match=r"templates: splunk destinations take no templates"):
        target_from_mapping(
            "splunk", {"url": "https://h.example:8088", "token": "t" * 36, "templates": {"x": "y"}}, ENV
        )


def test_webhook_field_may_not_replace_the_envelope() -> None:
    with pytest.raises(ConfigError, match=r"templates.fields.data: not a field name"):
        target("webhook", {"fields": {"data": "{{ title }}"}})


def test_too_large_for_slack_is_refused_at_load_on_a_sample(tmp_path: Path) -> None:
    blocks = '[{% for i in range(60) %}{"type": "divider"}{{ "," if not loop.last }}{% endfor %}]'
    loaded = load(tmp_path, {"url_env": "SLACK_URL", "templates": {"blocks": blocks}})
    error = loaded.errors["slack-release"]
    assert "connectors.slack-release.templates: with a sample cavra.evidence_bundle event" in error
    assert "60 blocks, over Slack's 50" in error
    header = '[{"type": "header", "text": {"type": "plain_text", "text": {{ (title * 10)|tojson }}}}]'
    assert (
        "header text must be 1-150"
        in load(tmp_path, {"url_env": "SLACK_URL", "templates": {"blocks": header}}).errors["slack-release"]
    )


def test_too_large_for_teams_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match=r"over Teams' limit of 28000"):
        target("teams", {"text": "{% for i in range(1000) %}{{ title }} {% endfor %}"})


def test_render_error_on_a_sample_is_refused_at_load() -> None:
    with pytest.raises(
        ConfigError, match=r"templates: with a sample .*: template summary: .*division by zero"
    ):
        target("jira", {"summary": "{{ 1 / 0 }}"})


# -- run time: an event the load check could not foresee ----------------------------------------------------
@pytest.fixture
async def server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(
        providers=["slack"], overrides={"slack": {"hooks": {HOOK: "#rel"}, "rate_limit": False}}
    ) as srv:
        yield srv


async def test_too_large_at_run_time_falls_back_with_a_warning_in_the_record(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    # one header per blocked action: fine for the samples, over 50 blocks for this event
    blocks = (
        '[{% for a in event.blocked_actions %}{"type": "header", "text": {"type": "plain_text", '
        '"text": {{ a|tojson }}}}{{ "," if not loop.last }}{% endfor %}]'
    )
    t = target_from_mapping(
        "slack",
        {
            "url": f"{server.base_url}/slack/services/{HOOK}",
            "allow_http": True,
            "templates": {"blocks": blocks},
        },
        name="slack-release",
        source="connectors.yaml",
    )
    event = {
        "event_type": "cavra.evidence_bundle",
        "event_id": "evt_many",
        "session_id": "s1",
        "blocked_actions": [f"action.{i}" for i in range(70)],
    }
    delivery = await deliver_one(t, event, policy=POLICY, transport=transport)
    assert delivery.success, delivery.error
    (posted,) = slack_state(server.hub).messages
    assert posted.payload == slack.message(event)  # the default rendering went out
    warning = delivery.to_dict()["detail"]["template_warning"]
    assert warning == "templates: 70 blocks, over Slack's 50; the default rendering was sent"

    small = {**event, "event_id": "evt_few", "blocked_actions": ["a", "b"]}
    delivery = await deliver_one(t, small, policy=POLICY, transport=transport)
    assert delivery.success and "template_warning" not in delivery.to_dict()["detail"]
    assert [b["text"]["text"] for b in slack_state(server.hub).messages[-1].payload["blocks"]] == ["a", "b"]


def test_teams_falls_back_at_run_time() -> None:
    t = target("teams", {"title": "{{ event.headline }}"})
    from cavra.connectors.base import Context

    big = {"event_type": "x", "event_id": "e", "headline": "h" * 30_000}
    request = t.connector.prepare(big, t.settings, Context(delivery_key="dk"), None)
    assert request.warnings == ("templates: the card is 30" + request.warnings[0][25:],)
    assert "over Teams' limit of 28000; the default rendering was sent" in request.warnings[0]
    assert json.loads(request.body) == teams.payload(big, "adaptive")


def test_templates_defaults_load_through_a_file(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"url_env": "SLACK_URL", "templates": default_templates("slack")})
    assert loaded.errors == {}
    assert loaded.targets["slack-release"].settings.templates is not None


def test_any_render_error_falls_back_instead_of_failing_the_delivery() -> None:
    from cavra.connectors.base import Context

    t = target("slack", {"text": "{{ event.get('x') or 'fine' }}{{ event.items()|list|length }}"})
    odd = {"event_type": "x", "event_id": "e", "value": float("nan")}
    request = t.connector.prepare(odd, t.settings, Context(delivery_key="dk"), None)
    assert request.warnings == ()
    t = target("slack", {"text": "{% if event.boom %}{{ event.boom.decode() }}{% endif %}"})
    bad = {"event_type": "x", "event_id": "e", "boom": "text"}
    request = t.connector.prepare(bad, t.settings, Context(delivery_key="dk"), None)
    assert request.warnings and request.warnings[0].startswith("template text: ")
    assert request.warnings[0].endswith("; the default rendering was sent")
    assert json.loads(request.body) == slack.message(bad)
