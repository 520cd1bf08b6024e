"""The delivery engine: the one place that sends, times, retries and records evidence.

``deliver_one`` runs one event to one target: connector ``prepare`` → redactor records the request →
transport sends → connector ``interpret`` → verdict → next step, retry after ``next_delay``, or finish.
``deliver_batch`` runs many events to one batching target (the SIEM intakes): every event is encoded once,
the items are cut into requests within the provider's limits, and each request runs the same flow; every
event still gets its own :class:`ProviderDelivery`. ``deliver_many`` runs several targets concurrently and
builds the ``cavra.connector.delivery.v1`` record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cavra.config import Target
from cavra.connectors.base import (
    BatchConnector,
    BatchVerdict,
    Context,
    Delivered,
    Next,
    PayloadTooLarge,
    Pending,
    PreparedRequest,
    Reject,
    Response,
    Retry,
    Split,
    TokenCache,
)
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import Attempt, ProviderDelivery, build_record, utcnow
from cavra.errors import CavraError
from cavra.events import event_id_of
from cavra.redaction import Redacted, Redactor
from cavra.secrets import Secret
from cavra.transport import Transport, TransportError

log = logging.getLogger("cavra.delivery")
#: one line per retry (attempt, answer, wait): the CLI shows it beside its spinner, a worker logs it
progress = logging.getLogger("cavra.delivery.progress")

Sleep = Callable[[float], Awaitable[None]]
Prepare = Callable[[list[Any], Context, Any], PreparedRequest]
Interpret = Callable[[PreparedRequest, Response, Context, Any], BatchVerdict]

#: a multi-step flow may take at most this many exchanges beyond its retries (guards a looping connector)
MAX_STEPS = 40


def _verdict_name(verdict: BatchVerdict | None) -> str:
    return {
        Delivered: "delivered",
        Retry: "retry",
        Reject: "reject",
        Next: "next",
        Pending: "pending",
        Split: "split",
    }.get(type(verdict), "error")


def _not_sent(exc: Exception, provider: str, redactor: Redactor) -> str:
    """Why an event could not even be turned into a request (a connector bug is named, never shown)."""
    if isinstance(exc, PayloadTooLarge | CavraError):
        return f"not sent: {exc}"
    if isinstance(exc, ValueError | KeyError | TypeError):
        return f"not sent: the event cannot be rendered for {provider} ({exc})"
    log.debug("connector %s failed to prepare: %s", provider, redactor.scrub(repr(exc)))
    return f"not sent: internal error in the {provider} connector ({type(exc).__name__})"


def _new_result(target: Target, delivery_key: str) -> ProviderDelivery:
    now = utcnow()
    return ProviderDelivery(
        provider=target.provider,
        destination=target.destination,
        category=target.connector.category,
        delivery_key=delivery_key,
        started_at=now,
        completed_at=now,
        status="failed",
    )


@dataclass
class _Item:
    """One event of a run: its result and what the connector prepares from (event or encoded bytes)."""

    result: ProviderDelivery
    payload: Any
    event_id: str


class _Flow:
    """One request's flow (token step, send, ack polls, retries) for the items it carries."""

    def __init__(
        self,
        target: Target,
        items: list[_Item],
        ctx: Context,
        prepare: Prepare,
        interpret: Interpret,
        *,
        policy: RetryPolicy,
        transport: Transport,
        sleep: Sleep,
        batch: bool,
    ) -> None:
        self.target = target
        self.live = items
        self.ctx = ctx
        self.prepare = prepare
        self.interpret = interpret
        self.policy = policy
        self.transport = transport
        self.sleep = sleep
        self.batch = batch
        self.redactor: Redactor = target.redactor
        self.position: dict[int, int] = {}
        #: set once the provider accepted the work (see :class:`Next`): giving up then means pending
        self.accepted: Next | None = None
        #: the loop of :meth:`run`: the connector's flow state, retries spent, the wait before the next
        #: attempt (an attempt's waited_ms is the wait *before* it, after the previous attempt's answer)
        self.state: Any = None
        self.retries_used = 0
        self.waited_ms = 0.0
        self.deadline = 0.0

    def finish(self, items: Sequence[_Item], status: str, error: str | None = None) -> None:
        text = None if error is None else self.redactor.text(error)
        now = utcnow()
        level = logging.INFO if status == "delivered" else logging.WARNING
        for item in items:
            item.result.status = status
            item.result.error = text
            item.result.completed_at = now
            log.log(
                level,
                "%s delivery %s: %s",
                self.target.destination,
                status,
                text or "ok",
                extra={
                    "provider": self.target.provider,
                    "destination": self.target.destination,
                    "event_id": item.event_id,
                    "attempts": item.result.attempt_count,
                },
            )
        gone = {id(i) for i in items}
        self.live = [i for i in self.live if id(i) not in gone]

    def give_up(self, items: Sequence[_Item], error: str) -> None:
        """The engine stops trying: failed, or pending when the provider already accepted the work."""
        if self.accepted is None or self.accepted.accepted is None:
            self.finish(items, "failed", error)
            return
        remote = self.accepted.remote_id
        for item in items:
            item.result.remote_id = None if remote is None else self.redactor.text(remote)
        self.finish(items, "pending", f"{self.accepted.accepted}; then {error}")

    def deliver(self, items: Sequence[_Item], verdict: Delivered | Split, size: int) -> None:
        red = self.redactor
        for item in items:
            res = item.result
            if isinstance(verdict, Delivered):
                res.remote_id = None if verdict.remote_id is None else red.text(str(verdict.remote_id))
                res.proof = None if verdict.proof is None else red.text(verdict.proof)
            else:
                res.proof = red.text(f"accepted in a batch partly refused: {verdict.reason}")
            detail = {k: red.text(str(v)) for k, v in verdict.detail.items()}
            if self.batch:
                detail["batch_size"] = red.text(str(size))
                detail["batch_position"] = red.text(str(self.position[id(item)]))
            res.detail = {**res.detail, **detail}
        self.finish(items, "delivered")

    async def run(self) -> None:
        self.deadline = time.monotonic() + self.policy.deadline
        self.state, self.retries_used, self.waited_ms = None, 0, 0.0
        for _ in range(MAX_STEPS + self.policy.retries):
            if not self.live:
                return
            sent = list(self.live)
            request = self._prepare_step(sent)
            if request is None:
                return
            verdict, attempt = await self._exchange(request, self.deadline, self.state)
            attempt.waited_ms, self.waited_ms = self.waited_ms, 0.0
            for item in sent:
                item.result.attempts.append(attempt)
            if not await self._step(sent, verdict, attempt):
                return
        self.give_up(self.live, f"{self.target.provider}: the flow did not finish within {MAX_STEPS} steps")

    def _prepare_step(self, sent: list[_Item]) -> PreparedRequest | None:
        """The connector's next request for ``sent`` (None: it failed, and the items are finished)."""
        self.position = {id(item): n for n, item in enumerate(sent)}
        self.ctx.attempt = len(sent[0].result.attempts) + 1
        self.ctx.attempt_at = time.time()  # the time of this request: connectors never read the clock
        try:
            request = self.prepare([i.payload for i in sent], self.ctx, self.state)
        except Exception as exc:  # a connector bug must not lose the delivery record
            self.finish(sent, "failed", _not_sent(exc, self.target.provider, self.redactor))
            return None
        header_secrets = [v for v in request.headers.values() if isinstance(v, Secret)]
        if request.new_secrets or header_secrets:
            self.redactor = self.redactor.with_secrets([*request.new_secrets, *header_secrets])
        for warning in request.warnings:  # e.g. a template fell back to the default rendering
            for item in sent:
                item.result.detail = {
                    **item.result.detail,
                    "template_warning": self.redactor.text(warning),
                }
        return request

    async def _step(self, sent: list[_Item], verdict: BatchVerdict, attempt: Attempt) -> bool:
        """Act on one exchange's verdict; True: the flow goes on."""
        if isinstance(verdict, Delivered):
            self.deliver(sent, verdict, len(sent))
            return False
        if isinstance(verdict, Split):
            if not verdict.delivered and not verdict.rejected:
                self.finish(sent, "failed", verdict.reason)
                return False
            accepted = [sent[n] for n in verdict.delivered if 0 <= n < len(sent)]
            self.deliver(accepted, verdict, len(sent))
            for n, why in verdict.rejected.items():
                if 0 <= n < len(sent):
                    self.finish([sent[n]], "failed", why)
            self.state = None  # the rest go again at once, in a smaller request
            return True
        if isinstance(verdict, Pending):
            for item in sent:
                item.result.remote_id = (
                    None if verdict.remote_id is None else self.redactor.text(verdict.remote_id)
                )
            self.finish(sent, "pending", verdict.reason)
            return False
        if isinstance(verdict, Reject):
            self.finish(sent, "failed", verdict.reason)
            return False
        if isinstance(verdict, Next):
            return await self._next(sent, verdict)
        return await self._retry(sent, verdict, attempt)

    async def _next(self, sent: list[_Item], verdict: Next) -> bool:
        """A multi-step flow's next step (token, upload then assign, ack polls)."""
        if verdict.accepted is not None:
            self.accepted = verdict
        if verdict.token is not None:
            self.ctx.tokens.put(verdict.token)
            self.redactor = self.redactor.with_secrets([verdict.token.value])
        self.state = verdict.state
        if verdict.after > 0:
            if time.monotonic() + verdict.after > self.deadline:
                self.finish(
                    sent,
                    "pending",
                    f"deadline of {self.policy.deadline:g} s reached before the flow finished",
                )
                return False
            await self.sleep(verdict.after)
            self.waited_ms = verdict.after * 1000
        return True

    async def _retry(self, sent: list[_Item], verdict: Retry, attempt: Attempt) -> bool:
        """Wait and go again, or give up (retries used, Retry-After beyond the cap, deadline)."""
        policy = self.policy
        if self.retries_used >= policy.retries:
            count = sent[0].result.attempt_count
            noun = "attempt" if count == 1 else "attempts"
            self.give_up(sent, f"gave up after {count} {noun}: {verdict.reason}")
            return False
        if verdict.after is not None and verdict.after > policy.max_retry_after:
            self.give_up(
                sent,
                f"{verdict.reason}; the provider asked to retry after {verdict.after:g} s, "
                f"beyond the cap of {policy.max_retry_after:g} s",
            )
            return False
        delay = policy.next_delay(self.retries_used + 1, verdict.after)
        if time.monotonic() + delay > self.deadline:
            self.give_up(sent, f"deadline of {policy.deadline:g} s reached: {verdict.reason}")
            return False
        self.retries_used += 1
        progress.info(
            "%s: attempt %d: %s; next attempt in %.1f s",
            self.target.destination,
            attempt.number,
            attempt.reason,
            delay,
        )
        await self.sleep(delay)
        self.waited_ms = delay * 1000
        return True

    async def _exchange(
        self, request: PreparedRequest, deadline: float, state: Any
    ) -> tuple[BatchVerdict, Attempt]:
        """Send one request and judge the answer; never raises."""
        provider, redactor = self.target.provider, self.redactor
        red_request = redactor.request(request.method, request.url, request.headers)
        remaining = deadline - time.monotonic()
        options = replace(self.target.options, timeout=max(0.05, min(self.target.options.timeout, remaining)))
        started, t0 = utcnow(), time.monotonic()
        response: Response | None = None
        verdict: BatchVerdict
        try:
            response = await self.transport.send(request, options)
        except TransportError as exc:
            verdict = Reject(exc.message) if exc.kind == "refused_destination" else Retry(exc.message)
        except Exception as exc:  # e.g. a header value the HTTP library refuses: record it, never lose it
            log.debug("request to %s could not be sent: %s", provider, redactor.scrub(repr(exc)))
            verdict = Reject(f"the request could not be sent ({type(exc).__name__})")
        else:
            try:
                verdict = self.interpret(request, response, self.ctx, state)
            except (ValueError, KeyError, TypeError) as exc:
                verdict = Reject(f"unexpected answer from {provider}: {type(exc).__name__}")
            except Exception as exc:  # a connector bug must not lose the delivery record
                log.debug("connector %s failed to interpret: %s", provider, redactor.scrub(repr(exc)))
                verdict = Reject(f"internal error in the {provider} connector ({type(exc).__name__})")
        attempt = Attempt(
            number=len(self.live[0].result.attempts) + 1,
            step=request.step,
            started_at=started,
            duration_ms=(time.monotonic() - t0) * 1000,
            verdict=_verdict_name(verdict),
            reason=_reason(redactor, verdict, response),
            request=red_request,
            status_code=None if response is None else response.status,
            response_excerpt=None
            if response is None
            else redactor.excerpt(response.body, truncated=response.header("x-cavra-truncated") == "true"),
            retry_after=verdict.after if isinstance(verdict, Retry) else None,
        )
        return verdict, attempt


