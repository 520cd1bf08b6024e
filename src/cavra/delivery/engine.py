"""The delivery engine: the one place that sends, times, retries and records evidence.

``deliver_one`` runs one event to one target: connector ``prepare`` → redactor records the request →
transport sends → connector ``interpret`` → verdict → next step, retry after ``next_delay``, or finish.
``deliver_many`` runs several targets concurrently and builds the ``cavra.connector.delivery.v1`` record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from cavra.config import Target
from cavra.connectors.base import (
    Context,
    Delivered,
    Next,
    PayloadTooLarge,
    Pending,
    Reject,
    Response,
    Retry,
    TokenCache,
    Verdict,
)
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import Attempt, ProviderDelivery, build_record, utcnow
from cavra.errors import CavraError
from cavra.events import event_id_of
from cavra.redaction import Redacted, Redactor
from cavra.secrets import Secret
from cavra.transport import Transport, TransportError

log = logging.getLogger("cavra.delivery")

Sleep = Callable[[float], Awaitable[None]]

#: a multi-step flow may take at most this many exchanges beyond its retries (guards a looping connector)
MAX_STEPS = 40


def _verdict_name(verdict: Verdict | None) -> str:
    return {Delivered: "delivered", Retry: "retry", Reject: "reject", Next: "next", Pending: "pending"}.get(
        type(verdict), "error"
    )


async def deliver_one(
    target: Target,
    event: Mapping[str, Any],
    *,
    policy: RetryPolicy,
    transport: Transport,
    tokens: TokenCache | None = None,
    sleep: Sleep = asyncio.sleep,
) -> ProviderDelivery:
    """Deliver one event to one target, with retries; never raises for a delivery problem."""
    connector, settings = target.connector, target.settings
    event_id = event_id_of(event)
    ctx = Context(delivery_key=target.delivery_key(event_id), tokens=tokens or TokenCache())
    redactor: Redactor = target.redactor
    result = ProviderDelivery(
        provider=target.provider,
        category=connector.category,
        delivery_key=ctx.delivery_key,
        started_at=utcnow(),
        completed_at=utcnow(),
        status="failed",
    )
    deadline = time.monotonic() + policy.deadline
    retries_used = 0
    state: Any = None

    def finish(status: str, error: str | None = None) -> ProviderDelivery:
        result.status = status
        result.error = None if error is None else redactor.text(error)
        result.completed_at = utcnow()
        level = logging.INFO if status == "delivered" else logging.WARNING
        log.log(
            level,
            "%s delivery %s: %s",
            target.provider,
            status,
            result.error or "ok",
            extra={"provider": target.provider, "event_id": event_id, "attempts": result.attempt_count},
        )
        return result

    for _ in range(MAX_STEPS + policy.retries):
        ctx.attempt = len(result.attempts) + 1
        try:
            request = connector.prepare(event, settings, ctx, state)
        except PayloadTooLarge as exc:
            return finish("failed", f"not sent: {exc}")
        except CavraError as exc:
            return finish("failed", f"not sent: {exc}")
        except (ValueError, KeyError, TypeError) as exc:
            return finish("failed", f"not sent: the event cannot be rendered for {target.provider} ({exc})")
        except Exception as exc:  # a connector bug must not lose the delivery record
            log.debug("connector %s failed to prepare: %s", target.provider, redactor.scrub(repr(exc)))
            return finish(
                "failed",
                f"not sent: internal error in the {target.provider} connector ({type(exc).__name__})",
            )
        header_secrets = [v for v in request.headers.values() if isinstance(v, Secret)]
        if request.new_secrets or header_secrets:
            redactor = redactor.with_secrets([*request.new_secrets, *header_secrets])
        red_request = redactor.request(request.method, request.url, request.headers)
        remaining = deadline - time.monotonic()
        options = replace(target.options, timeout=max(0.05, min(target.options.timeout, remaining)))
        started, t0 = utcnow(), time.monotonic()
        response: Response | None = None
        verdict: Verdict
        try:
            response = await transport.send(request, options)
        except TransportError as exc:
            verdict = Reject(exc.message) if exc.kind == "refused_destination" else Retry(exc.message)
        except Exception as exc:  # e.g. a header value the HTTP library refuses: record it, never lose it
            log.debug("request to %s could not be sent: %s", target.provider, redactor.scrub(repr(exc)))
            verdict = Reject(f"the request could not be sent ({type(exc).__name__})")
        else:
            try:
                verdict = connector.interpret(request, response, settings, ctx, state)
            except (ValueError, KeyError, TypeError) as exc:
                verdict = Reject(f"unexpected answer from {target.provider}: {type(exc).__name__}")
            except Exception as exc:  # a connector bug must not lose the delivery record
                log.debug("connector %s failed to interpret: %s", target.provider, redactor.scrub(repr(exc)))
                verdict = Reject(f"internal error in the {target.provider} connector ({type(exc).__name__})")
        attempt = Attempt(
            number=len(result.attempts) + 1,
            step=request.step,
            started_at=started,
            duration_ms=(time.monotonic() - t0) * 1000,
            verdict=_verdict_name(verdict),
            reason=_reason(redactor, verdict, response),
            request=red_request,
            status_code=None if response is None else response.status,
            response_excerpt=None if response is None else redactor.excerpt(response.body),
            retry_after=verdict.after if isinstance(verdict, Retry) else None,
        )
        result.attempts.append(attempt)

        if isinstance(verdict, Delivered):
            result.remote_id = None if verdict.remote_id is None else redactor.text(str(verdict.remote_id))
            result.proof = None if verdict.proof is None else redactor.text(verdict.proof)
            result.detail = {k: redactor.text(str(v)) for k, v in verdict.detail.items()}
            return finish("delivered")
        if isinstance(verdict, Pending):
            result.remote_id = None if verdict.remote_id is None else redactor.text(verdict.remote_id)
            return finish("pending", verdict.reason)
        if isinstance(verdict, Reject):
            return finish("failed", verdict.reason)
        if isinstance(verdict, Next):
            if verdict.token is not None:
                ctx.tokens.put(verdict.token)
                redactor = redactor.with_secrets([verdict.token.value])
            state = verdict.state
            if verdict.after > 0:
                if time.monotonic() + verdict.after > deadline:
                    return finish(
                        "pending", f"deadline of {policy.deadline:g} s reached before the flow finished"
                    )
                await sleep(verdict.after)
                attempt.waited_ms = verdict.after * 1000
            continue
        # Retry
        if retries_used >= policy.retries:
            return finish("failed", f"gave up after {result.attempt_count} attempts: {verdict.reason}")
        if verdict.after is not None and verdict.after > policy.max_retry_after:
            return finish(
                "failed",
                f"{verdict.reason}; the provider asked to retry after {verdict.after:g} s, "
                f"beyond the cap of {policy.max_retry_after:g} s",
            )
        delay = policy.next_delay(retries_used + 1, verdict.after)
        if time.monotonic() + delay > deadline:
            return finish("failed", f"deadline of {policy.deadline:g} s reached: {verdict.reason}")
        retries_used += 1
        await sleep(delay)
        attempt.waited_ms = delay * 1000
    return finish("failed", f"{target.provider}: the flow did not finish within {MAX_STEPS} steps")


def _reason(redactor: Redactor, verdict: Verdict, response: Response | None) -> Redacted | None:
    if isinstance(verdict, (Retry, Reject, Pending)):
        return redactor.text(verdict.reason)
    if isinstance(verdict, Delivered):
        return redactor.text(f"HTTP {response.status}" if response is not None else "delivered")
    return None


async def deliver_many(
    targets: Sequence[Target],
    event: Mapping[str, Any],
    *,
    policy: RetryPolicy,
    transport: Transport,
    tokens: TokenCache | None = None,
    config_errors: Mapping[str, str] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> dict[str, Any]:
    """Deliver one event to several targets concurrently; return the delivery record."""
    shared = tokens or TokenCache()
    results = await asyncio.gather(
        *(
            deliver_one(t, event, policy=policy, transport=transport, tokens=shared, sleep=sleep)
            for t in targets
        )
    )
    return build_record(event, results, config_errors=config_errors)
