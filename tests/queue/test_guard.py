"""The guard's rules as pure functions: breaker transitions, probes, pauses and the token bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cavra.delivery.guard import GuardSettings, RateLimit, admit, parse_rate_limits, report
from cavra.delivery.record import Attempt, ProviderDelivery
from cavra.errors import ConfigError
from cavra.redaction import Redactor
from cavra.store.jobs import CLOSED, HALF_OPEN, OPEN, Destination

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
S = GuardSettings(failure_threshold=2, cooldown=60)


def result(status: str, code: int | None, verdict: str, retry_after: float | None = None) -> ProviderDelivery:
    red = Redactor()
    attempt = Attempt(
        number=1,
        step="send",
        started_at=T0,
        duration_ms=1.0,
        verdict=verdict,
        reason=None,
        request=red.request("POST", "https://example.test/x", {}),
        status_code=code,
        retry_after=retry_after,
    )
    return ProviderDelivery("webhook", "siem", "dk_x", T0, T0, status, [attempt])


FAIL = result("failed", 503, "retry")
OK = result("delivered", 200, "delivered")


def test_consecutive_failures_open_then_a_probe_closes() -> None:
    d = Destination("webhook")
    assert report(d, T0, "j1", FAIL, S) is None and d.consecutive_failures == 1
    assert report(d, T0, "j2", FAIL, S) == OPEN and d.probe_at == T0 + timedelta(seconds=60)
    held = admit(d, T0 + timedelta(seconds=10), "j3", S)
    assert held.defer == pytest.approx(50) and d.breaker_state == OPEN
    probe = admit(d, T0 + timedelta(seconds=61), "j3", S)
    assert probe.defer is None and d.breaker_state == HALF_OPEN and d.probe_owner == "j3"
    other = admit(d, T0 + timedelta(seconds=62), "j4", S)
    assert other.defer == pytest.approx(5)  # looks again soon, not after a whole cool-down
    assert report(d, T0 + timedelta(seconds=63), "j3", OK, S) == CLOSED
    assert d.consecutive_failures == 0 and d.probe_owner is None and admit(d, T0, "j4", S).defer is None


def test_a_failed_probe_opens_again_and_a_4xx_answer_closes() -> None:
    d = Destination("webhook", breaker_state=OPEN, probe_at=T0, opened_at=T0 - timedelta(minutes=5))
    admit(d, T0, "p1", S)
    assert report(d, T0, "p1", FAIL, S) == OPEN and d.opened_at == T0 - timedelta(minutes=5)
    admit(d, T0 + timedelta(seconds=60), "p2", S)
    assert report(d, T0 + timedelta(seconds=61), "p2", result("failed", 400, "reject"), S) == CLOSED


def test_429_pauses_the_provider_but_is_not_an_outage() -> None:
    d = Destination("webhook")
    for n in range(5):
        report(d, T0, f"j{n}", result("failed", 429, "retry", retry_after=30), S)
    assert d.breaker_state == CLOSED and d.consecutive_failures == 0
    assert d.paused_until == T0 + timedelta(seconds=30)
    assert admit(d, T0 + timedelta(seconds=10), "j9", S).defer == pytest.approx(20)
    assert admit(d, T0 + timedelta(seconds=31), "j9", S).defer is None and d.paused_until is None


def test_token_bucket_reserves_slots_and_defers_far_ones() -> None:
    s = GuardSettings(rate_limits={"webhook": RateLimit(rate=2, burst=2)})
    d = Destination("webhook")
    waits = [admit(d, T0, f"j{n}", s).wait for n in range(4)]
    assert waits == pytest.approx([0, 0, 0.5, 1.0])
    d2 = Destination("webhook")
    slow = GuardSettings(rate_limits={"webhook": RateLimit(rate=0.1, burst=1)})
    assert admit(d2, T0, "a", slow).wait == 0
    far = admit(d2, T0, "b", slow)
    assert far.defer == pytest.approx(10) and d2.tokens == pytest.approx(0)  # not reserved when deferred
    assert admit(d2, T0 + timedelta(seconds=10), "b", slow).wait == pytest.approx(0)


def test_rate_limit_spec() -> None:
    assert parse_rate_limits("splunk=50, datadog=10/20") == {
        "splunk": RateLimit(50, 50),
        "datadog": RateLimit(10, 20),
    }
    with pytest.raises(ConfigError, match="PROVIDER=RATE"):
        parse_rate_limits("splunk")
    with pytest.raises(ConfigError):
        parse_rate_limits("splunk=0")


def test_limits_come_from_the_operator_then_the_connector_then_the_default() -> None:
    from cavra.config import config_from_data
    from cavra.delivery.guard import effective_limits
    from cavra.ratelimit import DEFAULT_RATE_LIMITS

    data = {
        "connectors": {
            "webhook": {"url": "https://hooks.example/in", "rate_limit": "10/2"},
            "slack": {"url": "https://hooks.slack.com/services/T0/B0/xyz123", "rate_limit": "0.5"},
        }
    }
    config = config_from_data(data, "test.json", {})
    assert effective_limits({}, None) == DEFAULT_RATE_LIMITS
    assert DEFAULT_RATE_LIMITS["slack"] == RateLimit(1, 4) and DEFAULT_RATE_LIMITS["intune"] == RateLimit(
        4, 20
    )
    limits = effective_limits({}, config)
    assert limits["webhook"] == RateLimit(10, 2) and limits["slack"] == RateLimit(0.5, 1)
    assert limits["intune"] == RateLimit(4, 20)
    assert effective_limits({"slack": RateLimit(3, 3)}, config)["slack"] == RateLimit(3, 3)


def test_a_bad_connector_rate_limit_names_the_key() -> None:
    from cavra.config import config_from_data

    loaded = config_from_data(
        {"connectors": {"webhook": {"url": "https://hooks.example/in", "rate_limit": "fast"}}}, "c.json", {}
    )
    assert "webhook" not in loaded.targets and "rate_limit" in loaded.errors["webhook"]
