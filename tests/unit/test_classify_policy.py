"""The default status → verdict table, Retry-After parsing, and the retry policy."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import replace

import pytest

from cavra.connectors.base import Delivered, Reject, Response, Retry
from cavra.connectors.classify import classify, parse_retry_after, retry_after
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


# -- the edges, pinned (docs/mutation.md: each of these killed a surviving mutant) -----------------------
BOUNDARIES = [
    (100, Reject),
    (199, Reject),
    (200, Delivered),
    (299, Delivered),
    (300, Reject),
    (399, Reject),
    (400, Reject),
    (407, Reject),
    (408, Retry),
    (428, Reject),
    (429, Retry),
    (430, Reject),
    (499, Reject),
    (500, Retry),
    (501, Reject),
    (502, Retry),
    (599, Retry),
    (600, Reject),
]


@pytest.mark.parametrize(("status", "verdict"), BOUNDARIES)
def test_status_class_boundaries(status: int, verdict: type) -> None:
    v = classify(Response(status=status, headers={"retry-after": "2"}, body=b""))
    assert type(v) is verdict


@pytest.mark.parametrize("status", [300, 301, 304, 307, 308, 399])
def test_every_3xx_is_a_redirect_not_followed(status: int) -> None:
    v = classify(Response(status=status, headers={}, body=b""))
    assert isinstance(v, Reject)
    assert v.reason == f"HTTP {status}: redirect not followed (credentials never travel to another host)"


@pytest.mark.parametrize("status", [199, 400, 499, 501, 600])
def test_other_rejections_say_only_the_status(status: int) -> None:
    v = classify(Response(status=status, headers={}, body=b""))
    assert isinstance(v, Reject) and v.reason == f"HTTP {status}"


def test_the_label_can_be_named_by_the_connector() -> None:
    assert classify(Response(400, {}, b""), what="Jira create") == Reject("Jira create")
    assert classify(Response(503, {}, b""), what="token") == Retry("token", after=None)
    assert classify(Response(302, {}, b""), what="x") == Reject(
        "x: redirect not followed (credentials never travel to another host)"
    )


def test_retry_without_retry_after_has_no_floor() -> None:
    assert classify(Response(503, {}, b"")) == Retry("HTTP 503", after=None)
    assert classify(Response(408, {"retry-after": "1.5"}, b"")) == Retry("HTTP 408", after=1.5)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("5", 5.0),
        (" 7 ", 7.0),
        ("\t2\n", 2.0),
        ("2.5", 2.5),
        (
            "86400000",
            86400000.0,
        ),  # huge: kept as given; the policy's cap decides (RetryPolicy.max_retry_after)
        (None, None),
        ("", None),
        ("   ", None),
        ("-1", None),
        ("-0.5", None),
        ("nan", None),
        ("soon", None),
        ("Mon, 99 Foo 2026 99:99:99 GMT", None),
        ("12 apples", None),
    ],
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=1_000_000.0) == seconds


def test_retry_after_http_date_is_relative_to_the_given_now() -> None:
    now = 1_700_000_000.0  # a whole second, so formatdate loses nothing
    future = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(future, now=now) == 30.0
    assert parse_retry_after(" " + future + " ", now=now) == 30.0
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now, usegmt=True), now=now) == 0.0


def test_retry_after_http_date_is_relative_to_when_the_answer_arrived() -> None:
    # connectors never read the clock: an HTTP date is read against the answer's received_at, and without
    # a time to read it against it is not understood (None)
    when = 1_000_000_000.0
    date = email.utils.formatdate(when, usegmt=True)
    assert parse_retry_after(date) is None
    assert parse_retry_after(date, now=when - 10) == 10.0
    answer = Response(503, {"retry-after": date}, b"", received_at=when - 10)
    assert retry_after(answer) == 10.0
    assert classify(answer) == Retry("HTTP 503", after=10.0)
    assert retry_after(replace(answer, received_at=when + 5)) == 0.0
    far = email.utils.formatdate(time.time() + 3600, usegmt=True)
    assert 3500 < (retry_after(Response(429, {"retry-after": far}, b"")) or 0) <= 3600


class _Top:
    """A random source that always answers the top of the range, and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return b


@pytest.mark.parametrize(
    ("n", "ceiling"), [(0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]
)
def test_next_delay_ceiling_doubles_and_is_capped(n: int, ceiling: float) -> None:
    p = RetryPolicy(base_delay=1.0, max_delay=10.0)
    rng = _Top()
    assert p.next_delay(n, rng=rng) == ceiling  # type: ignore[arg-type]
    assert rng.asked == [(0, ceiling)]


def test_retry_after_is_a_floor_not_a_ceiling() -> None:
    p = RetryPolicy(base_delay=4.0, max_delay=10.0, max_retry_after=6.0)
    assert p.next_delay(1, retry_after=1.0, rng=_Top()) == 4.0  # backoff above the floor wins
    assert p.next_delay(1, retry_after=5.0, rng=_Top()) == 5.0
    assert p.next_delay(1, retry_after=6.0, rng=_Top()) == 6.0
    assert p.next_delay(1, retry_after=60.0, rng=_Top()) == 6.0  # the floor itself is capped
    assert p.next_delay(1, retry_after=0.0, rng=_Top()) == 4.0


def test_next_delay_uses_the_module_random_by_default() -> None:
    p = RetryPolicy(base_delay=1.0, max_delay=10.0)
    random.seed(1234)
    got = p.next_delay(3)
    random.seed(1234)
    assert got == random.uniform(0, 4.0)


def test_policy_defaults() -> None:
    p = RetryPolicy()
    assert (p.retries, p.base_delay, p.max_delay, p.max_retry_after, p.deadline) == (
        1,
        0.5,
        30.0,
        120.0,
        300.0,
    )
    assert p.attempts == 2
    assert RetryPolicy(retries=0).attempts == 1
    assert RetryPolicy(retries=4).attempts == 5
