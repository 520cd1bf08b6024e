"""The long retry schedule of outbox jobs, and what becomes of a job after an attempt run.

A run that still fails with a retryable error is rescheduled on :class:`Schedule` (minutes to hours, never
sooner than the provider's ``Retry-After``) until ``max_runs`` or ``max_age``; then the job is a dead
letter with its reason. A rejected delivery (a 4xx, a payload too large) fails at once: sending it again
would not help (:func:`outcome_for`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cavra.delivery.record import ProviderDelivery
from cavra.errors import ConfigError
from cavra.store.jobs import DEAD, FAILED, QUEUED, SUCCEEDED, Job, JobOutcome

ENV_PREFIX = "CAVRA_QUEUE_"


@dataclass(frozen=True)
class Schedule:
    """When a job whose attempt run failed (retryably) runs again, and when it becomes a dead letter.

    Run ``n`` failed → next run after ``min(max_delay, base_delay * factor**(n-1))`` seconds, ±``jitter``,
    and never sooner than the provider's ``Retry-After``. Dead after ``max_runs`` runs, or when the next
    run would start more than ``max_age`` seconds after the job was created.
    """

    base_delay: float = 60.0
    factor: float = 2.0
    max_delay: float = 6 * 3600.0
    max_runs: int = 12
    max_age: float = 24 * 3600.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.base_delay < 0 or self.max_delay < self.base_delay or self.factor < 1:
            raise ConfigError("queue schedule: need 0 <= base_delay <= max_delay and factor >= 1")
        if self.max_runs < 1 or self.max_age <= 0 or not 0 <= self.jitter < 1:
            raise ConfigError("queue schedule: need max_runs >= 1, max_age > 0 and 0 <= jitter < 1")

    def delay(self, run: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds before the run after run ``run`` (1-based)."""
        r = rng or random
        base = min(self.max_delay, self.base_delay * self.factor ** max(0, run - 1))
        delay = base * (1 + r.uniform(-self.jitter, self.jitter))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def next_run(self, job: Job, now: datetime, retry_after: float | None = None) -> datetime | None:
        """When ``job`` (whose run ``job.attempts`` just failed) runs again; ``None``: it is a dead letter."""
        if job.attempts >= self.max_runs:
            return None
        at = now + timedelta(seconds=self.delay(job.attempts, retry_after))
        if (at - job.created_at).total_seconds() > self.max_age:
            return None
        return at

    def why_dead(self, job: Job, now: datetime) -> str:
        if job.attempts >= self.max_runs:
            return f"dead letter after {job.attempts} attempt runs (max {self.max_runs})"
        return (
            f"dead letter: the next run would start more than {_span(self.max_age)} after the job was queued"
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Schedule:
        """``CAVRA_QUEUE_BACKOFF_BASE``, ``_BACKOFF_FACTOR``, ``_BACKOFF_MAX`` (seconds), ``_MAX_RUNS``,
        ``_MAX_AGE`` (seconds); keyword overrides (e.g. CLI flags, ``None`` = not given) win."""
        env = os.environ if environ is None else environ
        names = {
            "base_delay": "BACKOFF_BASE",
            "factor": "BACKOFF_FACTOR",
            "max_delay": "BACKOFF_MAX",
            "max_runs": "MAX_RUNS",
            "max_age": "MAX_AGE",
        }
        values: dict[str, Any] = {}
        for attr, suffix in names.items():
            raw = env.get(ENV_PREFIX + suffix)
            if raw:
                try:
                    values[attr] = int(raw) if attr == "max_runs" else float(raw)
                except ValueError:
                    raise ConfigError(f"{ENV_PREFIX}{suffix}: must be a number, got {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def retryable(result: ProviderDelivery) -> bool:
    """A failed run worth running again later: its last attempt asked for a retry (5xx, 429, timeout…)."""
    return bool(result.attempts) and result.attempts[-1].verdict == "retry"


def outcome_for(
    job: Job,
    result: ProviderDelivery | None,
    schedule: Schedule,
    now: datetime,
    *,
    config_error: str | None = None,
) -> JobOutcome:
    """The job's state after a run: ``result`` is the delivery, or ``None`` when the target could not be
    resolved (``config_error``; retried on the schedule: an operator can fix the config meanwhile)."""
    if result is not None and result.status in ("delivered", "pending"):
        return JobOutcome(SUCCEEDED)
    error = config_error or (str(result.error) if result is not None and result.error else "failed")
    if result is not None and not retryable(result):
        return JobOutcome(FAILED, error)
    retry_after = result.attempts[-1].retry_after if result is not None and result.attempts else None
    at = schedule.next_run(job, now, retry_after)
    if at is None:
        return JobOutcome(DEAD, f"{schedule.why_dead(job, now)}: {error}")
    return JobOutcome(QUEUED, error, at)
