"""Templated Jira comments and ServiceNow work notes: checked at load like every template (errors name the
file, the destination, the key and the line), sent on a second delivery of an event through the
emulators, and at run time a comment or note the provider would refuse falls back to the default with a
warning in the record."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cavra.config import load_config, target_from_mapping
from cavra.connectors.base import Context
from cavra.connectors.jira import JiraState
from cavra.connectors.jira.content import MAX_COMMENT, comment_body, dedup_label
from cavra.connectors.messages import rendered
from cavra.connectors.servicenow import ServiceNowState
from cavra.connectors.servicenow.settings import MAX_WORK_NOTES, work_note
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.jira import jira_emulator
from cavra.emulators.server import EmulatorServer
from cavra.emulators.servicenow import servicenow_emulator
from cavra.errors import ConfigError
from cavra.templates.samples import SAMPLES
from cavra.transport import AiohttpTransport
from tests.templates.conftest import ENV, target

POLICY = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.05)
EMAIL, TOKEN = "bot@example.com", "jiraCommentCanary0000000001"
SN_USER, SN_PASSWORD = "cavra.integration", "snWorkNoteCanary000000001"
EVENT: dict[str, Any] = {
    "event_type": "cavra.release.rollback_execution",
    "event_id": "evt_comment_0001",
    "execution_id": "rre_prod",
    "release": "agent-policy 2.3.0",
    "environment": "prod",
    "status": "completed",
}
#: one ADF paragraph per blocked action: fine for the samples, over Jira's limit for a big event
BIG_ADF = (
    '{"type": "doc", "version": 1, "content": [{% for a in event.blocked_actions or ["none"] %}'
    '{"type": "paragraph", "content": [{"type": "text", "text": {{ a|tojson }}}]}'
    '{{ "," if not loop.last }}{% endfor %}]}'
)


def load(tmp_path: Path, name: str, provider: str, entry: dict[str, Any]) -> Any:
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump({"connectors": {name: {"provider": provider, **entry}}}))
    return load_config(str(path), ENV)


JIRA = {
    "url_env": "JIRA_URL",
    "email": EMAIL,
    "api_token_env": "JIRA_TOKEN",
    "project_key": "OPS",
    "issue_type": "Task",
}
SN = {"url_env": "SN_URL", "username": SN_USER, "password_env": "SN_PASSWORD"}


# -- load ---------------------------------------------------------------------------------------------------
def test_syntax_errors_name_file_destination_key_and_line(tmp_path: Path) -> None:
    loaded = load(tmp_path, "ops-jira", "jira", {**JIRA, "templates": {"comment": "again\n\n{% if x %}"}})
    error = loaded.errors["ops-jira"]
    assert error.startswith(f"{tmp_path}/connectors.yaml: connectors.ops-jira.templates.comment: line 3: ")
    loaded = load(tmp_path, "cab", "servicenow", {**SN, "templates": {"work_notes": "a\n{{ title }"}})
    assert loaded.errors["cab"].startswith(
        f"{tmp_path}/connectors.yaml: connectors.cab.templates.work_notes: line 2: "
    )


def test_render_errors_and_empty_results_on_a_sample_are_refused_at_load() -> None:
    with pytest.raises(ConfigError, match=r"with a sample .*: template work_notes: .*division by zero"):
        target("servicenow", {"work_notes": "{{ 1 / 0 }}"})
    with pytest.raises(ConfigError, match=r"with a sample .*: templates: comment rendered empty"):
        target("jira", {"comment": "{{ event.nothing }}"})
    with pytest.raises(ConfigError, match=r"templates: work_notes rendered empty"):
        target("servicenow", {"work_notes": "  {{ event.nothing }}  "})


def test_an_adf_comment_over_jiras_limit_is_refused_at_load() -> None:
    huge = '{"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", '
    huge += '"text": {{ (event_id * 1500)|tojson }}}]}]}'
    with pytest.raises(ConfigError, match=rf"characters of ADF, over Jira's limit of {MAX_COMMENT}"):
        target("jira", {"comment": huge})


def test_routes_test_shows_the_comment_and_the_work_note() -> None:
    jira = target("jira", {"comment": "Seen again ({{ issue_key }}, {{ delivered_at }}): {{ title }}"})
    shown = rendered("jira", SAMPLES[2], jira.settings, "dk_1", now=1_700_000_000.0)
    assert shown is not None and "template_warning" not in shown
    text = "Seen again (OPS-1, 2023-11-14 22:13:20 UTC): CAVRA rollback execution: rre_prod"
    assert shown["message"]["comment"]["content"][0]["content"][0]["text"] == text
    snow = target("servicenow", {"work_notes": "{{ number }} {{ correlation_id }} {{ subject.id }}"})
    shown = rendered("servicenow", SAMPLES[2], snow.settings, "dk_1")
    assert shown is not None and shown["message"]["work_notes"] == "CHG0000001 dk_1 rre_prod"
    plain = rendered("servicenow", SAMPLES[2], target("servicenow").settings, "dk_1")
    assert plain is not None and "work_notes" not in plain["message"]


# -- requests -----------------------------------------------------------------------------------------------
def _comment(name: str, templates: dict[str, Any], event: dict[str, Any]) -> Any:
    t = target(name, templates)
    state: Any = (
        JiraState(step="comment", since=1, key="OPS-7")
        if t.provider == "jira"
        else ServiceNowState(step="work_note", since=1, sys_id="s" * 32, number="CHG0000007")
    )
    return t.connector.prepare(event, t.settings, Context(delivery_key="dk_c", now=1_700_000_000.0), state)


def test_datacenter_comment_is_wiki_text_and_cut_to_the_limit() -> None:
    request = _comment(
        "jira-dc", {"comment": "h{{ issue_key }} {{ event.note }}"}, {**EVENT, "note": "n" * 40_000}
    )
    assert request.warnings == ()
    body = json.loads(request.body)["body"]
    assert body.startswith("hOPS-7 nnn") and len(body) == MAX_COMMENT and body.endswith("…")


def test_cloud_comment_text_becomes_adf_paragraphs() -> None:
    request = _comment("jira", {"comment": "Again: {{ subject.id }}\n\nby {{ destination.name }}"}, EVENT)
    body = json.loads(request.body)["body"]
    assert body == {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "Again: rre_prod"}]},
            {"type": "paragraph", "content": [{"type": "text", "text": "by jira"}]},
        ],
    }


def test_a_work_note_is_cut_to_the_limit() -> None:
    request = _comment("servicenow", {"work_notes": "note: {{ event.note }}"}, {**EVENT, "note": "w" * 5000})
    note = json.loads(request.body)["work_notes"]
    assert len(note) == MAX_WORK_NOTES and note.endswith("…")


def test_run_time_failures_fall_back_to_the_default() -> None:
    many = {**EVENT, "blocked_actions": [f"action.{i:05d}" for i in range(900)]}
    request = _comment("jira", {"comment": BIG_ADF}, many)
    (warning,) = request.warnings
    assert "characters of ADF, over Jira's limit of 32767; the default rendering was sent" in warning
    t = target("jira")
    default = comment_body(many, t.settings, dedup_label("dk_c"), 1_700_000_000.0)
    assert json.loads(request.body)["body"] == default
    request = _comment(
        "servicenow",
        {"work_notes": "x{% if event.boom %}{{ event.boom.decode() }}{% endif %}"},
        {**EVENT, "boom": "b"},
    )
    (warning,) = request.warnings
    assert warning.startswith("template work_notes: ") and warning.endswith("the default rendering was sent")
    assert json.loads(request.body)["work_notes"] == work_note(EVENT | {"boom": "b"}, "dk_c", 1_700_000_000.0)


# -- through the emulators: the second delivery of an event adds the templated comment / work note ---------
@pytest.fixture
async def srv(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    overrides = {
        "jira": {"accounts": {EMAIL: TOKEN}},
        "servicenow": {"users": {SN_USER: SN_PASSWORD}},
    }
    async with emulator_factory(providers=["jira", "servicenow"], overrides=overrides) as server:
        yield server


async def test_second_delivery_comments_with_the_template(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    comment = "Seen again at {{ delivered_at }} on {{ issue_key }}: {{ subject.id }} ({{ severity }})"
    t = target_from_mapping(
        "jira",
        {
            "url": srv.base_url + "/jira",
            "email": EMAIL,
            "api_token_env": "JIRA_TOKEN",
            "project_key": "OPS",
            "issue_type": "Task",
            "allow_http": True,
            "templates": {"comment": comment},
        },
        {"JIRA_TOKEN": TOKEN},
        name="ops-jira",
    )
    first = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    second = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert first.success and second.success, second.error
    assert "template_warning" not in second.to_dict()["detail"]
    (issue,) = jira_emulator(srv.hub).store.issues
    (posted,) = issue.comments
    text = posted["body"]["content"][0]["content"][0]["text"]
    assert text.startswith("Seen again at ") and text.endswith(" on OPS-1: rre_prod (critical)")

    many = {**EVENT, "event_id": "evt_comment_0002", "blocked_actions": ["x" * 100] * 400}
    big = target_from_mapping(
        "jira",
        {
            "url": srv.base_url + "/jira",
            "email": EMAIL,
            "api_token_env": "JIRA_TOKEN",
            "project_key": "OPS",
            "issue_type": "Task",
            "allow_http": True,
            "templates": {"comment": BIG_ADF},
        },
        {"JIRA_TOKEN": TOKEN},
        name="ops-jira",
    )
    await deliver_one(big, many, policy=POLICY, transport=transport)
    again = await deliver_one(big, many, policy=POLICY, transport=transport)
    assert again.success, again.error
    warning = again.to_dict()["detail"]["template_warning"]
    assert warning.endswith("over Jira's limit of 32767; the default rendering was sent")
    issue = jira_emulator(srv.hub).store.issues[-1]
    assert "delivered this event again" in json.dumps(issue.comments[-1]["body"])


async def test_second_delivery_adds_the_templated_work_note(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    t = target_from_mapping(
        "servicenow",
        {
            "url": srv.base_url + "/servicenow",
            "username": SN_USER,
            "password_env": "SN_PASSWORD",
            "allow_http": True,
            "templates": {"work_notes": "Again: {{ title }} [{{ number }}]"},
        },
        {"SN_PASSWORD": SN_PASSWORD},
        name="cab",
    )
    first = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    second = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert first.success and second.success, second.error
    store = servicenow_emulator(srv.hub).store
    (note,) = store.tables["sys_journal_field"]
    assert note["value"] == f"Again: CAVRA rollback execution: rre_prod [{first.remote_id}]"
    assert "template_warning" not in second.to_dict()["detail"]
