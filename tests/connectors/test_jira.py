"""The Jira connector: settings, requests, verdicts, and the search → create/comment flow (emulator)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, Next, Reject, Response, Retry
from cavra.connectors.jira import JiraConnector, JiraSettings, JiraState, dedup_label
from cavra.connectors.jira.connector import PROOF_COMMENTED, PROOF_CREATED, PROOF_RECHECKED
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.jira import jira_emulator
from cavra.emulators.server import EmulatorServer
from cavra.errors import ConfigError
from cavra.secrets import Secret
from cavra.transport import AiohttpTransport

EMAIL = "cavra-bot@example.com"
TOKEN = "leak-canary-jira-token-5f7e9d1c"
PAT = "leak-canary-jira-pat-8a2b4c6d"
EVENT: dict[str, Any] = {
    "event_type": "cavra.evidence_bundle",
    "event_id": "evt_jira_test_0001",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "high",
}
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = JiraConnector()
OVERRIDES = {"jira": {"accounts": {EMAIL: TOKEN}, "pats": [PAT]}}


class QuickSettle(JiraConnector):
    settle_seconds: ClassVar[float] = 0.5


def settings(**extra: Any) -> JiraSettings:
    values: dict[str, Any] = {
        "url": "https://acme.atlassian.net",
        "email": EMAIL,
        "api_token": TOKEN,
        "project_key": "OPS",
        "issue_type": "Task",
    }
    values.update(extra)
    return JiraSettings.model_validate({k: v for k, v in values.items() if v is not None})


def dc_settings(**extra: Any) -> JiraSettings:
    return settings(deployment="datacenter", email=None, api_token=None, token=PAT, **extra)


def response(status: int, body: Any = None, **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    return Response(
        status=status, headers={k.lower().replace("_", "-"): v for k, v in headers.items()}, body=raw
    )


def ctx(attempt: int = 1) -> Context:
    c = Context(delivery_key="dk_test_0001", now=1_700_000_000.0)
    c.attempt = attempt
    return c


def create_body(s: JiraSettings | None = None, event: dict[str, Any] | None = None) -> dict[str, Any]:
    req = CONNECTOR.prepare(event or EVENT, s or settings(), ctx(2), JiraState(step="create", since=2))
    assert req.step == "create"
    body: dict[str, Any] = json.loads(req.body)
    return body


# -- settings ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"project_key": None}, "project_key is required"),
        ({"project_key": "not a key"}, "project_key"),
        ({"issue_type": None}, "issue_type is required"),
        ({"issue_type": "  "}, "issue_type is required"),
        ({"api_token": None}, "api_token is required"),
        ({"email": None}, "email is required"),
        ({"token": PAT}, "token (a personal access token) is for deployment datacenter"),
        ({"url": None}, "url is required"),
        ({"labels": ["has space"]}, "label 'has space' is invalid"),
        ({"priority_map": {"urgent": "Highest"}}, "priority_map key 'urgent'"),
        ({"custom_fields": {"summary": "x"}}, "customfield_10010"),
    ],
)
def test_invalid_settings_name_the_key(extra: dict[str, Any], fragment: str) -> None:
    raw = {"url": "https://acme.atlassian.net", "email": EMAIL, "api_token": TOKEN, "project_key": "OPS"}
    raw["issue_type"] = "Task"
    raw.update(extra)
    with pytest.raises(ConfigError) as info:
        target_from_mapping("jira", {k: v for k, v in raw.items() if v is not None})
    assert fragment in str(info.value)
    assert str(info.value).startswith("connectors.jira")
    assert TOKEN not in str(info.value) and PAT not in str(info.value)


def test_datacenter_needs_a_pat_and_project_key_is_upper_cased() -> None:
    with pytest.raises(ConfigError, match=r"token .* is required for deployment datacenter"):
        settings(deployment="datacenter", api_token=None, email=None)
    assert dc_settings(project_key="ops").project_key == "OPS"


# -- requests ---------------------------------------------------------------------------------------------
def test_label_is_stable_short_and_without_spaces() -> None:
    label = dedup_label("dk_test_0001")
    assert label == dedup_label("dk_test_0001") != dedup_label("dk_test_0002")
    assert label.startswith("cavra-") and len(label) == 6 + 16
    int(label[6:], 16)


def test_cloud_search_request() -> None:
    req = CONNECTOR.prepare(EVENT, settings(), ctx(), None)
    parts = urlsplit(req.url)
    assert (req.method, req.step, parts.path) == ("GET", "search", "/rest/api/3/search/jql")
    query = parse_qs(parts.query)
    label = dedup_label("dk_test_0001")
    assert query["jql"] == [f'project = "OPS" AND labels = "{label}" ORDER BY created ASC']
    assert query["fields"] == ["key,labels"] and query["maxResults"] == ["1"]
    auth = req.headers["Authorization"]
    assert isinstance(auth, Secret)
    pair = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    assert auth.reveal() == f"Basic {pair}"
    assert [s.reveal() for s in req.new_secrets] == [pair]
    assert req.headers["Accept"] == "application/json" and req.body == b""


def test_datacenter_search_and_create_use_v2_and_bearer() -> None:
    req = CONNECTOR.prepare(EVENT, dc_settings(), ctx(), None)
    assert urlsplit(req.url).path == "/rest/api/2/search"
    auth = req.headers["Authorization"]
    assert isinstance(auth, Secret) and auth.reveal() == f"Bearer {PAT}"
    create = CONNECTOR.prepare(EVENT, dc_settings(), ctx(2), JiraState(step="create", since=2))
    assert urlsplit(create.url).path == "/rest/api/2/issue"
    description = json.loads(create.body)["fields"]["description"]
    assert isinstance(description, str) and "*Session:* demo\\-session" in description
    assert "{code:json}" in description


def test_create_body_cloud() -> None:
    fields = create_body(settings(labels=["cavra", "governance"], custom_fields={"customfield_10042": "s"}))[
        "fields"
    ]
    label = dedup_label("dk_test_0001")
    assert fields["project"] == {"key": "OPS"} and fields["issuetype"] == {"name": "Task"}
    assert fields["summary"] == "CAVRA evidence bundle: demo-session"
    assert fields["labels"] == ["cavra", "governance", label]
    assert fields["priority"] == {"name": "High"}
    assert fields["customfield_10042"] == "s"
    doc = fields["description"]
    assert doc["type"] == "doc" and doc["version"] == 1
    text = json.dumps(doc)
    assert "Blocked" in text and "demo-session" in text and label in text
    assert any(block["type"] == "codeBlock" for block in doc["content"])


@pytest.mark.parametrize(
    ("severity", "priority"),
    [("critical", "Highest"), ("high", "High"), ("medium", "Medium"), ("low", "Low"), ("info", "Lowest")],
)
def test_priority_from_severity(severity: str, priority: str) -> None:
    fields = create_body(event={**EVENT, "max_severity": severity})["fields"]
    assert fields["priority"] == {"name": priority}


def test_priority_map_overrides_and_empty_map_sends_none() -> None:
    fields = create_body(settings(priority_map={"high": "P1"}))["fields"]
    assert fields["priority"] == {"name": "P1"}
    assert "priority" not in create_body(settings(priority_map={}))["fields"]


def test_summary_is_one_line_under_255() -> None:
    event = {**EVENT, "session_id": "s\n" + "x" * 400}
    summary = create_body(event=event)["fields"]["summary"]
    assert len(summary) == 254 and "\n" not in summary and summary.endswith("…")


def test_retried_create_rechecks_first() -> None:
    state = JiraState(step="create", since=2)
    assert CONNECTOR.prepare(EVENT, settings(), ctx(2), state).step == "create"
    recheck = CONNECTOR.prepare(EVENT, settings(), ctx(3), state)
    assert recheck.step == "recheck" and recheck.method == "GET" and "search/jql" in recheck.url


def test_comment_request() -> None:
    req = CONNECTOR.prepare(EVENT, settings(), ctx(2), JiraState(step="comment", since=2, key="OPS-7"))
    assert (req.method, urlsplit(req.url).path, req.step) == (
        "POST",
        "/rest/api/3/issue/OPS-7/comment",
        "comment",
    )
    body = json.loads(req.body)["body"]
    assert body["type"] == "doc" and "delivered this event again" in json.dumps(body)


# -- verdicts ---------------------------------------------------------------------------------------------
def judge(step: str, resp: Response, state: JiraState | None = None, attempt: int = 1) -> Any:
    s = settings()
    c = ctx(attempt)
    req = replace(CONNECTOR.prepare(EVENT, s, c, state), step=step)
    return CONNECTOR.interpret(req, resp, s, c, state)


def test_search_found_goes_to_comment_empty_goes_to_create() -> None:
    label = dedup_label("dk_test_0001")
    found = judge(
        "search", response(200, {"issues": [{"id": "10003", "key": "OPS-3", "fields": {"labels": [label]}}]})
    )
    assert found == Next(JiraState(step="comment", since=2, key="OPS-3", issue_id="10003"))
    assert judge("search", response(200, {"issues": [], "isLast": True})) == Next(
        JiraState(step="create", since=2)
    )
    # an issue that does not carry our label is not ours (the JQL was not applied)
    other = judge(
        "search", response(200, {"issues": [{"id": "1", "key": "OPS-1", "fields": {"labels": ["x"]}}]})
    )
    assert other == Next(JiraState(step="create", since=2))
    # search/jql answers ids only when the fields asked for are not honoured: the id addresses the issue
    bare = judge("search", response(200, {"issues": [{"id": "10003"}], "isLast": True}))
    assert bare == Next(JiraState(step="comment", since=2, key="10003", issue_id="10003"))


def test_search_answers_that_are_not_jira() -> None:
    verdict = judge("search", response(200, b"<html>login</html>"))
    assert isinstance(verdict, Reject) and "without an issues list" in verdict.reason


@pytest.mark.parametrize(
    ("status", "body", "kind", "fragment"),
    [
        (
            400,
            {"errorMessages": ["The value 'OPS' does not exist for the field 'project'."]},
            Reject,
            "field 'project'",
        ),
        (
            401,
            {"errorMessages": ["Client must be authenticated to access this resource."]},
            Reject,
            "credentials",
        ),
        (403, {"errorMessages": []}, Reject, "permission"),
        (404, None, Reject, "HTTP 404"),
        (503, None, Retry, "HTTP 503"),
        (500, None, Retry, "HTTP 500"),
        (501, None, Reject, "HTTP 501"),
    ],
)
def test_search_status_verdicts(status: int, body: Any, kind: type, fragment: str) -> None:
    verdict = judge("search", response(status, body))
    assert isinstance(verdict, kind)
    assert fragment in verdict.reason


def test_429_honours_retry_after_and_410_on_datacenter_hints_at_cloud() -> None:
    verdict = judge("search", response(429, {}, retry_after="7"))
    assert isinstance(verdict, Retry) and verdict.after == 7.0
    s = dc_settings()
    req = CONNECTOR.prepare(EVENT, s, ctx(), None)
    gone = CONNECTOR.interpret(
        req, response(410, {"errorMessages": ["The requested API has been removed."]}), s, ctx(), None
    )
    assert isinstance(gone, Reject) and "deployment to cloud" in gone.reason


def test_create_verdicts() -> None:
    state = JiraState(step="create", since=2)
    ok = judge(
        "create",
        response(201, {"id": "10000", "key": "OPS-1", "self": "https://x/rest/api/3/issue/10000"}),
        state,
        2,
    )
    assert isinstance(ok, Delivered) and ok.remote_id == "OPS-1" and ok.proof == PROOF_CREATED
    assert ok.detail["id"] == "10000"
    bad = judge(
        "create",
        response(400, {"errorMessages": [], "errors": {"project": "valid project is required"}}),
        state,
        2,
    )
    assert (
        isinstance(bad, Reject) and "jira create: HTTP 400: project: valid project is required" in bad.reason
    )
    assert isinstance(judge("create", response(503, {}), state, 2), Retry)
    assert isinstance(judge("create", response(201, {"id": "1"}), state, 2), Reject)


def test_recheck_found_is_delivered_empty_settles_once_then_creates() -> None:
    label = dedup_label("dk_test_0001")
    state = JiraState(step="create", since=2)
    found = judge(
        "recheck",
        response(200, {"issues": [{"id": "10000", "key": "OPS-1", "fields": {"labels": [label]}}]}),
        state,
        3,
    )
    assert isinstance(found, Delivered) and found.remote_id == "OPS-1" and found.proof == PROOF_RECHECKED
    first = judge("recheck", response(200, {"issues": []}), state, 3)
    assert first == Next(JiraState(step="create", since=3, rechecks=1), after=CONNECTOR.settle_seconds)
    # the next prepare with that state is another re-check, and an empty answer then creates
    assert CONNECTOR.prepare(EVENT, settings(), ctx(4), first.state).step == "recheck"
    second = judge("recheck", response(200, {"issues": []}), first.state, 4)
    assert second == Next(JiraState(step="create", since=5))


def test_comment_verdicts() -> None:
    state = JiraState(step="comment", since=2, key="OPS-3", issue_id="10003")
    ok = judge("comment", response(201, {"id": "20001"}), state, 2)
    assert isinstance(ok, Delivered) and ok.remote_id == "OPS-3" and ok.proof == PROOF_COMMENTED
    assert ok.detail["comment_id"] == "20001"
    gone = judge("comment", response(404, {"errorMessages": ["Issue does not exist"]}), state, 2)
    assert isinstance(gone, Reject) and "OPS-3" in gone.reason
    assert isinstance(judge("comment", response(429, {}, retry_after="1"), state, 2), Retry)


# -- against the emulator ---------------------------------------------------------------------------------
@pytest.fixture
async def srv(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["jira"], overrides=OVERRIDES) as server:
        yield server


def target(server: EmulatorServer, **extra: Any) -> Target:
    raw: dict[str, Any] = {
        "url": server.base_url + "/jira",
        "email": EMAIL,
        "api_token_env": "JIRA_API_TOKEN",
        "project_key": "OPS",
        "issue_type": "Task",
        "labels": ["cavra"],
        "allow_http": True,
    }
    raw.update(extra)
    return target_from_mapping(
        "jira", {k: v for k, v in raw.items() if v is not None}, environ={"JIRA_API_TOKEN": TOKEN}
    )


def steps(d: Any) -> list[str]:
    return [a.step for a in d.attempts]


async def test_happy_path_cloud(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert (d.remote_id, d.proof, steps(d)) == ("OPS-1", PROOF_CREATED, ["search", "create"])
    assert [a.status_code for a in d.attempts] == [200, 201]
    (issue,) = jira_emulator(srv.hub).store.issues
    label = dedup_label(d.delivery_key)
    assert issue.fields["labels"] == ["cavra", label]
    assert issue.fields["priority"] == {"name": "High"}
    assert issue.fields["summary"] == "CAVRA evidence bundle: demo-session"
    assert issue.fields["description"]["type"] == "doc"
    search, create = srv.hub.received("jira")
    assert search.method == "GET" and search.path == "/jira/rest/api/3/search/jql"
    assert (
        create.headers["Authorization"] == "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    )
    assert create.headers["Content-Type"] == "application/json"


async def test_happy_path_datacenter(
    emulator_factory: Callable[..., EmulatorServer], transport: AiohttpTransport
) -> None:
    overrides = {"jira": {**OVERRIDES["jira"], "deployment": "datacenter"}}
    async with emulator_factory(providers=["jira"], overrides=overrides) as server:
        t = target_from_mapping(
            "jira",
            {"url": server.base_url + "/jira", "deployment": "datacenter", "token": PAT, "project_key": "OPS",
             "issue_type": "Bug", "allow_http": True},
        )  # fmt: skip
        first = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
        second = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
        (issue,) = jira_emulator(server.hub).store.issues
    assert first.success and second.success, (first.error, second.error)
    assert first.remote_id == second.remote_id == "OPS-1"
    assert isinstance(issue.fields["description"], str) and issue.fields["issuetype"] == {"name": "Bug"}
    assert len(issue.comments) == 1 and isinstance(issue.comments[0]["body"], str)


async def test_delivering_twice_creates_one_issue_and_one_comment(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    t = target(srv)
    first = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    second = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert first.success and second.success
    assert second.proof == PROOF_COMMENTED and second.remote_id == first.remote_id == "OPS-1"
    assert steps(second) == ["search", "comment"]
    (issue,) = jira_emulator(srv.hub).store.issues
    assert len(issue.comments) == 1
    # another event is another issue
    other = await deliver_one(
        t, {**EVENT, "event_id": "evt_jira_test_0002"}, policy=POLICY, transport=transport
    )
    assert other.remote_id == "OPS-2"


async def test_lost_create_answer_is_found_on_recheck(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    srv.hub.add_fault("jira", Fault())  # the search passes
    srv.hub.add_fault("jira", Fault(drop=True, after_handler=True))  # the create acts, its answer is lost
    t = target(srv)
    d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert steps(d) == ["search", "create", "recheck"]
    assert d.attempts[1].status_code is None and d.attempts[1].verdict == "retry"
    assert (d.remote_id, d.proof) == ("OPS-1", PROOF_RECHECKED)
    again = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert again.proof == PROOF_COMMENTED
    (issue,) = jira_emulator(srv.hub).store.issues
    assert len(issue.comments) == 1


async def test_lost_create_answer_with_search_lag_waits_and_finds_it(
    emulator_factory: Callable[..., EmulatorServer], transport: AiohttpTransport
) -> None:
    overrides = {"jira": {**OVERRIDES["jira"], "search_lag_seconds": 0.3}}
    async with emulator_factory(providers=["jira"], overrides=overrides) as server:
        server.hub.add_fault("jira", Fault())
        server.hub.add_fault("jira", Fault(drop=True, after_handler=True))
        t = replace(target(server), connector=QuickSettle())
        d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
        assert d.success, d.error
        assert steps(d) == ["search", "create", "recheck", "recheck"]
        assert d.proof == PROOF_RECHECKED
        assert len(jira_emulator(server.hub).store.issues) == 1


async def test_throttled_create_rechecks_then_creates_once(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    srv.hub.add_fault("jira", Fault())
    srv.hub.add_fault("jira", Fault(status=429, headers={"Retry-After": "0"}, body="{}"))
    t = replace(target(srv), connector=QuickSettle())
    d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert steps(d) == ["search", "create", "recheck", "recheck", "create"]
    assert d.proof == PROOF_CREATED
    assert len(jira_emulator(srv.hub).store.issues) == 1


async def test_invalid_credentials_rejected_once(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    t = target_from_mapping(
        "jira",
        {"url": srv.base_url + "/jira", "email": EMAIL, "api_token": "wrong-token-value",
         "project_key": "OPS", "issue_type": "Task", "allow_http": True},
    )  # fmt: skip
    d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert not d.success and d.status == "failed"
    assert d.attempt_count == 1 and d.status_code == 401 and steps(d) == ["search"]
    assert d.error is not None and "Client must be authenticated" in d.error and "credentials" in d.error
    assert jira_emulator(srv.hub).store.issues == []


def test_missing_credentials_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="api_token is required"):
        target_from_mapping(
            "jira",
            {"url": "https://x.atlassian.net", "email": EMAIL, "project_key": "OPS", "issue_type": "Task"},
        )
    with pytest.raises(ConfigError, match="JIRA_API_TOKEN"):
        target_from_mapping(
            "jira",
            {"url": "https://x.atlassian.net", "email": EMAIL, "api_token_env": "JIRA_API_TOKEN",
             "project_key": "OPS", "issue_type": "Task"},
            environ={},
        )  # fmt: skip


async def test_unknown_project_is_a_clear_rejection(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    d = await deliver_one(target(srv, project_key="NOPE"), EVENT, policy=POLICY, transport=transport)
    assert not d.success and d.attempt_count == 1
    assert d.error is not None and "The value 'NOPE' does not exist for the field 'project'" in d.error


async def test_jira_400_on_create_carries_its_errors_and_is_not_retried(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(srv, issue_type="Epic"), EVENT, policy=POLICY, transport=transport)
    assert not d.success and steps(d) == ["search", "create"] and d.status_code == 400
    assert d.error is not None and "issuetype: Specify a valid issue type" in d.error
    assert len(srv.hub.received("jira")) == 2


async def test_5xx_retried_then_succeeds(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    srv.hub.add_fault("jira", Fault(status=503, count=2, body="{}"))
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert [a.status_code for a in d.attempts] == [503, 503, 200, 201]
    assert [a.verdict for a in d.attempts] == ["retry", "retry", "next", "delivered"]


async def test_429_retry_after_is_honoured(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    srv.hub.add_fault("jira", Fault(status=429, body="{}", headers={"Retry-After": "1"}))
    started = time.monotonic()
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    elapsed = time.monotonic() - started
    assert d.success, d.error
    assert elapsed >= 1.0
    assert d.attempts[0].status_code == 429 and d.attempts[0].retry_after == 1.0


async def test_4xx_not_retried(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    srv.hub.add_fault("jira", Fault(status=403, body='{"errorMessages":["no"],"errors":{}}'))
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert not d.success and d.attempt_count == 1 and d.status_code == 403
    assert len(srv.hub.received("jira")) == 1


async def test_timeout(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    srv.hub.add_fault("jira", Fault(delay=1.0, count=5))
    d = await deliver_one(
        target(srv, timeout_seconds=0.2),
        EVENT,
        policy=RetryPolicy(retries=1, base_delay=0.01),
        transport=transport,
    )
    assert not d.success and d.attempt_count == 2
    assert d.error is not None and "no answer within 0.2 s" in d.error


async def test_connection_refused(transport: AiohttpTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t = target_from_mapping(
        "jira",
        {"url": f"http://127.0.0.1:{port}/jira", "email": EMAIL, "api_token": TOKEN, "project_key": "OPS",
         "issue_type": "Task", "allow_http": True},
    )  # fmt: skip
    d = await deliver_one(t, EVENT, policy=RetryPolicy(retries=1, base_delay=0.01), transport=transport)
    assert not d.success and d.attempt_count == 2
    assert d.error is not None and "cannot connect" in d.error


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), base64.b64encode(value.encode()).decode()]


async def test_no_secret_leaks(
    srv: EmulatorServer, transport: AiohttpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    t = target(srv)
    ok = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    again = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    srv.hub.add_fault(
        "jira", Fault(status=400, body=json.dumps({"errorMessages": [f"bad token {TOKEN}"], "errors": {}}))
    )
    bad = await deliver_one(t, {**EVENT, "event_id": "evt_2"}, policy=POLICY, transport=transport)
    srv.hub.add_fault("jira", Fault(status=500, count=5, body=f'{{"errorMessages":["{TOKEN}"]}}'))
    worse = await deliver_one(t, {**EVENT, "event_id": "evt_3"}, policy=POLICY, transport=transport)
    errors: list[str] = []
    try:
        target_from_mapping("jira", {"url": "https://x", "api_token": TOKEN, "token": PAT, "email": EMAIL})
    except ConfigError as exc:
        errors.append(str(exc))
    assert ok.success and again.success and not bad.success and not worse.success
    assert bad.error is not None and "bad token" in bad.error
    pair = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    texts = [json.dumps(d.to_dict()) for d in (ok, again, bad, worse)] + [
        caplog.text,
        repr(t.settings),
        *errors,
    ]
    for form in [*_forms(TOKEN), *_forms(PAT), pair]:
        for text in texts:
            assert form not in text
