"""The shipped default templates reproduce today's renderings byte for byte, for every kind of event."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cavra.connectors.base import Context, PreparedRequest
from cavra.connectors.jira import JiraState
from cavra.connectors.servicenow import ServiceNowState
from cavra.templates import default_source, default_templates
from cavra.templates.samples import SAMPLES
from tests.templates.conftest import ENTRIES, target

#: more shapes: long values (clipped), markup characters, many facts (two Slack sections), big events
EXTRA = [
    {"event_type": "custom.thing", "event_id": "e-1", **{f"field_{i}": f"v{i} <&> *_|" for i in range(12)}},
    {
        "event_type": "cavra.evidence_bundle",
        "session_id": "s" * 400,
        "max_severity": "critical",
        "decision_count": 3,
        "console_url": "https://x.example/a|b",
    },
    {
        "event_type": "cavra.release.rollback_execution",
        "execution_id": "rre_big",
        "notes": "n" * 9000,
        "blob": ["x" * 100] * 50,
    },
    {"event_type": "x", "event_id": "only-type", "text": "&amp; " * 700, "flag": True},
]
EVENTS = [*SAMPLES, *EXTRA]


def _first_message_request(name: str, t: Any, event: dict[str, Any]) -> PreparedRequest:
    ctx = Context(delivery_key=t.delivery_key(str(event.get("event_id", "x"))), now=1_700_000_000.0)
    state: Any = None
    if t.provider == "jira":
        state = JiraState(step="create", since=1)
    elif t.provider == "servicenow":
        state = ServiceNowState(step="create", since=1)
    return t.connector.prepare(copy.deepcopy(event), t.settings, ctx, state)


@pytest.mark.parametrize("name", list(ENTRIES))
@pytest.mark.parametrize("index", range(len(EVENTS)))
def test_default_templates_make_byte_identical_requests(name: str, index: int) -> None:
    event = EVENTS[index]
    plain = target(name)
    templated = target(name, default_templates(ENTRIES[name][0]))
    assert templated.settings.templates is not None
    before = _first_message_request(name, plain, event)
    after = _first_message_request(name, templated, event)
    assert after.warnings == ()
    if name == "webhook":  # webhook-timestamp is the attempt's second; the rest must match
        assert before.body == after.body
        return
    assert (after.method, after.url, after.body) == (before.method, before.url, before.body)


def _follow_up_request(t: Any, event: dict[str, Any]) -> PreparedRequest:
    """The comment (Jira) or work note (ServiceNow) a later delivery of ``event`` adds to its ticket."""
    ctx = Context(delivery_key=t.delivery_key(str(event.get("event_id", "x"))), now=1_700_000_123.0)
    state: Any
    if t.provider == "jira":
        state = JiraState(step="comment", since=1, key="OPS-7", issue_id="10007")
    else:
        state = ServiceNowState(step="work_note", since=1, sys_id="a" * 32, number="CHG0000007")
    return t.connector.prepare(copy.deepcopy(event), t.settings, ctx, state)


@pytest.mark.parametrize("name", ["jira", "jira-dc", "servicenow"])
@pytest.mark.parametrize("index", range(len(EVENTS)))
def test_default_comment_and_work_note_are_byte_identical(name: str, index: int) -> None:
    event = EVENTS[index]
    plain = target(name)
    templated = target(name, default_templates(ENTRIES[name][0]))
    assert templated.settings.templates is not None
    assert templated.settings.templates.has("comment" if name.startswith("jira") else "work_notes")
    before = _follow_up_request(plain, event)
    after = _follow_up_request(templated, event)
    assert before.step in ("comment", "work_note")
    assert after.warnings == ()
    assert (after.method, after.url, after.body) == (before.method, before.url, before.body)


@pytest.mark.parametrize("provider", ["slack", "teams", "jira", "servicenow", "webhook"])
def test_every_provider_ships_a_default(provider: str) -> None:
    assert default_source(provider).lstrip().startswith("#")
    assert "templates" in default_source(provider)