def _reason(redactor: Redactor, verdict: BatchVerdict, response: Response | None) -> Redacted | None:
    if isinstance(verdict, (Retry, Reject, Pending, Split)):
        return redactor.text(verdict.reason)
    if isinstance(verdict, Delivered):
        return redactor.text(f"HTTP {response.status}" if response is not None else "delivered")
    return None


async def deliver_one(
    target: Target,
    event: Mapping[str, Any],
    *,
    policy: RetryPolicy,
    transport: Transport,
    tokens: TokenCache | None = None,
    sleep: Sleep = asyncio.sleep,
    resumed_since: float | None = None,
) -> ProviderDelivery:
    """Deliver one event to one target, with retries; never raises for a delivery problem.

    ``resumed_since``: this delivery's first run began then (an outbox job run again); see
    :attr:`cavra.connectors.base.Context.resumed_since`."""
    connector, settings = target.connector, target.settings
    event_id = event_id_of(event)
    ctx = Context(
        delivery_key=target.delivery_key(event_id),
        tokens=(tokens or TokenCache()).scoped(target.destination),
        resumed_since=resumed_since,
    )
    item = _Item(_new_result(target, ctx.delivery_key), event, event_id)

    def prepare(payloads: list[Any], c: Context, state: Any) -> PreparedRequest:
        return connector.prepare(payloads[0], settings, c, state)

    def interpret(request: PreparedRequest, response: Response, c: Context, state: Any) -> BatchVerdict:
        return connector.interpret(request, response, settings, c, state)

    flow = _Flow(
        target, [item], ctx, prepare, interpret, policy=policy, transport=transport, sleep=sleep, batch=False
    )
    await flow.run()
    return item.result


