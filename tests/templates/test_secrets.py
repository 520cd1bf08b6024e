"""A template can never reach a secret: templates that print every context value, with the destinations'
secrets as canaries, put none of them in the request (before redaction), in a Jira comment or ServiceNow
work note of a later delivery, or in `cavra routes test`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cavra.connectors.base import Context
from cavra.connectors.jira import JiraState
from cavra.connectors.servicenow import ServiceNowState
from cavra.templates import context
from cavra.templates.samples import SAMPLES
from tests.templates.conftest import CANARIES, DUMP, DUMP_TEMPLATES, ENTRIES, ENV, target

KEYS = {name: DUMP_TEMPLATES[provider] for name, (provider, _) in ENTRIES.items()}
KEYS["teams-legacy"] = {"text": DUMP}


def _request_body(name: str, event: dict[str, Any]) -> bytes:
    t = target(name, KEYS[name], headers={"X-Canary": CANARIES[0]})
    state: Any = None
    if t.provider == "jira":
        state = JiraState(step="create", since=1)
    elif t.provider == "servicenow":
        state = ServiceNowState(step="create", since=1)
    request = t.connector.prepare(event, t.settings, Context(delivery_key="dk_canary"), state)
    assert request.warnings == (), request.warnings  # the template rendered (not the fallback)
    return request.body


def _follow_up_body(name: str, event: dict[str, Any]) -> bytes:
    """The comment (Jira) or work note (ServiceNow) of a later delivery, with the dumping template."""
    t = target(name, KEYS[name], headers={"X-Canary": CANARIES[0]})
    state: Any = (
        JiraState(step="comment", since=1, key="OPS-9")
        if t.provider == "jira"
        else ServiceNowState(step="work_note", since=1, sys_id="c" * 32, number="CHG0000009")
    )
    request = t.connector.prepare(event, t.settings, Context(delivery_key="dk_canary"), state)
    assert request.step in ("comment", "work_note") and request.warnings == (), request.warnings
    return request.body


@pytest.mark.parametrize("name", ["jira", "jira-dc", "servicenow"])
@pytest.mark.parametrize("event", SAMPLES, ids=[e["event_type"] for e in SAMPLES])
def test_comments_and_work_notes_printing_every_context_value_show_no_secret(
    name: str, event: dict[str, Any]
) -> None:
    body = _follow_up_body(name, event).decode("utf-8")
    assert event["event_id"] in body and ("OPS-9" in body or "CHG0000009" in body)
    for canary in CANARIES:
        assert canary not in body, (name, canary)
        assert json.dumps(canary)[1:-1] not in body


@pytest.mark.parametrize("name", list(ENTRIES))
@pytest.mark.parametrize("event", SAMPLES, ids=[e["event_type"] for e in SAMPLES])
def test_printing_every_context_value_shows_no_secret(name: str, event: dict[str, Any]) -> None:
    body = _request_body(name, event).decode("utf-8")
    assert event["event_id"] in body  # the dump rendered
    for canary in CANARIES:
        assert canary not in body, (name, canary)
        assert json.dumps(canary)[1:-1] not in body


def test_the_context_holds_non_secret_settings_only() -> None:
    t = target(
        "servicenow", {"description": "{{ settings }}"}, headers={"X-Api-Key": "headerCanary000000001"}
    )
    compiled = t.settings.templates
    assert compiled is not None
    assert compiled.settings["assignment_group"] == "ops" and compiled.settings["table"] == "change_request"
    for hidden in ("url", "password", "token", "headers", "username", "proxy_url", "templates"):
        assert hidden not in compiled.settings
    values = context(SAMPLES[0], "servicenow", "servicenow", compiled.settings)
    assert set(values) == {
        "event",
        "subject",
        "destination",
        "settings",
        "event_id",
        "event_type",
        "title",
        "severity",
        "summary",
        "facts",
        "link",
        "event_json",
    }
    assert "headerCanary000000001" not in json.dumps(values)


def test_routes_test_shows_no_secret(tmp_path: Path) -> None:
    from cavra.config import load_config
    from cavra.governance.routetest import explain

    connectors = {}
    for name, (provider, raw) in ENTRIES.items():
        connectors[name] = {"provider": provider, **raw, "templates": KEYS[name]}
    path = tmp_path / "connectors.yaml"
    path.write_text(
        yaml.safe_dump({"connectors": connectors, "routes": [{"default": True, "to": list(ENTRIES)}]})
    )
    loaded = load_config(str(path), ENV)
    assert loaded.errors == {}
    answer = json.dumps(explain(loaded, SAMPLES[2]))
    assert answer.count('"rendered"') == len(ENTRIES)
    assert '"comment"' in answer and '"work_notes"' in answer  # the follow-ups were rendered too
    for canary in CANARIES:
        assert canary not in answer


def test_templated_output_passes_the_redactor(tmp_path: Path) -> None:
    """An event that carries a destination's secret (a producer's mistake) is shown redacted."""
    from cavra.config import load_config
    from cavra.governance.routetest import explain

    path = tmp_path / "connectors.yaml"
    entry = {"provider": "slack", **ENTRIES["slack"][1], "templates": {"text": "leak: {{ event.note }}"}}
    path.write_text(yaml.safe_dump({"connectors": {"s": entry}, "routes": [{"default": True, "to": "s"}]}))
    event = {"event_type": "x", "event_id": "e1", "note": ENV["SLACK_URL"]}
    answer = explain(load_config(str(path), ENV), event)
    (item,) = answer["destinations"]
    assert item["rendered"]["message"]["text"].startswith("leak: ")
    text = json.dumps(answer)
    assert "slackCanarySecret0001" not in text
