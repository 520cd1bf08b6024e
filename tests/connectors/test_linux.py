"""The Linux fleet connector: AWX job-template launch with the export in extra_vars, polled to its end."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, Next, Pending, Reject, Response
from cavra.connectors.flow import FlowState
from cavra.connectors.linux_fleet import (
    RECHECK_PAGE,
    LaunchState,
    LinuxFleetConnector,
    LinuxFleetSettings,
    poll_interval,
)
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators import awx
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.errors import ConfigError
from cavra.secrets import Secret
from cavra.transport import AiohttpTransport
from tests.connectors.kit import publication_event

TOKEN = "awxCanaryToken~Pz6Mv2Hd8"
USER, PASSWORD = "cavra-leak-user", "awxCanaryPassword~Yb4Ts9"
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = LinuxFleetConnector()
EVENT = publication_event("evt_linux_test_0001")
ADOPTED = (
    "; the launch's answer was lost, the job was found by cavra_delivery_key on re-check "
    "and adopted (not launched again)"
)


class QuickSettle(LinuxFleetConnector):
    """The connector with a short settle wait, so that the lost-answer tests stay quick."""

    settle_seconds: ClassVar[float] = 0.05


def overrides(**template: Any) -> dict[str, dict[str, Any]]:
    spec = {"name": "publish", "ask_variables_on_launch": True, "polls_to_finish": 2, **template}
    return {"awx": {"tokens": [TOKEN], "users": {USER: PASSWORD}, "templates": {7: spec}}}


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(providers=["awx"], overrides=overrides()) as srv:
        yield srv


def quick(t: Target) -> Target:
    return replace(t, connector=QuickSettle())


def target(srv: EmulatorServer | None, **extra: Any) -> Target:
    url = srv.base_url + "/awx" if srv is not None else extra.pop("url")
    raw = {
        "url": url,
        "token": TOKEN,
        "job_template_id": 7,
        "poll_interval_seconds": 0.02,
        "verify_timeout_seconds": 5,
        "allow_http": True,
        **extra,
    }
    return target_from_mapping("linux", {k: v for k, v in raw.items() if v is not None})


def steps(delivery: Any) -> list[tuple[str, int | None, str]]:
    return [(a.step, a.status_code, a.verdict) for a in delivery.attempts]


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), quote_plus(value), base64.b64encode(value.encode()).decode()]


# -- unit ------------------------------------------------------------------------------------------------
def settings(**extra: Any) -> LinuxFleetSettings:
    return LinuxFleetSettings.model_validate(
        {"url": "https://awx.example", "token": TOKEN, "job_template_id": 7, **extra}
    )


def test_launch_request_carries_the_export() -> None:
    req = CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk_abc"), None)
    assert (req.method, req.url, req.step) == (
        "POST",
        "https://awx.example/api/v2/job_templates/7/launch/",
        "launch",
    )
    assert isinstance(req.headers["Authorization"], Secret)
    extra = json.loads(req.body)["extra_vars"]
    assert extra == {
        "cavra_export_id": "eme_kit",
        "cavra_release": "2026.11.1",
        "cavra_channel": "stable",
        "cavra_event_id": "evt_linux_test_0001",
        "cavra_delivery_key": "dk_abc",
        "cavra_approval_status": "approved",
        "cavra_artifacts": [{k: EVENT["artifacts"][0][k] for k in ("name", "sha256", "size")}],
    }


def test_extra_headers_are_sent_but_cannot_replace_the_credential() -> None:
    req = CONNECTOR.prepare(
        EVENT,
        settings(headers={"X-Trace": "t1", "Authorization": "Bearer x"}),
        Context(delivery_key="dk"),
        None,
    )
    assert req.headers["X-Trace"] == "t1"
    assert isinstance(req.headers["Authorization"], Secret)


def test_basic_auth_and_missing_credentials() -> None:
    req = CONNECTOR.prepare(
        EVENT, settings(token=None, username=USER, password=PASSWORD), Context(delivery_key="dk"), None
    )
    header = req.headers["Authorization"]
    assert isinstance(header, Secret)
    assert header.reveal() == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with pytest.raises(ConfigError, match="token, or username and password"):
        CONNECTOR.prepare(EVENT, settings(token=None), Context(delivery_key="dk"), None)
    with pytest.raises(ConfigError, match="linux: job_template_id is required"):
        CONNECTOR.prepare(EVENT, settings(job_template_id=None), Context(delivery_key="dk"), None)


def test_poll_interval_is_stretched_to_bound_the_number_of_polls() -> None:
    assert poll_interval(settings(poll_interval_seconds=5, verify_timeout_seconds=600)) == 20
    assert poll_interval(settings(poll_interval_seconds=5, verify_timeout_seconds=60)) == 5


def judge(step: str, status: int, body: Any, state: Any = None, attempt: int = 1) -> Any:
    s = settings()
    req = CONNECTOR.prepare(EVENT, s, Context(delivery_key="dk", attempt=attempt), state)
    assert req.step == step
    return CONNECTOR.interpret(
        req,
        Response(status, {}, json.dumps(body).encode()),
        s,
        Context(delivery_key="dk", attempt=attempt),
        state,
    )


def test_a_retried_launch_rechecks_the_template_jobs_first() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    ctx = Context(delivery_key="dk_abc", now=now, attempt=2)
    req = CONNECTOR.prepare(EVENT, settings(), ctx, None)
    assert (req.method, req.step, req.body) == ("GET", "recheck", b"")
    url = urlsplit(req.url)
    assert url.path == "/api/v2/job_templates/7/jobs/"
    assert parse_qs(url.query) == {
        "created__gte": ["2026-03-01T11:55:00Z"],  # shortly before the delivery began
        "order_by": ["-created"],
        "page_size": [str(RECHECK_PAGE)],
    }
    assert "extra_vars" not in url.query  # AWX refuses filters on extra_vars
    assert isinstance(req.headers["Authorization"], Secret)
    # a launch scheduled after a re-check is sent as a launch; a retry of it re-checks again
    later = LaunchState(since=4)
    assert CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk", attempt=4), later).step == "launch"
    assert (
        CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk", attempt=5), later).step == "recheck"
    )


def job(job_id: int, key: str, status: str = "running") -> dict[str, Any]:
    return {"id": job_id, "status": status, "extra_vars": json.dumps({"cavra_delivery_key": key, "x": 1})}


def test_recheck_answers() -> None:
    first = LaunchState()
    found = judge("recheck", 200, {"count": 2, "results": [job(9, "other"), job(8, "dk")]}, first, 2)
    assert isinstance(found, Next) and isinstance(found.state, FlowState)
    assert (found.state.step, found.state.remote_id, found.state.action) == ("poll", "8", "adopted")
    # a YAML extra_vars string still identifies the job; a key inside another variable does not
    yaml_job = {"id": 5, "extra_vars": "cavra_delivery_key: dk\nx: 1\n"}
    assert judge("recheck", 200, {"results": [yaml_job]}, first, 2).state.remote_id == "5"
    lookalike = {
        "id": 6,
        "extra_vars": json.dumps({"note": "cavra_delivery_key dk", "cavra_delivery_key": "dk2"}),
    }
    empty = judge("recheck", 200, {"count": 1, "results": [lookalike]}, first, 2)
    assert empty == Next(LaunchState(since=2, rechecks=1), after=CONNECTOR.settle_seconds)
    assert judge("recheck", 200, {"count": 0, "results": []}, empty.state, 3) == Next(LaunchState(since=4))
    bad = judge("recheck", 200, {"detail": "x"}, first, 2)
    assert isinstance(bad, Reject) and "without a results list" in bad.reason
    refused = judge("recheck", 403, {"detail": "no"}, first, 2)
    assert isinstance(refused, Reject) and "may not read the jobs of job template 7" in refused.reason
    assert "does not exist" in judge("recheck", 404, {"detail": "Not found."}, first, 2).reason
    assert type(judge("recheck", 503, {}, first, 2)).__name__ == "Retry"


def test_adopted_job_says_so_when_it_succeeds() -> None:
    adopted = FlowState(step="poll", remote_id="8", action="adopted", deadline=time.monotonic() + 60)
    done = judge("poll", 200, {"status": "successful"}, adopted)
    assert isinstance(done, Delivered)
    assert done.proof == "AWX job 8 (job template 7) finished successful" + ADOPTED
    assert done.detail["launch"] == "adopted"


def test_launch_answers() -> None:
    verdict = judge("launch", 201, {"job": 12, "ignored_fields": {}, "status": "pending"})
    assert isinstance(verdict, Next) and verdict.state.remote_id == "12" and verdict.after > 0
    verdict = judge("launch", 201, {"job": 12, "ignored_fields": {"extra_vars": {"a": 1}}})
    assert isinstance(verdict, Reject) and "Prompt on launch" in verdict.reason and "job 12" in verdict.reason
    verdict = judge("launch", 400, {"variables_needed_to_start": ["'x' value missing"]})
    assert isinstance(verdict, Reject) and "variables_needed_to_start" in verdict.reason
    assert "does not exist" in judge("launch", 404, {"detail": "Not found."}).reason
    assert "cannot be launched" in judge("launch", 405, {"detail": "no"}).reason


def test_poll_answers() -> None:
    live = FlowState(step="poll", remote_id="12", deadline=time.monotonic() + 60)
    assert isinstance(judge("poll", 200, {"status": "running"}, live), Next)
    done = judge("poll", 200, {"status": "successful", "finished": "2026-01-01T00:00:00Z"}, live)
    assert isinstance(done, Delivered) and done.proof == "AWX job 12 (job template 7) finished successful"
    failed = judge("poll", 200, {"status": "error", "job_explanation": "Task was marked as running"}, live)
    assert isinstance(failed, Reject) and "finished error: Task was marked" in failed.reason
    late = FlowState(step="poll", remote_id="12", deadline=time.monotonic())
    pending = judge("poll", 200, {"status": "running"}, late)
    assert isinstance(pending, Pending) and pending.remote_id == "12"


# -- against the emulator --------------------------------------------------------------------------------
async def test_happy_path_launches_and_polls_to_success(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    assert d.status == "delivered", d.error
    assert steps(d) == [("launch", 201, "next"), ("poll", 200, "next"), ("poll", 200, "delivered")]
    job = awx.state(server.hub).jobs[int(str(d.remote_id))]
    assert d.proof == f"AWX job {job.id} (job template 7) finished successful"
    assert job.extra_vars["cavra_export_id"] == "eme_kit"
    assert job.extra_vars["cavra_artifacts"][0]["sha256"] == EVENT["artifacts"][0]["sha256"]
    received = server.hub.received("awx")
    assert received[0].path == "/awx/api/v2/job_templates/7/launch/"
    assert received[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert [r.path for r in received[1:]] == [f"/awx/api/v2/jobs/{job.id}/"] * 2
    assert d.detail["launch"] == "launched"


async def test_basic_auth_delivers(server: EmulatorServer, transport: AiohttpTransport) -> None:
    d = await deliver_one(
        target(server, token=None, username=USER, password=PASSWORD),
        EVENT,
        policy=POLICY,
        transport=transport,
    )
    assert d.success, d.error


@pytest.mark.parametrize("outcome", ["failed", "error", "canceled"])
async def test_failed_job_fails_the_delivery_with_its_status(
    outcome: str, transport: AiohttpTransport
) -> None:
    async with EmulatorServer(
        providers=["awx"], overrides=overrides(outcome=outcome, polls_to_finish=1)
    ) as srv:
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert d.status == "failed"
    assert steps(d) == [("launch", 201, "next"), ("poll", 200, "reject")]
    assert d.error is not None and f"finished {outcome}" in d.error


async def test_slow_job_beyond_the_verify_deadline_is_pending(transport: AiohttpTransport) -> None:
    async with EmulatorServer(providers=["awx"], overrides=overrides(polls_to_finish=10_000)) as srv:
        started = time.monotonic()
        d = await deliver_one(
            target(srv, poll_interval_seconds=0.05, verify_timeout_seconds=0.4),
            EVENT,
            policy=POLICY,
            transport=transport,
        )
        elapsed = time.monotonic() - started
    assert d.status == "pending"
    assert not d.success
    assert d.remote_id is not None
    assert d.error is not None and "verify deadline" in d.error
    assert 0.3 <= elapsed < 3
    assert 3 <= sum(1 for a in d.attempts if a.step == "poll") <= 10


async def test_template_that_ignores_extra_vars_fails_clearly(transport: AiohttpTransport) -> None:
    async with EmulatorServer(providers=["awx"], overrides=overrides(ask_variables_on_launch=False)) as srv:
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert steps(d) == [("launch", 201, "reject")]
    assert d.error is not None and "ignored extra_vars" in d.error


async def test_unknown_template_is_rejected_once(server: EmulatorServer, transport: AiohttpTransport) -> None:
    d = await deliver_one(target(server, job_template_id=99), EVENT, policy=POLICY, transport=transport)
    assert steps(d) == [("launch", 404, "reject")]
    assert d.error is not None and "job template 99 does not exist" in d.error


async def test_missing_template_and_missing_artifacts_fail_before_sending(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(server, job_template_id=None), EVENT, policy=POLICY, transport=transport)
    assert d.attempt_count == 0 and d.error is not None and "linux: job_template_id is required" in d.error
    no_artifacts = {k: v for k, v in EVENT.items() if k != "artifacts"}
    d = await deliver_one(target(server), no_artifacts, policy=POLICY, transport=transport)
    assert d.attempt_count == 0 and d.error is not None and "field artifacts is required" in d.error
    assert server.hub.received("awx") == []


@pytest.mark.parametrize(
    "credentials",
    [{"token": "wrong-token-value"}, {"token": None, "username": USER, "password": "wrong-password"}],
)
async def test_invalid_credentials_rejected_once(
    credentials: dict[str, Any], server: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(server, **credentials), EVENT, policy=POLICY, transport=transport)
    assert steps(d) == [("launch", 401, "reject")]
    assert d.error is not None and "credentials were refused" in d.error


async def test_missing_credentials_fail_before_sending(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(server, token=None), EVENT, policy=POLICY, transport=transport)
    assert d.attempt_count == 0 and d.error is not None and "token, or username and password" in d.error


async def test_5xx_retried_then_delivered(server: EmulatorServer, transport: AiohttpTransport) -> None:
    server.hub.add_fault("awx", Fault(status=502, count=1))
    d = await deliver_one(quick(target(server)), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert steps(d)[:4] == [
        ("launch", 502, "retry"),
        ("recheck", 200, "next"),
        ("recheck", 200, "next"),
        ("launch", 201, "next"),
    ]
    assert len(awx.state(server.hub).jobs) == 1


async def test_lost_launch_answer_adopts_the_job_awx_started(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    server.hub.add_fault(
        "awx", Fault(drop=True, after_handler=True)
    )  # AWX starts the job, the answer is lost
    t = target(server)
    d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert d.status == "delivered", d.error
    assert steps(d) == [
        ("launch", None, "retry"),
        ("recheck", 200, "next"),
        ("poll", 200, "next"),
        ("poll", 200, "delivered"),
    ]
    (job,) = awx.state(server.hub).jobs.values()  # exactly one AWX job
    assert job.extra_vars["cavra_delivery_key"] == d.delivery_key
    assert d.remote_id == str(job.id)
    assert d.proof == f"AWX job {job.id} (job template 7) finished successful" + ADOPTED
    assert d.detail["launch"] == "adopted"
    recheck = server.hub.received("awx")[1]
    assert (recheck.method, recheck.path) == ("GET", "/awx/api/v2/job_templates/7/jobs/")
    assert recheck.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_lost_launch_answer_ignores_other_deliveries_jobs(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    other = await deliver_one(
        target(server), publication_event("evt_linux_other"), policy=POLICY, transport=transport
    )
    assert other.success
    server.hub.add_fault("awx", Fault(drop=True))  # the connection drops before AWX acts
    d = await deliver_one(quick(target(server)), EVENT, policy=POLICY, transport=transport)
    assert d.status == "delivered", d.error
    assert [s[0] for s in steps(d)] == ["launch", "recheck", "recheck", "launch", "poll", "poll"]
    assert d.remote_id != other.remote_id
    assert d.detail["launch"] == "launched" and d.proof is not None and "adopted" not in d.proof
    assert len(awx.state(server.hub).jobs) == 2  # one per delivery


async def test_launch_dropped_before_awx_acted_still_launches_once(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    server.hub.add_fault("awx", Fault(drop=True))
    d = await deliver_one(quick(target(server)), EVENT, policy=POLICY, transport=transport)
    assert d.status == "delivered", d.error
    assert steps(d)[:4] == [
        ("launch", None, "retry"),
        ("recheck", 200, "next"),
        ("recheck", 200, "next"),
        ("launch", 201, "next"),
    ]
    (job,) = awx.state(server.hub).jobs.values()
    assert d.remote_id == str(job.id) and d.detail["launch"] == "launched"
    assert sum(1 for r in server.hub.received("awx") if r.path.endswith("/launch/")) == 2


async def test_lost_answer_and_failed_recheck_does_not_launch_blindly(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    server.hub.add_fault("awx", Fault(drop=True, after_handler=True))
    server.hub.add_fault("awx", Fault(status=503, count=5))  # every re-check fails
    d = await deliver_one(quick(target(server)), EVENT, policy=POLICY, transport=transport)
    assert d.status == "failed"
    assert [s[0] for s in steps(d)] == ["launch", "recheck", "recheck"]
    assert len(awx.state(server.hub).jobs) == 1


async def test_429_retry_after_is_honoured(server: EmulatorServer, transport: AiohttpTransport) -> None:
    server.hub.add_fault("awx", Fault(status=429, count=1, headers={"Retry-After": "1"}))
    started = time.monotonic()
    d = await deliver_one(quick(target(server)), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert time.monotonic() - started >= 1.0
    assert d.attempts[0].retry_after == 1.0 and d.attempts[1].waited_ms >= 1000  # the wait before it


async def test_400_is_not_retried(server: EmulatorServer, transport: AiohttpTransport) -> None:
    survey = [{"variable": "site_code", "required": True}]
    async with EmulatorServer(providers=["awx"], overrides=overrides(survey=survey)) as srv:
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
        assert steps(d) == [("launch", 400, "reject")]
        assert d.error is not None and "site_code" in d.error
        assert awx.state(srv.hub).jobs == {}


async def test_5xx_while_polling_is_retried(transport: AiohttpTransport) -> None:
    async with EmulatorServer(providers=["awx"], overrides=overrides(polls_to_finish=1)) as srv:
        srv.hub.add_fault("awx", Fault(count=1))  # no status: the launch passes through to the emulator
        srv.hub.add_fault("awx", Fault(status=503, count=1))  # the first poll fails
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert steps(d) == [("launch", 201, "next"), ("poll", 503, "retry"), ("poll", 200, "delivered")]


async def test_polls_lost_after_the_launch_end_pending_with_the_job(transport: AiohttpTransport) -> None:
    """AWX started the job; its polls then get no answer until the retries run out. Failing would invite a
    second launch: the delivery is pending, naming the job."""
    async with EmulatorServer(providers=["awx"], overrides=overrides(polls_to_finish=1)) as srv:
        srv.hub.add_fault("awx", Fault(count=1))  # the launch passes
        srv.hub.add_fault("awx", Fault(drop=True, count=10))  # every poll's connection drops
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
        launched = [r for r in srv.hub.received("awx") if r.method == "POST"]
    assert d.status == "pending" and d.remote_id is not None
    assert d.error is not None and str(d.error).startswith(
        f"AWX started job {d.remote_id}, its end not yet known"
    )
    assert [s[0] for s in steps(d)] == ["launch", "poll", "poll", "poll"] and len(launched) == 1


class SettleOneSecond(LinuxFleetConnector):
    settle_seconds: ClassVar[float] = 1.0


async def test_timed_out_launch_that_lands_late_is_found_after_the_settle_wait(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    # AWX starts the job 0.6 s after the request, long after the client gave up (0.2 s): the first re-check
    # finds nothing, the one after the settle wait finds the job
    server.hub.add_fault("awx", Fault(delay=0.6, count=1))
    t = replace(target(server, timeout_seconds=0.2), connector=SettleOneSecond())
    d = await deliver_one(t, EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert d.attempts[0].status_code is None and d.attempts[0].verdict == "retry"
    assert [s[0] for s in steps(d)][:3] == ["launch", "recheck", "recheck"]
    assert d.detail["launch"] == "adopted"
    assert len(awx.state(server.hub).jobs) == 1


async def test_connection_refused(transport: AiohttpTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    d = await deliver_one(
        target(None, url=f"http://127.0.0.1:{port}/awx"),
        EVENT,
        policy=RetryPolicy(retries=1, base_delay=0.01, max_delay=0.02),
        transport=transport,
    )
    assert d.status == "failed" and d.attempt_count == 2
    assert d.error is not None and "cannot connect" in d.error


async def test_no_secret_leaks(
    server: EmulatorServer, transport: AiohttpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    basic_header = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with_basic = {"token": None, "username": USER, "password": PASSWORD}
    ok = await deliver_one(target(server), EVENT, policy=POLICY, transport=transport)
    ok_basic = await deliver_one(target(server, **with_basic), EVENT, policy=POLICY, transport=transport)
    server.hub.add_fault(
        "awx", Fault(status=500, count=1, body=json.dumps({"detail": f"Bearer {TOKEN} {TOKEN}"}))
    )
    bad = await deliver_one(target(server), EVENT, policy=RetryPolicy(retries=0), transport=transport)
    echo = json.dumps({"detail": f"{PASSWORD} Basic {basic_header}"})
    server.hub.add_fault("awx", Fault(status=500, count=1, body=echo))
    bad_basic = await deliver_one(
        target(server, **with_basic), EVENT, policy=RetryPolicy(retries=0), transport=transport
    )
    wrong = await deliver_one(target(server, token=TOKEN + "x"), EVENT, policy=POLICY, transport=transport)
    assert ok.success and ok_basic.success
    assert not bad.success and not bad_basic.success and not wrong.success
    texts = [json.dumps(d.to_dict()) for d in (ok, ok_basic, bad, bad_basic, wrong)]
    texts += [caplog.text, str(bad.error), str(bad_basic.error), str(wrong.error)]
    for secret in [TOKEN, TOKEN + "x", PASSWORD, f"{USER}:{PASSWORD}"]:
        for form in _forms(secret):
            for text in texts:
                assert form not in text


async def test_a_resumed_run_adopts_the_job_an_earlier_runs_lost_launch_started(
    server: EmulatorServer, transport: AiohttpTransport
) -> None:
    """The outbox runs a job again after a run whose launch answer was lost and whose retries were spent:
    the new run looks for the job first (back to when the first run began) and adopts it."""
    began = time.time()
    server.hub.add_fault("awx", Fault(drop=True, after_handler=True))  # AWX starts the job, answer lost
    once = RetryPolicy(retries=0)
    first = await deliver_one(quick(target(server)), EVENT, policy=once, transport=transport)
    assert not first.success and [s[0] for s in steps(first)] == ["launch"]
    assert len(awx.state(server.hub).jobs) == 1
    again = await deliver_one(
        quick(target(server)), EVENT, policy=POLICY, transport=transport, resumed_since=began
    )
    assert again.success, again.error
    assert [s[0] for s in steps(again)][:2] == ["recheck", "poll"]
    (job,) = awx.state(server.hub).jobs.values()  # still exactly one AWX job
    assert again.remote_id == str(job.id) and again.detail["launch"] == "adopted"
    recheck = server.hub.received("awx")[1]
    assert (recheck.method, recheck.path) == ("GET", "/awx/api/v2/job_templates/7/jobs/")


def test_a_resumed_run_starts_with_a_recheck_back_to_its_first_run() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    ctx = Context(delivery_key="dk", now=now, attempt=1, resumed_since=now - 3600)
    req = CONNECTOR.prepare(EVENT, settings(), ctx, None)
    assert req.step == "recheck"
    assert parse_qs(urlsplit(req.url).query)["created__gte"] == ["2026-03-01T10:55:00Z"]
    # a first run launches at once
    assert CONNECTOR.prepare(EVENT, settings(), Context(delivery_key="dk", now=now), None).step == "launch"
