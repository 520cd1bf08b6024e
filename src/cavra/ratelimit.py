"""Rate limits per destination: ``RATE[/BURST]`` per second, a token bucket.

Used by the workers' guard (shared through the store) and by connector settings (``rate_limit``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from cavra.errors import ConfigError


@dataclass(frozen=True)
class RateLimit:
    rate: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ConfigError("rate limit: rate must be > 0 and burst >= 1")


def parse_rate(text: str, where: str) -> RateLimit:
    """``5`` or ``4/20``: per-second rate, optionally /burst (default: max(1, rate)); errors name where."""
    rate_text, _, burst_text = text.strip().partition("/")
    try:
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else max(1.0, rate)
    except ValueError:
        rate = burst = -1.0
    if rate <= 0 or burst < 1:
        raise ConfigError(f"{where}: expected RATE[/BURST] per second (e.g. 1 or 4/20), got {text!r}")
    return RateLimit(rate, burst)


class _Defaults(Mapping[str, RateLimit]):
    """provider -> what it takes without throttling when nothing else is configured: each provider's
    ``ProviderSpec.rate_limit`` (Slack incoming webhooks about 1 message per second with a small burst;
    Intune (Graph) writes 100 per 20 seconds per tenant). Read from the registry when first asked."""

    _cached: tuple[int, dict[str, RateLimit]] | None = None

    def _limits(self) -> dict[str, RateLimit]:
        from cavra.connectors.registry import default_rate_limits, generation

        if self._cached is None or self._cached[0] != generation():
            limits = {
                name: parse_rate(text, f"ProviderSpec({name!r}).rate_limit")
                for name, text in default_rate_limits().items()
            }
            self._cached = (generation(), limits)
        return self._cached[1]

    def __getitem__(self, name: str) -> RateLimit:
        return self._limits()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._limits())

    def __len__(self) -> int:
        return len(self._limits())


DEFAULT_RATE_LIMITS: Mapping[str, RateLimit] = _Defaults()


class Pacer:
    """An in-process token bucket for one face's own run (``cavra integration deliver`` of a file); the
    workers share theirs through the store instead."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._tokens = limit.burst
        self._at = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.limit.burst, self._tokens + (now - self._at) * self.limit.rate)
            self._at = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.limit.rate)
                self._tokens, self._at = 1.0, time.monotonic()
            self._tokens -= 1
