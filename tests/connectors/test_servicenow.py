"""The ServiceNow connector: settings, requests, verdicts, and lookup → insert/work note (emulator)."""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, Next, Reject, Response, Retry
from cavra.connectors.servicenow import ServiceNowConnector, ServiceNowSettings, ServiceNowState
from cavra.connectors.servicenow.connector import PROOF_CREATED, PROOF_NOTED, PROOF_RECHECKED
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.emulators.servicenow import servicenow_emulator
from cavra.errors import ConfigError
from cavra.secrets import Secret
from cavra.transport import AiohttpTransport

USER = "cavra.integration"
PASSWORD = "leak-canary-sn-password-3e5f7a"
OAUTH = "leak-canary-sn-oauth-6b8d0f"
EVENT: dict[str, Any] = {
    "event_type": "cavra.evidence_bundle",
    "event_id": "evt_sn_test_0001",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "critical",
}
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = ServiceNowConnector()
OVERRIDES = {"servicenow": {"users": {USER: PASSWORD}, "bearer_tokens": [OAUTH]}}
KEY = "dk_test_0001"


def settings(**extra: Any) -> ServiceNowSettings:
    values: dict[str, Any] = {"url": "https://acme.service-now.com", "username": USER, "password": PASSWORD}
    values.update(extra)
    return ServiceNowSettings.model_validate({k: v for k, v in values.items() if v is not None})


def response(status: int, body: Any = None, **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    return Response(
        status=status, headers={k.lower().replace("_", "-"): v for k, v in headers.items()}, body=raw
    )


def ctx(attempt: int = 1) -> Context:
    c = Context(delivery_key=KEY, now=1_700_000_000.0)
    c.attempt = attempt
    return c


CREATE = ServiceNowState(step="create", since=2)


# -- settings ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"url": None}, "url is required"),
        ({"password": None}, "credentials are required"),
        ({"username": None}, "username is required"),
        ({"token": OAUTH}, "not both"),
        ({"table": "Change Request"}, "is not a table name"),
        ({"api": "change", "type": "standard"}, "standard change template"),
        ({"api": "change", "table": "incident"}, "api change writes change_request"),
        ({"api": "soap"}, "api"),
        ({"type": "urgent"}, "type"),
    ],
)
def test_invalid_settings_name_the_key(extra: dict[str, Any], fragment: str) -> None:
    raw: dict[str, Any] = {"url": "https://acme.service-now.com", "username": USER, "password": PASSWORD}
    raw.update(extra)
    with pytest.raises(ConfigError) as info:
        target_from_mapping("servicenow", {k: v for k, v in raw.items() if v is not None})
    assert fragment in str(info.value)
    assert PASSWORD not in str(info.value) and OAUTH not in str(info.value)


# -- requests ---------------------------------------------------------------------------------------------
def test_lookup_request() -> None:
    req = CONNECTOR.prepare(EVENT, settings(), ctx(), None)
    parts = urlsplit(req.url)
    assert (req.method, req.step, parts.path) == ("GET", "query", "/api/now/table/change_request")
    query = parse_qs(parts.query)
    assert query["sysparm_query"] == [f"correlation_id={KEY}^ORDERBYsys_created_on"]
    assert query["sysparm_limit"] == ["1"] and query["sysparm_fields"] == ["sys_id,number,correlation_id"]
    auth = req.headers["Authorization"]
    pair = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert isinstance(auth, Secret) and auth.reveal() == f"Basic {pair}"
    assert [s.reveal() for s in req.new_secrets] == [pair]
    assert req.headers["Accept"] == "application/json"


def test_table_insert_request() -> None:
    req = CONNECTOR.prepare(
        EVENT, settings(category="Security", assignment_group="CAB Approval"), ctx(2), CREATE
    )
    assert (req.method, req.step, urlsplit(req.url).path) == (
        "POST",
        "create",
        "/api/now/table/change_request",
    )
    assert req.headers["Content-Type"] == "application/json" and req.headers["Accept"] == "application/json"
    body = json.loads(req.body)
    assert body["short_description"] == "CAVRA evidence bundle: demo-session"
    assert (body["impact"], body["risk"], body["type"]) == ("1", "2", "normal")
    assert body["correlation_id"] == KEY and body["correlation_display"] == "CAVRA evt_sn_test_0001"
    assert body["category"] == "Security" and body["assignment_group"] == "CAB Approval"
    assert "Blocked: 4" in body["description"] and KEY in body["description"]


