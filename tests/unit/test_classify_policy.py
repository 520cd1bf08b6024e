"""The default status → verdict table, Retry-After parsing, and the retry policy."""

from __future__ import annotations

import email.utils
import random
import time

import pytest

from cavra.connectors.base import Delivered, Reject, Response, Retry
from cavra.connectors.classify import classify, parse_retry_after
from cavra.delivery.policy import RetryPolicy

STATUS_TABLE = [
    (200, Delivered),
    (201, Delivered),
    (202, Delivered),
    (204, Delivered),
    (301, Reject),
    (302, Reject),
    (400, Reject),
    (401, Reject),
    (403, Reject),
    (404, Reject),
    (408, Retry),
    (409, Reject),
    (413, Reject),
    (429, Retry),
    (500, Retry),
    (501, Reject),
    (502, Retry),
    (503, Retry),
    (504, Retry),
]


@pytest.mark.parametrize(("status", "verdict"), STATUS_TABLE)
def test_default_classification(status: int, verdict: type) -> None:
    assert isinstance(classify(Response(status=status, headers={}, body=b"")), verdict)


def test_redirect_reason_says_not_followed() -> None:
    v = classify(Response(status=302, headers={"location": "https://elsewhere"}, body=b""))
    assert isinstance(v, Reject) and "redirect" in v.reason


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-4") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after(date, now=now) or 0) <= 31
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


def test_429_carries_retry_after() -> None:
    v = classify(Response(status=429, headers={"retry-after": "7"}, body=b""))
    assert isinstance(v, Retry) and v.after == 7.0


def test_full_jitter_is_bounded_and_capped() -> None:
    p = RetryPolicy(retries=5, base_delay=1.0, max_delay=4.0)
    rng = random.Random(1)
    for n in range(1, 8):
        for _ in range(50):
            d = p.next_delay(n, rng=rng)
            assert 0 <= d <= min(4.0, 2 ** (n - 1))


def test_retry_after_is_a_floor_up_to_the_cap() -> None:
    p = RetryPolicy(base_delay=0.01, max_delay=0.02, max_retry_after=5.0)
    assert p.next_delay(1, retry_after=2.0) >= 2.0
    assert p.next_delay(1, retry_after=50.0) == 5.0
    assert p.attempts == 2
