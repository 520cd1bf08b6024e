"""Retry policy: exponential backoff with full jitter, capped, honouring ``Retry-After`` up to a cap."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 1
    base_delay: float = 0.5
    max_delay: float = 30.0
    #: a provider's ``Retry-After`` is honoured up to this many seconds; beyond it the delivery fails
    max_retry_after: float = 120.0
    #: overall deadline for one provider delivery, seconds
    deadline: float = 300.0

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def next_delay(
        self, retry_number: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Delay before retry ``retry_number`` (1-based).

        Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^(n-1))]. A ``Retry-After`` from
        the provider is a floor: we never come back sooner than asked.
        """
        r = rng or random
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, retry_number - 1)))
        delay = r.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay
