"""The connector contract, run for every registered provider without sockets.

Each provider's happy delivery is recorded once against its emulator (loopback, session fixture); then
every case replays that flow through :class:`cavra.transport.MockTransport` with one fault at the
provider's delivery step (the first write after any token request), so the engine and the connector's
pure ``interpret`` decide, with no timers (sleeps are recorded, not slept):

* the full status table: a representative of every 1xx-5xx class. Default: 2xx is the happy answer, 408,
  429 and 5xx except 501 are retried, every other status is rejected (never retried). A provider that
  deliberately differs is listed in ``OVERRIDES`` with its reason;
* a timeout and a refused connection are retried;
* ``Retry-After`` (seconds) is honoured: the engine waits at least that long before the retry.

What one provider does beyond this (Slack's 200 with an error body, HEC's ``code``, Jira's 400 field
errors, ...) stays in that provider's own test file.
"""

from __future__ import annotations

import asyncio

import pytest

from cavra.connectors.base import PreparedRequest, Response
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import ProviderDelivery
from cavra.transport import MockTransport, TransportError
from tests.connectors.kit import Flow, Replay, Sleeps, event_for, kit_providers, record_flows, with_status

ALL = kit_providers()
POLICY = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.02)

#: a representative of every status class, and the class edges the default classification draws
INFORMATIONAL = [100, 103, 199]
SUCCESS = [200, 201, 202, 203, 204, 299]
REDIRECT = [300, 301, 302, 303, 304, 307, 308, 399]
CLIENT_ERROR = [
    400,
    401,
    402,
    403,
    404,
    405,
    406,
    407,
    408,
    409,
    410,
    411,
    413,
    415,
    422,
    423,
    428,
    429,
    431,
    499,
]
SERVER_ERROR = [500, 501, 502, 503, 504, 505, 507, 511, 599]
STATUSES = INFORMATIONAL + SUCCESS + REDIRECT + CLIENT_ERROR + SERVER_ERROR
RETRIED = frozenset({408, 429}) | (frozenset(SERVER_ERROR) - {501})

#: (provider, status) -> (expected verdict at the delivery step, why this provider differs from the default)
OVERRIDES: dict[tuple[str, int], tuple[str, str]] = {
    **{
        ("sentinel", status): (
            "reject",
            "the Logs Ingestion API answers 204 No Content to an accepted upload; any other 2xx means "
            "the url is not a DCE/DCR endpoint (learn.microsoft.com, Logs Ingestion API overview)",
        )
        for status in (200, 201, 202, 203, 299)
    },
    **{
        ("jira", status): (
            "reject",
            "Create issue answers 201 with the issue key (developer.atlassian.com, REST v3 POST "
            "/issue); another 2xx carries no key, so nothing proves the issue exists",
        )
        for status in (202, 203, 204, 299)
    },
    **{
        ("servicenow", status): (
            "reject",
            "the Table API's POST answers 201 Created with the record (the Change API 200); another "
            "2xx carries no sys_id to prove the record (docs.servicenow.com, Table API POST)",
        )
        for status in (202, 203, 204, 299)
    },
    ("jamf", 409): (
        "next",
        "Classic API 409 Duplicate name on create: the profile appeared since the look-up, so the connector "
        "looks it up again and updates it instead (tests/connectors/test_jamf.py)",
    ),
}


async def expected(flow: Flow, status: int) -> str:
    override = OVERRIDES.get((flow.provider, status))
    if override is not None:
        return override[0]
    if 200 <= status < 300:
        return await happy_verdict(flow)
    return "retry" if status in RETRIED else "reject"


_HAPPY: dict[str, str] = {}


async def happy_verdict(flow: Flow) -> str:
    """What the delivery step's recorded answer is judged (``delivered``, or ``next`` in a longer flow)."""
    if flow.provider not in _HAPPY:
        d = await _deliver(flow, Replay(flow))
        _HAPPY[flow.provider] = next(a.verdict for a in d.attempts if a.step == flow.delivery_step)
    return _HAPPY[flow.provider]


@pytest.fixture(scope="session")
def flows() -> dict[str, Flow]:
    return asyncio.run(record_flows(ALL))


async def _deliver(
    flow: Flow, replay: Replay, sleeps: Sleeps | None = None, policy: RetryPolicy = POLICY
) -> ProviderDelivery:
    async with MockTransport(replay) as transport:
        return await deliver_one(
            flow.target,
            event_for(flow.provider),
            policy=policy,
            transport=transport,
            sleep=sleeps or Sleeps(),
        )