def batching(target: Target) -> int:
    """How many events ``target`` takes per request (1: it does not batch)."""
    connector = target.connector
    if not isinstance(connector, BatchConnector):
        return 1
    return max(1, connector.batch_limits(target.settings).max_items)


#: requests in flight at once when :func:`deliver_batch` is given a target that does not batch
UNBATCHED_CONCURRENCY = 16


async def deliver_batch(
    target: Target,
    events: Sequence[Mapping[str, Any]],
    *,
    policy: RetryPolicy,
    transport: Transport,
    tokens: TokenCache | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[ProviderDelivery]:
    """Deliver many events to one target in as few requests as its limits allow; one result per event,
    in order. A target that does not batch gets one request per event, at most
    :data:`UNBATCHED_CONCURRENCY` at a time."""
    connector, settings = target.connector, target.settings
    shared = tokens or TokenCache()
    if not isinstance(connector, BatchConnector) or batching(target) == 1:
        limit = asyncio.Semaphore(UNBATCHED_CONCURRENCY)

        async def one(event: Mapping[str, Any]) -> ProviderDelivery:
            async with limit:
                return await deliver_one(
                    target, event, policy=policy, transport=transport, tokens=shared, sleep=sleep
                )

        return list(await asyncio.gather(*(one(e) for e in events)))
    batcher: BatchConnector = connector
    items: list[_Item] = []
    ready: list[_Item] = []
    for event in events:
        event_id = event_id_of(event)
        ctx = Context(delivery_key=target.delivery_key(event_id), tokens=shared.scoped(target.destination))
        item = _Item(_new_result(target, ctx.delivery_key), b"", event_id)
        items.append(item)
        try:
            item.payload = batcher.encode(event, settings, ctx)
        except Exception as exc:  # this event alone is refused; the others go on
            item.result.error = target.redactor.text(_not_sent(exc, target.provider, target.redactor))
            item.result.completed_at = utcnow()
        else:
            ready.append(item)

    def prepare(payloads: list[Any], c: Context, state: Any) -> PreparedRequest:
        return batcher.prepare_batch(payloads, settings, c, state)

    def interpret(request: PreparedRequest, response: Response, c: Context, state: Any) -> BatchVerdict:
        return batcher.interpret_batch(request, response, settings, c, state)

    chunks = batcher.batch_limits(settings).plan([len(i.payload) for i in ready])
    flows = [
        _Flow(
            target,
            [ready[n] for n in chunk],
            Context(
                delivery_key=ready[chunk[0]].result.delivery_key, tokens=shared.scoped(target.destination)
            ),
            prepare,
            interpret,
            policy=policy,
            transport=transport,
            sleep=sleep,
            batch=True,
        )
        for chunk in chunks
    ]
    if flows:  # the first request fetches any token the others then share from the cache
        await flows[0].run()
        await asyncio.gather(*(f.run() for f in flows[1:]))
    return [i.result for i in items]


async def deliver_many(
    targets: Sequence[Target],
    event: Mapping[str, Any],
    *,
    policy: RetryPolicy,
    transport: Transport,
    tokens: TokenCache | None = None,
    config_errors: Mapping[str, str] | None = None,
    sleep: Sleep = asyncio.sleep,
    provider_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Deliver one event to several targets concurrently; return the delivery record."""
    shared = tokens or TokenCache()
    results = await asyncio.gather(
        *(
            deliver_one(t, event, policy=policy, transport=transport, tokens=shared, sleep=sleep)
            for t in targets
        )
    )
    return build_record(event, results, config_errors=config_errors, provider_of=provider_of)
