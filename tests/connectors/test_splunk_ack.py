"""Splunk HEC indexer acknowledgement: the connector polls ``/services/collector/ack`` when ``ack`` is on."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, Next, Pending, Response
from cavra.connectors.splunk import (
    MAX_ACK_POLLS,
    PENDING_ACK,
    AckState,
    SplunkConnector,
    SplunkSettings,
    ack_interval,
    ack_url,
    channel_of,
)
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators import splunk as hec
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.errors import ConfigError
from cavra.transport import AiohttpTransport

TOKEN = "5ec7e7a1-0b1d-4c2e-9f3a-1eaac0ffee99"
ACK_TOKEN = "0acc0acc-1111-4222-8333-444455556666"
TOKENS = {TOKEN: {"name": "cavra"}, ACK_TOKEN: {"name": "acked", "ack": True}}
EVENT: dict[str, Any] = {"event_type": "cavra.evidence_bundle", "event_id": "evt_ack_1", "session_id": "s"}
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
CONNECTOR = SplunkConnector()


def settings(**kw: Any) -> SplunkSettings:
    return SplunkSettings.model_validate({"url": "https://splunk.example:8088", "token": TOKEN, **kw})


def resp(status: int, body: Any, **headers: str) -> Response:
    return Response(status=status, headers=headers, body=json.dumps(body).encode())


# -- unit -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://s.example:8088", "https://s.example:8088/services/collector/ack?channel=C"),
        ("https://s.example/services/collector", "https://s.example/services/collector/ack?channel=C"),
        ("https://s.example/services/collector/event", "https://s.example/services/collector/ack?channel=C"),
        (
            "https://s.example/p/services/collector/event/1.0",
            "https://s.example/p/services/collector/ack?channel=C",
        ),
        ("https://s.example/p", "https://s.example/p/services/collector/ack?channel=C"),
    ],
)
def test_ack_url(given: str, expected: str) -> None:
    assert ack_url(given, "C") == expected


def test_ack_settings_defaults_bounds_and_stretched_interval() -> None:
    s = settings()
    assert (s.ack, s.ack_timeout_seconds, s.ack_poll_seconds) == (False, 60.0, 1.0)
    # 60 s at 1 s would be 60 polls, over the cap: the interval is stretched to 60 / 30 = 2 s
    assert ack_interval(s) == 60.0 / MAX_ACK_POLLS == 2.0
    assert ack_interval(settings(ack_poll_seconds=5)) == 5.0
    assert ack_interval(settings(ack_poll_seconds=0.05, ack_timeout_seconds=0.3)) == 0.05
    for bad in ({"ack_poll_seconds": 0}, {"ack_timeout_seconds": -1}):
        with pytest.raises(ConfigError):
            target_from_mapping("splunk", {"url": "https://s.example", "token": TOKEN, **bad})


def test_accepted_with_ack_id_polls_and_off_is_unchanged() -> None:
    ctx = Context(delivery_key="dk_ack")
    answer = resp(200, {"text": "Success", "code": 0, "ackId": 3})
    on = settings(ack=True, ack_poll_seconds=0.5, ack_timeout_seconds=10)
    req = CONNECTOR.prepare(EVENT, on, ctx, None)
    verdict = CONNECTOR.interpret(req, answer, on, ctx, None)
    assert isinstance(verdict, Next) and verdict.after == 0.5
    assert isinstance(verdict.state, AckState) and verdict.state.ack_id == 3
    assert 9 < verdict.state.deadline - time.monotonic() <= 10
    poll = CONNECTOR.prepare(EVENT, on, ctx, verdict.state)
    assert (poll.method, poll.step, json.loads(poll.body)) == ("POST", "ack", {"acks": [3]})
    assert parse_qs(poll.url.split("?", 1)[1]) == {"channel": [channel_of(ctx)]}
    assert poll.headers["X-Splunk-Request-Channel"] == req.headers["X-Splunk-Request-Channel"]
    assert poll.headers["Authorization"] == req.headers["Authorization"]
    off = CONNECTOR.interpret(req, answer, settings(), ctx, None)
    assert isinstance(off, Delivered) and off.remote_id == "ackId:3" and off.proof is None
    # ack on, but the token has acknowledgement off: HEC gives no ackId, nothing to poll
    plain = CONNECTOR.interpret(req, resp(200, {"text": "Success", "code": 0}), on, ctx, None)
    assert isinstance(plain, Delivered) and "acknowledgement is off" in plain.detail["ack"]


def test_poll_answers() -> None:
    s = settings(ack=True, ack_poll_seconds=0.5, ack_timeout_seconds=10)
    state = AckState(ack_id=3, deadline=time.monotonic() + 10)
    ctx = Context(delivery_key="dk_ack")
    req = CONNECTOR.prepare(EVENT, s, ctx, state)

    def judge(r: Response, st: AckState = state) -> Any:
        return CONNECTOR.interpret(req, r, s, ctx, st)

    done = judge(resp(200, {"acks": {"3": True}}))
    assert isinstance(done, Delivered) and done.proof == "indexed: HEC acknowledged ackId 3"
    assert done.remote_id == "ackId:3" and done.detail["ack_polls"] == 1
    again = judge(resp(200, {"acks": {"3": False}}))
    assert isinstance(again, Next) and again.state.polls == 1 and again.after == 0.5
    busy = judge(resp(503, {"text": "Server is busy", "code": 9}, **{"retry-after": "2"}))
    assert isinstance(busy, Next) and busy.after == 2.0  # a Retry-After is a floor
    refused = judge(resp(400, {"text": "ACK is disabled", "code": 14}))
    assert isinstance(refused, Pending) and refused.reason.startswith(PENDING_ACK)
    assert "acknowledgement is off" in refused.reason and refused.remote_id == "ackId:3"
    proxy = judge(resp(200, {"text": "ok"}))
    assert isinstance(proxy, Pending) and "without an acks object" in proxy.reason
    last = judge(
        resp(200, {"acks": {"3": False}}), AckState(3, time.monotonic() + 10, polls=MAX_ACK_POLLS - 1)
    )
    assert isinstance(last, Pending) and f"{MAX_ACK_POLLS} polls" in last.reason
    late = judge(resp(200, {"acks": {"3": False}}), AckState(3, time.monotonic() + 0.1))
    assert isinstance(late, Pending) and late.reason.startswith(PENDING_ACK)


# -- against the HEC emulator -----------------------------------------------------------------------------
def server(**overrides: Any) -> EmulatorServer:
    return EmulatorServer(providers=["splunk"], overrides={"splunk": {"tokens": TOKENS, **overrides}})


def target(srv: EmulatorServer, **extra: Any) -> Target:
    raw = {
        "url": srv.base_url + "/splunk/services/collector",
        "token": ACK_TOKEN,
        "allow_http": True,
        "ack": True,
        "ack_poll_seconds": 0.05,
        "ack_timeout_seconds": 5,
        **extra,
    }
    return target_from_mapping("splunk", raw)


async def test_acknowledged_on_the_second_poll_is_delivered_with_proof() -> None:
    async with server(ack_after_polls=2) as srv, AiohttpTransport() as tr:
        started = time.monotonic()
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=tr)
        assert d.success, d.error
        assert [(a.step, a.status_code, a.verdict) for a in d.attempts] == [
            ("send", 200, "next"),
            ("ack", 200, "next"),
            ("ack", 200, "delivered"),
        ]
        assert time.monotonic() - started >= 0.1  # two waits of ack_poll_seconds
        assert d.proof == "indexed: HEC acknowledged ackId 0" and str(d.remote_id) == "ackId:0"
        assert d.detail["ack_polls"] == "2"
        send, *polls = srv.hub.received("splunk")
        channel = send.headers["X-Splunk-Request-Channel"]
        for poll in polls:
            assert poll.path == "/splunk/services/collector/ack" and poll.query == f"channel={channel}"
            assert json.loads(poll.body) == {"acks": [0]}
            assert poll.headers["Authorization"] == f"Splunk {ACK_TOKEN}"
            assert poll.headers["X-Splunk-Request-Channel"] == channel
        assert len(hec.state(srv.hub).events) == 1
        record = json.dumps(d.to_dict())
        assert ACK_TOKEN not in record and "Splunk **REDACTED**" in record


async def test_never_acknowledged_is_pending() -> None:
    async with server(ack_after_polls=0) as srv, AiohttpTransport() as tr:
        started = time.monotonic()
        d = await deliver_one(target(srv, ack_timeout_seconds=0.3), EVENT, policy=POLICY, transport=tr)
        elapsed = time.monotonic() - started
        assert d.status == "pending" and not d.success
        assert d.error is not None and str(d.error).startswith(PENDING_ACK)
        assert str(d.remote_id) == "ackId:0" and d.proof is None
        steps = [a.step for a in d.attempts]
        assert steps[0] == "send" and set(steps[1:]) == {"ack"} and 2 <= len(steps) <= 7
        assert 0.2 <= elapsed < 2.0
        assert len(hec.state(srv.hub).events) == 1  # the event was accepted, only its indexing is unproven


async def test_polls_are_capped_under_the_engine_step_limit() -> None:
    """A tiny interval with a long timeout would mean hundreds of polls: they are stretched to fit 30."""
    async with server(ack_after_polls=0) as srv, AiohttpTransport() as tr:
        t = target(srv, ack_poll_seconds=0.001, ack_timeout_seconds=0.6)
        d = await deliver_one(t, EVENT, policy=POLICY, transport=tr)
        assert d.status == "pending", d.error
        assert d.attempt_count <= 1 + MAX_ACK_POLLS
        assert all(
            a.waited_ms is None or a.waited_ms >= 0.6 / MAX_ACK_POLLS * 1000 - 1 for a in d.attempts[1:]
        )


async def test_busy_ack_service_is_polled_through() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        srv.hub.add_fault("splunk", Fault())  # the event passes
        srv.hub.add_fault(
            "splunk", Fault(status=503, body='{"text":"HEC is unhealthy, ack service unavailable","code":19}')
        )
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=tr)
        assert d.success, d.error
        assert [(a.step, a.status_code, a.verdict) for a in d.attempts] == [
            ("send", 200, "next"),
            ("ack", 503, "next"),
            ("ack", 200, "delivered"),
        ]


async def test_ack_off_is_unchanged_and_a_token_without_ack_is_delivered() -> None:
    async with server() as srv, AiohttpTransport() as tr:
        d = await deliver_one(target(srv, ack=False), EVENT, policy=POLICY, transport=tr)
        assert d.success and d.attempt_count == 1 and str(d.remote_id) == "ackId:0" and d.proof is None
        d = await deliver_one(target(srv, token=TOKEN), EVENT, policy=POLICY, transport=tr)
        assert d.success and d.attempt_count == 1 and "acknowledgement is off" in str(d.detail["ack"])
        assert not any(r.path.endswith("/ack") for r in srv.hub.received("splunk"))
        # and the channel is the one the delivery key gives
        (first, _) = srv.hub.received("splunk")
        assert uuid.UUID(first.headers["X-Splunk-Request-Channel"])


async def test_ack_polls_lost_on_the_network_end_pending_never_failed() -> None:
    """HEC accepted the event; the ack polls then get no answer until the retries run out. Failing the
    delivery would invite a resend that indexes the event twice: it is pending, with the ackId."""
    async with server() as srv, AiohttpTransport() as tr:
        srv.hub.add_fault("splunk", Fault())  # the event passes
        srv.hub.add_fault("splunk", Fault(drop=True, count=10))  # every poll's connection is dropped
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=tr)
    assert d.status == "pending" and not d.success
    assert str(d.remote_id) == "ackId:0"
    assert d.error is not None and str(d.error).startswith(f"{PENDING_ACK} (ackId 0); then gave up after")
    assert [a.verdict for a in d.attempts] == ["next", "retry", "retry", "retry"]
    assert len(hec.state(srv.hub).events) == 1


async def test_a_send_lost_on_the_network_still_fails() -> None:
    """Before HEC accepted anything, giving up is a failure (nothing was accepted)."""
    async with server() as srv, AiohttpTransport() as tr:
        srv.hub.add_fault("splunk", Fault(drop=True, count=10))
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=tr)
    assert d.status == "failed" and d.remote_id is None