def test_every_registered_provider_has_a_recorded_flow(flows: dict[str, Flow]) -> None:
    assert sorted(flows) == ALL
    for flow in flows.values():
        assert flow.delivery_step not in ("token",)


def test_overrides_name_registered_providers_and_give_reasons() -> None:
    for (provider, status), (verdict, reason) in OVERRIDES.items():
        assert provider in ALL and status in STATUSES
        assert verdict in ("delivered", "next", "retry", "reject", "pending")
        assert len(reason) > 20, (provider, status)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("provider", ALL)
async def test_status_table(flows: dict[str, Flow], provider: str, status: int) -> None:
    flow = flows[provider]
    step = flow.delivery_step
    want = await expected(flow, status)
    answer = flow.answer(step)
    if 200 <= status < 300:
        fault = with_status(answer, status)  # the provider's own body, another success status
    else:
        fault = Response(status=status, headers={"content-type": "application/json"}, body=b"{}")
    replay = Replay(flow, step, fault)
    d = await _deliver(flow, replay)
    first = next(a for a in d.attempts if a.step == step)
    assert first.status_code == status
    assert first.verdict == want, (provider, status, first.reason)
    sent = replay.asked.count(step)
    if (provider, status) in OVERRIDES:  # what follows is the provider's own test's business
        if want == "reject":
            assert sent == 1 and not d.success
    elif want == "retry":
        assert sent == 2 and d.success, (provider, status, d.error)
    elif want == "reject":
        assert sent == 1 and not d.success, (provider, status, replay.asked)
    else:
        assert d.success, (provider, status, d.error)


@pytest.mark.parametrize("kind", ["timeout", "connect"])
@pytest.mark.parametrize("provider", ALL)
async def test_no_answer_is_retried(flows: dict[str, Flow], provider: str, kind: str) -> None:
    flow = flows[provider]
    message = "no answer within 10 s" if kind == "timeout" else "cannot connect: Connection refused"
    replay = Replay(flow, flow.delivery_step, TransportError(kind, message))
    d = await _deliver(flow, replay)
    first = next(a for a in d.attempts if a.step == flow.delivery_step)
    assert first.verdict == "retry" and first.status_code is None
    assert first.reason == message
    assert replay.asked.count(flow.delivery_step) == 2
    assert d.success, d.error


@pytest.mark.parametrize("kind", ["timeout", "connect"])
@pytest.mark.parametrize("provider", ALL)
async def test_no_answer_at_all_fails_with_the_reason(
    flows: dict[str, Flow], provider: str, kind: str
) -> None:
    flow = flows[provider]
    message = "no answer within 10 s" if kind == "timeout" else "cannot connect: Connection refused"
    replay = Replay(flow, flow.delivery_step, TransportError(kind, message))

    def never(request: PreparedRequest) -> Response:
        if request.step == flow.delivery_step:
            raise TransportError(kind, message)
        return replay(request)

    async with MockTransport(never) as transport:
        d = await deliver_one(
            flow.target, event_for(provider), policy=POLICY, transport=transport, sleep=Sleeps()
        )
    assert not d.success
    assert d.error is not None and message in d.error
    assert [a.verdict for a in d.attempts if a.step == flow.delivery_step] == ["retry", "retry"]


@pytest.mark.parametrize(("status", "header", "seconds"), [(429, "7", 7.0), (503, "3", 3.0), (429, "0", 0.0)])
@pytest.mark.parametrize("provider", ALL)
async def test_retry_after_is_honoured(
    flows: dict[str, Flow], provider: str, status: int, header: str, seconds: float
) -> None:
    flow = flows[provider]
    fault = Response(status, {"retry-after": header}, b"{}")
    sleeps = Sleeps()
    d = await _deliver(flow, Replay(flow, flow.delivery_step, fault), sleeps)
    first = next(a for a in d.attempts if a.step == flow.delivery_step)
    assert first.verdict == "retry" and first.retry_after == seconds
    assert sleeps.asked and max(sleeps.asked) >= seconds
    assert d.success, d.error


@pytest.mark.parametrize("provider", ALL)
async def test_retry_after_beyond_the_cap_fails_without_waiting(
    flows: dict[str, Flow], provider: str
) -> None:
    flow = flows[provider]
    fault = Response(429, {"retry-after": "3600"}, b"{}")
    sleeps = Sleeps()
    policy = RetryPolicy(retries=3, base_delay=0.01, max_delay=0.02, max_retry_after=60)
    d = await _deliver(flow, Replay(flow, flow.delivery_step, fault), sleeps, policy)
    assert not d.success and d.error is not None and "beyond the cap" in d.error
    assert all(s < 3600 for s in sleeps.asked)