@pytest.mark.parametrize(
    ("severity", "impact", "risk"),
    [("critical", "1", "2"), ("high", "1", "2"), ("medium", "2", "3"), ("low", "3", "4"), ("info", "3", "4")],
)
def test_impact_and_risk_from_severity(severity: str, impact: str, risk: str) -> None:
    req = CONNECTOR.prepare({**EVENT, "max_severity": severity}, settings(), ctx(2), CREATE)
    body = json.loads(req.body)
    assert (body["impact"], body["risk"]) == (impact, risk)


def test_change_api_request_and_bearer() -> None:
    s = settings(api="change", type="emergency", password=None, username=None, token=OAUTH)
    req = CONNECTOR.prepare(EVENT, s, ctx(2), CREATE)
    # the model-based endpoint, whose JSON body is documented (/change/{type} documents no request body)
    assert urlsplit(req.url).path == "/api/sn_chg_rest/change"
    body = json.loads(req.body)
    assert body["type"] == "emergency" and body["correlation_id"] == ctx(2).delivery_key
    auth = req.headers["Authorization"]
    assert isinstance(auth, Secret) and auth.reveal() == f"Bearer {OAUTH}"


def test_long_text_is_clipped() -> None:
    event = {**EVENT, "session_id": "s" * 500, "notes": "n" * 300}
    body = json.loads(CONNECTOR.prepare(event, settings(), ctx(2), CREATE).body)
    assert len(body["short_description"]) == 160 and len(body["description"]) <= 4000


def test_retried_insert_rechecks_and_work_note_request() -> None:
    assert CONNECTOR.prepare(EVENT, settings(), ctx(3), CREATE).step == "recheck"
    state = ServiceNowState(step="work_note", since=2, sys_id="a" * 32, number="CHG0030001")
    req = CONNECTOR.prepare(EVENT, settings(), ctx(2), state)
    assert (req.method, urlsplit(req.url).path) == ("PATCH", "/api/now/table/change_request/" + "a" * 32)
    assert "delivered this event again" in json.loads(req.body)["work_notes"]


# -- verdicts ---------------------------------------------------------------------------------------------
def judge(
    step: str, resp: Response, state: ServiceNowState | None = None, attempt: int = 1, **extra: Any
) -> Any:
    s = settings(**extra)
    c = ctx(attempt)
    req = replace(CONNECTOR.prepare(EVENT, s, c, state), step=step)
    return CONNECTOR.interpret(req, resp, s, c, state)


def test_lookup_found_empty_and_mismatch() -> None:
    row = {"sys_id": "b" * 32, "number": "CHG0030007", "correlation_id": KEY}
    assert judge("query", response(200, {"result": [row]})) == Next(
        ServiceNowState(step="work_note", since=2, sys_id="b" * 32, number="CHG0030007")
    )
    assert judge("query", response(200, {"result": []})) == Next(ServiceNowState(step="create", since=2))
    # ServiceNow ignores a query on an unknown field and returns any record: never note on someone else's
    wrong = judge("query", response(200, {"result": [{**row, "correlation_id": "other"}]}))
    assert isinstance(wrong, Reject) and "another correlation_id" in wrong.reason
    assert isinstance(judge("query", response(200, b"<html/>")), Reject)


@pytest.mark.parametrize(
    ("status", "kind", "fragment"),
    [(400, Reject, "Invalid table"), (401, Reject, "username + password"), (403, Reject, "ACL"),
     (404, Reject, "404"), (429, Retry, "429"), (502, Retry, "502"), (503, Retry, "503")],
)  # fmt: skip
def test_lookup_status_verdicts(status: int, kind: type, fragment: str) -> None:
    body = {"error": {"message": "Invalid table change_request", "detail": None}, "status": "failure"}
    verdict = judge("query", response(status, body, retry_after="2"))
    assert isinstance(verdict, kind) and fragment in verdict.reason
    if kind is Retry:
        assert verdict.after == 2.0


