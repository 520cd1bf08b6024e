"""The delivery engine with a small test connector.

The engine's own rules (retries, Retry-After, verdicts, redaction of the record, token steps, concurrency)
run through :class:`cavra.transport.MockTransport`: no sockets, and sleeps are recorded instead of slept.
What the real transport itself does (an end-to-end delivery, timeouts, refused connections, redirects not
followed, bounded bodies, a header the HTTP library refuses) runs against a loopback server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

import jsonschema
import pytest
from aiohttp import web

from cavra.config import Target
from cavra.connectors.base import (
    BaseConnector,
    CachedToken,
    ConnectorSettings,
    Context,
    Delivered,
    Next,
    PayloadTooLarge,
    PreparedRequest,
    Response,
    TokenCache,
    Verdict,
)
from cavra.connectors.classify import classify
from cavra.delivery.engine import deliver_many, deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.redaction import Redactor
from cavra.secrets import Secret
from cavra.transport import AiohttpTransport, MockTransport, SendOptions

SECRET = "tok-Zq8xv3-very-distinctive"
SCHEMA = json.loads(resources.files("cavra").joinpath("schemas/connector-delivery.v1.json").read_text())


@dataclass
class Script:
    """Answers the test server gives, in order; the last one repeats."""

    answers: list[tuple[int, dict[str, str], bytes, float]] = field(default_factory=list)
    hits: list[web.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def next(self) -> tuple[int, dict[str, str], bytes, float]:
        if len(self.answers) > 1:
            return self.answers.pop(0)
        return self.answers[0] if self.answers else (200, {}, b"ok", 0.0)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Script]]:
    script = Script()

    async def handle(request: web.Request) -> web.StreamResponse:
        script.hits.append(request)
        script.bodies.append(await request.read())
        status, headers, body, delay = script.next()
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", script
    finally:
        await runner.cleanup()


class Scripted:
    """A MockTransport handler: answers in order (the last one repeats), keeping each request."""

    def __init__(self, *answers: tuple[int, dict[str, str], bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[PreparedRequest] = []

    def __call__(self, request: PreparedRequest) -> Response:
        self.requests.append(request)
        status, headers, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Response(status, {k.lower(): v for k, v in headers.items()}, body)


class Sleeps:
    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


MOCK_URL = "http://provider.test"


class EchoConnector(BaseConnector[ConnectorSettings]):
    provider: ClassVar[str] = "test"
    category: ClassVar[str] = "siem"

    def build(self, event: Mapping[str, Any], settings: ConnectorSettings, ctx: Context) -> PreparedRequest:
        if event.get("too_big"):
            raise PayloadTooLarge("body of 2 MB is over the 1 MB limit")
        assert settings.url is not None and settings.token is not None
        return PreparedRequest(
            method="POST",
            url=settings.url.reveal() + "/ingest?key=" + settings.token.reveal(),
            headers={
                "Authorization": Secret("Bearer " + settings.token.reveal()),
                "Content-Type": "application/json",
            },
            body=json.dumps(dict(event)).encode(),
        )


class TokenConnector(BaseConnector[ConnectorSettings]):
    """Fetches a token first (step 'token'), then sends with it."""

    provider: ClassVar[str] = "test"
    category: ClassVar[str] = "siem"

    def prepare(
        self, event: Mapping[str, Any], settings: ConnectorSettings, ctx: Context, state: Any
    ) -> PreparedRequest:
        assert settings.url is not None
        cached = ctx.tokens.get("k")
        if cached is None:
            return PreparedRequest("POST", settings.url.reveal() + "/token", step="token")
        return PreparedRequest(
            "POST",
            settings.url.reveal() + "/send",
            headers={"Authorization": Secret("Bearer " + cached.value.reveal())},
        )

    def interpret(
        self,
        request: PreparedRequest,
        response: Response,
        settings: ConnectorSettings,
        ctx: Context,
        state: Any,
    ) -> Verdict:
        if request.step == "token":
            value = response.json()["access_token"]
            return Next("send", token=CachedToken("k", Secret(value), time.monotonic() + 600))
        return classify(response)


def make_target(url: str, connector: BaseConnector[ConnectorSettings] | None = None, **opts: Any) -> Target:
    settings = ConnectorSettings(url=Secret(url), token=Secret(SECRET), allow_http=True, **opts)
    return Target(
        provider="test",
        connector=connector or EchoConnector(),
        settings=settings,
        redactor=Redactor(settings.secrets()),
        options=SendOptions(
            timeout=settings.timeout_seconds, allow_http=True, max_response_bytes=settings.max_response_bytes
        ),
    )


EVENT = {"event_type": "cavra.evidence_bundle", "event_id": "evt_1", "session_id": "s1"}
FAST = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.02)


async def test_delivered_first_time_and_record_matches_schema(server: tuple[str, Script]) -> None:
    url, script = server
    async with AiohttpTransport() as tr:
        record = await deliver_many([make_target(url)], EVENT, policy=FAST, transport=tr)
    jsonschema.validate(record, SCHEMA)
    assert record["success"] is True
    d = record["deliveries"][0]
    assert d["status_code"] == 200 and d["attempt_count"] == 1
    assert d["request"]["headers"]["Authorization"] == "Bearer **REDACTED**"
    assert "key=**REDACTED**" in d["request"]["url"]
    assert SECRET not in json.dumps(record)
    assert len(script.hits) == 1


async def test_5xx_retried_then_delivered() -> None:
    script = Scripted((503, {}, b"busy"), (502, {}, b""), (200, {}, b"ok"))
    sleeps = Sleeps()
    d = await deliver_one(
        make_target(MOCK_URL), EVENT, policy=FAST, transport=MockTransport(script), sleep=sleeps
    )
    assert d.success and d.attempt_count == 3 and len(script.requests) == 3
    assert len(sleeps.asked) == 2 and all(0 <= s <= 0.02 for s in sleeps.asked)
    assert [a.verdict for a in d.attempts] == ["retry", "retry", "delivered"]


async def test_waited_ms_is_the_wait_before_the_attempt(server: tuple[str, Script]) -> None:
    """``waited_ms`` is how long the engine waited before sending that attempt: 0 for the first, the
    Retry-After for the one after a 429 (docs/schemas/connector-delivery.md, the console's Waited column)."""
    url, script = server
    script.answers = [(429, {"Retry-After": "1"}, b"", 0.0), (503, {}, b"", 0.0), (200, {}, b"ok", 0.0)]
    async with AiohttpTransport() as tr:
        d = await deliver_one(make_target(url), EVENT, policy=FAST, transport=tr)
    assert d.success and d.attempt_count == 3
    first, second, third = d.attempts
    assert first.waited_ms == 0 and first.retry_after == 1.0
    assert second.waited_ms == 1000  # the Retry-After the 429 asked for, waited before this attempt
    assert 0 < third.waited_ms <= FAST.max_delay * 1000  # the backoff after the 503


async def test_retries_exhausted() -> None:
    d = await deliver_one(
        make_target(MOCK_URL),
        EVENT,
        policy=RetryPolicy(retries=1, base_delay=0.01),
        transport=MockTransport(Scripted((500, {}, b""))),
        sleep=Sleeps(),
    )
    assert not d.success and d.attempt_count == 2
    assert d.error is not None and "gave up after 2 attempts" in d.error


async def test_one_attempt_is_singular() -> None:
    transport = MockTransport(Scripted((500, {}, b"")))
    d = await deliver_one(make_target(MOCK_URL), EVENT, policy=RetryPolicy(retries=0), transport=transport)
    assert d.error is not None and d.error.startswith("gave up after 1 attempt: HTTP 500")


async def test_4xx_not_retried() -> None:
    script = Scripted((400, {}, b'{"error":"bad"}'))
    d = await deliver_one(make_target(MOCK_URL), EVENT, policy=FAST, transport=MockTransport(script))
    assert not d.success and d.attempt_count == 1 and d.status_code == 400
    assert len(script.requests) == 1


async def test_429_retry_after_is_honoured() -> None:
    script = Scripted((429, {"Retry-After": "1"}, b""), (200, {}, b"ok"))
    sleeps = Sleeps()
    d = await deliver_one(
        make_target(MOCK_URL), EVENT, policy=FAST, transport=MockTransport(script), sleep=sleeps
    )
    assert d.success and d.attempt_count == 2
    assert sleeps.asked and max(sleeps.asked) >= 1.0
    assert d.attempts[0].retry_after == 1.0


async def test_retry_after_beyond_the_cap_fails_without_waiting() -> None:
    script = Scripted((429, {"Retry-After": "3600"}, b""))
    policy = RetryPolicy(retries=3, base_delay=0.01, max_retry_after=5)
    sleeps = Sleeps()
    d = await deliver_one(
        make_target(MOCK_URL), EVENT, policy=policy, transport=MockTransport(script), sleep=sleeps
    )
    assert sleeps.asked == [] and len(script.requests) == 1
    assert not d.success and d.error is not None and "beyond the cap" in d.error


async def test_timeout_is_retried_then_fails(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(200, {}, b"late", 1.0)]
    async with AiohttpTransport() as tr:
        d = await deliver_one(
            make_target(url, timeout_seconds=0.2),
            EVENT,
            policy=RetryPolicy(retries=1, base_delay=0.01),
            transport=tr,
        )
    assert not d.success and d.attempt_count == 2
    assert d.error is not None and "no answer within 0.2 s" in d.error
    assert d.status_code is None


async def test_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with AiohttpTransport() as tr:
        d = await deliver_one(make_target(f"http://127.0.0.1:{port}"), EVENT, policy=FAST, transport=tr)
    assert not d.success and d.attempt_count == 3
    assert d.error is not None and "cannot connect" in d.error


async def test_redirect_is_not_followed(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(302, {"Location": url + "/elsewhere"}, b"", 0.0)]
    async with AiohttpTransport() as tr:
        d = await deliver_one(make_target(url), EVENT, policy=FAST, transport=tr)
    assert not d.success and d.attempt_count == 1
    assert [h.path for h in script.hits] == ["/ingest"]


async def test_plain_http_needs_allowance_and_link_local_is_refused() -> None:
    # MockTransport applies the real transport's destination rules (check_destination) before its handler
    script = Scripted((200, {}, b"ok"))
    tr = MockTransport(script)
    target = make_target("http://127.0.0.1:9")
    no_http = Target(
        target.provider, target.connector, target.settings, target.redactor, SendOptions(allow_http=False)
    )
    d = await deliver_one(no_http, EVENT, policy=FAST, transport=tr)
    assert not d.success and d.attempt_count == 1 and d.error is not None and "allow_http" in d.error
    meta = make_target("http://169.254.169.254")
    d2 = await deliver_one(meta, EVENT, policy=FAST, transport=tr)
    assert not d2.success and d2.attempt_count == 1 and d2.error is not None and "link-local" in d2.error
    assert script.requests == []


async def test_secret_echoed_by_the_provider_is_scrubbed() -> None:
    script = Scripted((401, {}, f"invalid token {SECRET} for Bearer {SECRET}".encode()))
    d = await deliver_one(make_target(MOCK_URL), EVENT, policy=FAST, transport=MockTransport(script))
    assert SECRET not in json.dumps(d.to_dict())
    assert d.attempts[0].response_excerpt is not None and "**REDACTED**" in d.attempts[0].response_excerpt


async def test_response_body_is_bounded(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(500, {}, b"x" * 100_000, 0.0), (200, {}, b"ok", 0.0)]
    async with AiohttpTransport() as tr:
        d = await deliver_one(make_target(url, max_response_bytes=1000), EVENT, policy=FAST, transport=tr)
    assert d.success
    assert d.attempts[0].response_excerpt is not None and len(d.attempts[0].response_excerpt) <= 513


async def test_payload_too_large_is_not_sent() -> None:
    script = Scripted((200, {}, b"ok"))
    tr = MockTransport(script)
    d = await deliver_one(make_target(MOCK_URL), {**EVENT, "too_big": True}, policy=FAST, transport=tr)
    assert not d.success and d.attempt_count == 0 and not script.requests
    assert d.error is not None and "1 MB limit" in d.error


async def test_token_step_is_cached_and_redacted() -> None:
    minted = "minted-access-token-abc123"
    script = Scripted((200, {}, json.dumps({"access_token": minted}).encode()), (200, {}, b"ok"))
    tokens = TokenCache()
    tr = MockTransport(script)
    first = await deliver_one(
        make_target(MOCK_URL, TokenConnector()), EVENT, policy=FAST, transport=tr, tokens=tokens
    )
    second = await deliver_one(
        make_target(MOCK_URL, TokenConnector()), EVENT, policy=FAST, transport=tr, tokens=tokens
    )
    assert [r.url for r in script.requests] == [MOCK_URL + "/token", MOCK_URL + "/send", MOCK_URL + "/send"]
    assert first.success and [a.step for a in first.attempts] == ["token", "send"]
    assert second.success and [a.step for a in second.attempts] == ["send"]
    assert minted not in json.dumps(first.to_dict())


async def test_several_providers_run_concurrently() -> None:
    # every answer waits until all four requests are in flight: run one after another, this never ends
    in_flight: list[PreparedRequest] = []
    all_in = asyncio.Event()

    async def handler(request: PreparedRequest) -> Response:
        in_flight.append(request)
        if len(in_flight) == 4:
            all_in.set()
        await all_in.wait()
        return Response(200, {}, b"ok")

    targets = [make_target(MOCK_URL) for _ in range(4)]
    record = await asyncio.wait_for(
        deliver_many(targets, EVENT, policy=FAST, transport=MockTransport(handler)), timeout=30
    )
    assert record["success"] and len(record["deliveries"]) == 4


async def test_record_success_false_when_one_fails() -> None:
    good = make_target(MOCK_URL)
    tr = MockTransport(Scripted((200, {}, b"ok")))
    record = await deliver_many([good], EVENT, policy=FAST, transport=tr, config_errors={"splunk": "unset"})
    assert record["success"] is False and record["errors"] == [
        {"provider": "splunk", "destination": "splunk", "error": "unset"}
    ]
    jsonschema.validate(record, SCHEMA)


def test_delivered_verdict_default() -> None:
    assert isinstance(classify(Response(200, {}, b"")), Delivered)


class BrokenConnector(EchoConnector):
    def build(self, event: Mapping[str, Any], settings: ConnectorSettings, ctx: Context) -> PreparedRequest:
        raise AttributeError("bug")


class BadHeaderConnector(EchoConnector):
    def build(self, event: Mapping[str, Any], settings: ConnectorSettings, ctx: Context) -> PreparedRequest:
        assert settings.url is not None
        return PreparedRequest("POST", settings.url.reveal(), headers={"X-Bad": "line\r\nInjected: yes"})


async def test_a_connector_bug_or_unsendable_request_still_gives_a_record(server: tuple[str, Script]) -> None:
    url, script = server
    async with AiohttpTransport() as tr:
        broken = await deliver_one(make_target(url, BrokenConnector()), EVENT, policy=FAST, transport=tr)
        bad = await deliver_one(make_target(url, BadHeaderConnector()), EVENT, policy=FAST, transport=tr)
    assert not broken.success and broken.error is not None and "AttributeError" in broken.error
    assert not bad.success and bad.attempt_count == 1
    assert not script.hits


class LeakyHeaderConnector(EchoConnector):
    """A header the HTTP library refuses, carrying the secret: the library's error quotes the value."""

    def build(self, event: Mapping[str, Any], settings: ConnectorSettings, ctx: Context) -> PreparedRequest:
        assert settings.url is not None and settings.token is not None
        return PreparedRequest(
            "POST", settings.url.reveal(), headers={"X-Bad": f"{settings.token.reveal()}\r\nInjected: yes"}
        )


async def test_unsendable_request_logs_no_secret(
    server: tuple[str, Script], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    url, _script = server
    async with AiohttpTransport() as tr:
        d = await deliver_one(make_target(url, LeakyHeaderConnector()), EVENT, policy=FAST, transport=tr)
    assert not d.success
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(d.to_dict())


async def test_a_secret_cut_by_the_response_size_bound_is_scrubbed(server: tuple[str, Script]) -> None:
    """``max_response_bytes`` cut the body inside an echoed secret: the excerpt knows the body was cut."""
    url, script = server
    head = b"denied: "
    script.answers = [(403, {}, head + SECRET.encode() + b" and more", 0.0)]
    limit = len(head) + len(SECRET) - 3
    async with AiohttpTransport() as tr:
        d = await deliver_one(make_target(url, max_response_bytes=limit), EVENT, policy=FAST, transport=tr)
    excerpt = d.attempts[0].response_excerpt
    assert excerpt is not None and excerpt.startswith("denied: ")
    assert SECRET[:8] not in json.dumps(d.to_dict()), excerpt


async def test_each_retry_is_reported_for_the_cli_spinner(
    server: tuple[str, Script], caplog: pytest.LogCaptureFixture
) -> None:
    url, script = server
    script.answers = [(503, {}, b"busy", 0.0), (200, {}, b"ok", 0.0)]
    with caplog.at_level(logging.INFO, logger="cavra.delivery.progress"):
        async with AiohttpTransport() as tr:
            d = await deliver_one(make_target(url), EVENT, policy=FAST, transport=tr)
    assert d.success
    lines = [r.getMessage() for r in caplog.records if r.name == "cavra.delivery.progress"]
    assert len(lines) == 1
    assert lines[0].startswith("test: attempt 1: HTTP 503") and "; next attempt in " in lines[0]


def test_delivery_status_shows_the_retry_beside_the_spinner(monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager

    from cavra.cli import common

    shown: list[str] = []

    class Status:
        def update(self, text: str) -> None:
            shown.append(text)

    @contextmanager
    def fake_status(text: str, spinner: str) -> Iterator[Status]:
        yield Status()

    monkeypatch.setattr(common.err_console, "status", fake_status)
    with common.delivery_status("delivering x …"):
        logging.getLogger("cavra.delivery.progress").info(
            "webhook: attempt 1: HTTP 503; next attempt in 1.0 s"
        )
    logging.getLogger("cavra.delivery.progress").info("after: not shown")
    assert shown == ["delivering x …  webhook: attempt 1: HTTP 503; next attempt in 1.0 s"]
