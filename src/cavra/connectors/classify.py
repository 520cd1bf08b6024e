"""The default classification of a provider's answer, in one place.

2xx delivered; 408, 429 and 5xx except 501 retried (honouring ``Retry-After``); every other status
rejected. Connectors override this deliberately (Slack's 200 with an error body, HEC's ``code`` field, …)
and say why in a test.
"""

from __future__ import annotations

import email.utils

from cavra.connectors.base import Delivered, Reject, Response, Retry, Verdict

RETRYABLE_STATUSES = frozenset({408, 429}) | (frozenset(range(500, 600)) - {501})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date. ``None`` when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if now is None:  # a date needs the time the answer arrived (Response.received_at)
            return None
        return max(0.0, when.timestamp() - now)
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


def retry_after(response: Response) -> float | None:
    """The answer's ``Retry-After`` as seconds from when it arrived."""
    return parse_retry_after(response.header("retry-after"), now=response.received_at)


def status_reason(response: Response) -> str:
    return f"HTTP {response.status}"


def classify(response: Response, *, what: str | None = None) -> Verdict:
    """The default verdict for a response."""
    status = response.status
    label = what or status_reason(response)
    if 200 <= status < 300:
        return Delivered()
    if 300 <= status < 400:
        return Reject(f"{label}: redirect not followed (credentials never travel to another host)")
    if status in RETRYABLE_STATUSES:
        return Retry(label, after=retry_after(response))
    return Reject(label)