def test_create_verdicts_table_and_change_api() -> None:
    result = {"sys_id": "c" * 32, "number": "CHG0030001", "correlation_id": KEY}
    ok = judge("create", response(201, {"result": result}), CREATE, 2)
    assert isinstance(ok, Delivered) and ok.remote_id == "CHG0030001" and ok.proof == PROOF_CREATED
    assert ok.detail["sys_id"] == "c" * 32
    change = {"sys_id": {"value": "d" * 32, "display_value": "d" * 32}, "number": {"value": "CHG0030002"}}
    for body in ({"result": change}, {"result": [change]}):
        v = judge("create", response(200, body), CREATE, 2, api="change")
        assert isinstance(v, Delivered) and v.remote_id == "CHG0030002" and v.detail["sys_id"] == "d" * 32
    # no body: the Location header names the record
    loc = judge(
        "create", response(201, b"", location=f"https://x/api/now/table/change_request/{'e' * 32}"), CREATE, 2
    )
    assert isinstance(loc, Delivered) and loc.remote_id == "e" * 32
    bad = judge(
        "create",
        response(400, {"error": {"message": "Invalid field", "detail": "type"}, "status": "failure"}),
        CREATE,
        2,
    )
    assert isinstance(bad, Reject) and bad.reason == "servicenow create: HTTP 400: Invalid field (type)"
    assert isinstance(judge("create", response(502, {}), CREATE, 2), Retry)


def test_recheck_and_work_note_verdicts() -> None:
    row = {"sys_id": "f" * 32, "number": "CHG0030009", "correlation_id": KEY}
    found = judge("recheck", response(200, {"result": [row]}), CREATE, 3)
    assert isinstance(found, Delivered) and found.proof == PROOF_RECHECKED and found.remote_id == "CHG0030009"
    assert judge("recheck", response(200, {"result": []}), CREATE, 3) == Next(
        ServiceNowState(step="create", since=4)
    )
    state = ServiceNowState(step="work_note", since=2, sys_id="f" * 32, number="CHG0030009")
    noted = judge("work_note", response(200, {"result": row}), state, 2)
    assert isinstance(noted, Delivered) and noted.proof == PROOF_NOTED and noted.remote_id == "CHG0030009"
    gone = judge("work_note", response(404, {"error": {"message": "No Record found"}}), state, 2)
    assert isinstance(gone, Reject) and "CHG0030009" in gone.reason and "No Record found" in gone.reason


# -- against the emulator ---------------------------------------------------------------------------------
@pytest.fixture
async def srv(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["servicenow"], overrides=OVERRIDES) as server:
        yield server


def target(server: EmulatorServer, **extra: Any) -> Target:
    raw: dict[str, Any] = {
        "url": server.base_url + "/servicenow",
        "username": USER,
        "password_env": "SERVICENOW_PASSWORD",
        "category": "Security",
        "assignment_group": "CAB Approval",
        "allow_http": True,
    }
    raw.update(extra)
    clean = {k: v for k, v in raw.items() if v is not None}
    return target_from_mapping("servicenow", clean, environ={"SERVICENOW_PASSWORD": PASSWORD})


def changes(server: EmulatorServer) -> list[dict[str, str]]:
    return servicenow_emulator(server.hub).store.tables["change_request"]


def journal(server: EmulatorServer) -> list[dict[str, str]]:
    return servicenow_emulator(server.hub).store.tables["sys_journal_field"]


def steps(d: Any) -> list[str]:
    return [a.step for a in d.attempts]


async def test_happy_path_table_api(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert steps(d) == ["query", "create"] and [a.status_code for a in d.attempts] == [200, 201]
    (record,) = changes(srv)
    assert d.remote_id == record["number"] and re.fullmatch(r"CHG\d{7}", record["number"])
    assert d.detail["sys_id"] == record["sys_id"] and d.proof == PROOF_CREATED
    assert record["correlation_id"] == d.delivery_key and record["type"] == "normal"
    assert (record["impact"], record["risk"], record["category"]) == ("1", "2", "Security")
    assert record["short_description"] == "CAVRA evidence bundle: demo-session"
    query, create = srv.hub.received("servicenow")
    assert query.method == "GET" and "correlation_id" in query.query
    assert (
        create.headers["Authorization"] == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    )


async def test_happy_path_change_api_with_bearer(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    t = target(srv, api="change", username=None, password_env=None, token=OAUTH)
    first = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    second = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert first.success and second.success, (first.error, second.error)
    (record,) = changes(srv)  # the emulator ignores a body on /change/normal: it would have made two
    assert first.remote_id == second.remote_id == record["number"]
    assert record["state"] == "-5" and record["type"] == "normal"
    assert record["correlation_id"] == first.to_dict()["detail"]["correlation_id"]
    assert second.proof == PROOF_NOTED and len(journal(srv)) == 1
    (create,) = [r for r in srv.hub.received("servicenow") if r.method == "POST"]
    assert create.path.endswith("/api/sn_chg_rest/change")


async def test_change_api_emergency_type_reaches_the_record(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    t = target(srv, api="change", type="emergency", username=None, password_env=None, token=OAUTH)
    d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    (record,) = changes(srv)
    assert (record["type"], record["chg_model"]) == ("emergency", "emergency")


async def test_delivering_twice_creates_one_change_and_one_work_note(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    t = target(srv)
    first = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    second = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert first.success and second.success
    assert steps(second) == ["query", "work_note"] and second.proof == PROOF_NOTED
    assert second.remote_id == first.remote_id
    (record,) = changes(srv)
    (note,) = journal(srv)
    assert (note["element_id"], note["element"]) == (record["sys_id"], "work_notes")
    assert "delivered this event again" in note["value"]
    other = await deliver_one(
        t, {**EVENT, "event_id": "evt_sn_test_0002"}, policy=POLICY, transport=transport
    )
    assert other.success and len(changes(srv)) == 2


async def test_lost_insert_answer_is_found_on_recheck(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    srv.hub.add_fault("servicenow", Fault())  # the lookup passes
    srv.hub.add_fault(
        "servicenow", Fault(drop=True, after_handler=True)
    )  # the insert acts, its answer is lost
    t = target(srv)
    d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert steps(d) == ["query", "create", "recheck"] and d.proof == PROOF_RECHECKED
    assert d.attempts[1].status_code is None
    again = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert again.proof == PROOF_NOTED
    assert len(changes(srv)) == 1 and len(journal(srv)) == 1


async def test_lost_change_api_answer_is_found_on_recheck(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    srv.hub.add_fault("servicenow", Fault())
    srv.hub.add_fault("servicenow", Fault(drop=True, after_handler=True))
    d = await deliver_one(target(srv, api="change"), EVENT, policy=POLICY, transport=transport)
    assert d.success and d.proof == PROOF_RECHECKED and len(changes(srv)) == 1


async def test_invalid_credentials_rejected_once(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    t = target(srv, password_env=None, password="wrong-password-value")
    d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert not d.success and d.attempt_count == 1 and d.status_code == 401
    assert d.error is not None and "User Not Authenticated" in d.error
    assert changes(srv) == []


def test_missing_credentials_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="credentials are required"):
        target_from_mapping("servicenow", {"url": "https://acme.service-now.com", "username": USER})
    with pytest.raises(ConfigError, match="SERVICENOW_PASSWORD"):
        target_from_mapping(
            "servicenow",
            {"url": "https://acme.service-now.com", "username": USER, "password_env": "SERVICENOW_PASSWORD"},
            environ={},
        )


async def test_servicenow_400_carries_its_error_and_is_not_retried(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(srv, table="change_requests"), EVENT, policy=POLICY, transport=transport)
    assert not d.success and d.attempt_count == 1 and d.status_code == 400
    assert d.error is not None and "Invalid table change_requests" in d.error
    srv.hub.add_fault("servicenow", Fault())
    body = {
        "error": {"message": "Data Policy Exception", "detail": "Assignment group is mandatory"},
        "status": "failure",
    }
    srv.hub.add_fault("servicenow", Fault(status=400, body=json.dumps(body)))
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert not d.success and steps(d) == ["query", "create"]
    assert d.error is not None and "Data Policy Exception (Assignment group is mandatory)" in d.error


async def test_5xx_retried_then_succeeds(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    srv.hub.add_fault("servicenow", Fault(status=502, count=2, body="{}"))
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert [a.status_code for a in d.attempts] == [502, 502, 200, 201]


async def test_rate_rule_429_retry_after_is_honoured(
    emulator_factory: Callable[..., EmulatorServer], transport: AiohttpTransport
) -> None:
    rule = {"rate_limit_requests": 2, "rate_limit_window_seconds": 1}
    overrides = {"servicenow": {**OVERRIDES["servicenow"], **rule}}
    async with emulator_factory(providers=["servicenow"], overrides=overrides) as server:
        t = target(server)
        first = await deliver_one(
            t, EVENT, policy=POLICY, transport=transport
        )  # uses the window's 2 requests
        assert first.success, first.error
        started = time.monotonic()
        d = await deliver_one(t, {**EVENT, "event_id": "evt_sn_2"}, policy=POLICY, transport=transport)
        elapsed = time.monotonic() - started
        assert d.success, d.error
        assert [a.status_code for a in d.attempts] == [429, 200, 201]
        assert d.attempts[0].retry_after == 1.0
        assert elapsed >= 1.0
        assert len(changes(server)) == 2


async def test_429_fault_retry_after_is_honoured(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    srv.hub.add_fault("servicenow", Fault(status=429, body="{}", headers={"Retry-After": "1"}))
    started = time.monotonic()
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert d.success and time.monotonic() - started >= 1.0
    assert d.attempts[0].retry_after == 1.0


async def test_4xx_not_retried(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    srv.hub.add_fault("servicenow", Fault(status=403, body='{"error":{"message":"ACL"},"status":"failure"}'))
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert not d.success and d.attempt_count == 1 and len(srv.hub.received("servicenow")) == 1


async def test_timeout(srv: EmulatorServer, transport: AiohttpTransport) -> None:
    srv.hub.add_fault("servicenow", Fault(delay=1.0, count=5))
    policy = RetryPolicy(retries=1, base_delay=0.01)
    d = await deliver_one(target(srv, timeout_seconds=0.2), EVENT, policy=policy, transport=transport)
    assert not d.success and d.attempt_count == 2
    assert d.error is not None and "no answer within 0.2 s" in d.error


async def test_connection_refused(transport: AiohttpTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    raw = {"url": f"http://127.0.0.1:{port}", "username": USER, "password": PASSWORD, "allow_http": True}
    d = await deliver_one(
        target_from_mapping("servicenow", raw),
        EVENT,
        policy=RetryPolicy(retries=1, base_delay=0.01),
        transport=transport,
    )
    assert not d.success and d.attempt_count == 2
    assert d.error is not None and "cannot connect" in d.error


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), base64.b64encode(value.encode()).decode()]


async def test_no_secret_leaks(
    srv: EmulatorServer, transport: AiohttpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    basic = target(srv)
    bearer = target(srv, username=None, password_env=None, token=OAUTH)
    results = [
        await deliver_one(basic, EVENT, policy=POLICY, transport=transport),
        await deliver_one(bearer, EVENT, policy=POLICY, transport=transport),
    ]
    # the instance echoes the credential it was sent (each target knows only its own)
    echo = {"error": {"message": f"bad password {PASSWORD}", "detail": None}, "status": "failure"}
    srv.hub.add_fault("servicenow", Fault(status=400, body=json.dumps(echo)))
    results.append(
        await deliver_one(basic, {**EVENT, "event_id": "evt_2"}, policy=POLICY, transport=transport)
    )
    echo = {"error": {"message": "bad token", "detail": f"Bearer {OAUTH}"}, "status": "failure"}
    srv.hub.add_fault("servicenow", Fault(status=500, count=5, body=json.dumps(echo)))
    results.append(
        await deliver_one(bearer, {**EVENT, "event_id": "evt_3"}, policy=POLICY, transport=transport)
    )
    errors: list[str] = []
    try:
        target_from_mapping(
            "servicenow", {"url": "https://x", "password": PASSWORD, "token": OAUTH, "username": USER}
        )
    except ConfigError as exc:
        errors.append(str(exc))
    assert [d.success for d in results] == [True, True, False, False]
    assert results[2].error is not None and "bad password" in results[2].error
    pair = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    texts = [json.dumps(d.to_dict()) for d in results] + [
        caplog.text,
        repr(basic.settings),
        repr(bearer.settings),
        *errors,
    ]
    for form in [*_forms(PASSWORD), *_forms(OAUTH), pair]:
        for text in texts:
            assert form not in text
