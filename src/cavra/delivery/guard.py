"""What every worker agrees on about a provider, through the store: circuit breaker, pause, rate limit.

* **Circuit breaker.** After ``failure_threshold`` consecutive failed runs (retryable failures: 5xx,
  timeouts, connection errors; a rejected request says nothing about the provider's health, and a 429 is
  handled by the pause below) the breaker
  opens: deliveries to the provider pause and its jobs wait in the queue. After ``cooldown`` seconds one
  job is let through as a probe (half-open); its success closes the breaker, its failure opens it again.
* **Pause.** A ``Retry-After`` from the provider pauses every worker's deliveries to it until then.
* **Rate limit.** A token bucket per provider (``rate`` per second, ``burst``), kept in the store so all
  workers share it: the operator's setting, else the connector's ``rate_limit``, else the provider's default
  (Slack 1/s with a burst of 4, Intune 4/s with a burst of 20: 100 writes per 20 s). A worker reserves a
  token before it sends; it waits for its slot when the wait is short, and otherwise gives the job back
  to the queue for later without counting an attempt.

Rules are pure functions of :class:`~cavra.store.jobs.Destination`, applied inside
:meth:`Store.update_destination` (one short write). Workers keep a snapshot of every destination (refreshed
each poll) so the common case (breaker closed, no pause, no rate limit) costs no write at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from cavra.config import LoadedConfig
from cavra.delivery.record import ProviderDelivery
from cavra.errors import ConfigError
from cavra.ratelimit import DEFAULT_RATE_LIMITS, RateLimit, parse_rate
from cavra.store import Store
from cavra.store.jobs import CLOSED, HALF_OPEN, OPEN, Destination, Job, clip_error

log = logging.getLogger("cavra.queue")

RATE_ENV = "CAVRA_RATE_LIMITS"
#: a rate-limit wait longer than this gives the job back to the queue instead of holding a worker slot
MAX_SLOT_WAIT = 5.0
#: a job held back while another job probes a half-open breaker looks again after at most this long
PROBE_RECHECK = 5.0
#: how soon a job deferred by an operator's pause is looked at again (a resume takes effect by then)
HOLD_RECHECK = 2.0


def parse_rate_limits(spec: str) -> dict[str, RateLimit]:
    """``splunk=50,datadog=10/20``: provider=per-second rate, optionally /burst (default: max(1, rate))."""
    limits: dict[str, RateLimit] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"rate limit {part!r}: expected PROVIDER=RATE[/BURST], e.g. splunk=50/100")
        try:
            limits[name.strip()] = parse_rate(value, f"rate limit {part!r}")
        except ConfigError:
            raise ConfigError(
                f"rate limit {part!r}: expected PROVIDER=RATE[/BURST], e.g. splunk=50/100"
            ) from None
    return limits


def effective_limits(explicit: Mapping[str, RateLimit], config: LoadedConfig | None) -> dict[str, RateLimit]:
    """Per destination (each has its own bucket): the operator's ``--rate-limit`` / ``CAVRA_RATE_LIMITS``
    for its name, else for its provider, then the destination's ``rate_limit`` setting, then its provider's
    default (:data:`DEFAULT_RATE_LIMITS`)."""
    limits = dict(DEFAULT_RATE_LIMITS)
    if config is not None:
        for name, target in config.targets.items():
            own = target.settings.rate_limit
            if name in explicit:
                continue
            if target.provider in explicit:
                limits[name] = explicit[target.provider]
            elif own:
                limits[name] = parse_rate(own, f"connectors.{name}.rate_limit")
            elif target.provider in DEFAULT_RATE_LIMITS:
                limits[name] = DEFAULT_RATE_LIMITS[target.provider]
    limits.update(explicit)
    return limits


@dataclass(frozen=True)
class GuardSettings:
    failure_threshold: int = 5
    cooldown: float = 60.0
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.cooldown <= 0:
            raise ConfigError("breaker: failure_threshold must be >= 1 and cooldown > 0")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> GuardSettings:
        """``CAVRA_BREAKER_THRESHOLD``, ``CAVRA_BREAKER_COOLDOWN`` (seconds), ``CAVRA_RATE_LIMITS``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        try:
            if env.get("CAVRA_BREAKER_THRESHOLD"):
                values["failure_threshold"] = int(env["CAVRA_BREAKER_THRESHOLD"])
            if env.get("CAVRA_BREAKER_COOLDOWN"):
                values["cooldown"] = float(env["CAVRA_BREAKER_COOLDOWN"])
        except ValueError:
            raise ConfigError("CAVRA_BREAKER_THRESHOLD / CAVRA_BREAKER_COOLDOWN: must be numbers") from None
        if env.get(RATE_ENV):
            values["rate_limits"] = parse_rate_limits(env[RATE_ENV])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# --- rules (pure) -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Admission:
    """``wait`` seconds before sending (0: now), or ``defer`` seconds: give the job back to the queue."""

    wait: float = 0.0
    defer: float | None = None
    reason: str | None = None


def admit(dest: Destination, now: datetime, job_id: str, settings: GuardSettings) -> Admission:
    """May ``job_id`` send to this destination now? Takes the probe or a rate-limit token when it may."""
    if dest.held(now):  # an operator's pause: looked at again soon, so that a resume is not waited out
        left = HOLD_RECHECK if dest.held_until is None else (dest.held_until - now).total_seconds()
        return Admission(defer=min(left, HOLD_RECHECK), reason=f"{dest.provider} paused by {dest.held_by}")
    if dest.paused_until is not None and dest.paused_until > now:
        left = (dest.paused_until - now).total_seconds()
        return Admission(defer=left, reason=f"{dest.provider} asked to wait (Retry-After)")
    dest.paused_until = None
    if dest.breaker_state == OPEN:
        if dest.probe_at is not None and now < dest.probe_at:
            return Admission(defer=(dest.probe_at - now).total_seconds(), reason="circuit breaker open")
        dest.breaker_state, dest.probe_owner = HALF_OPEN, job_id
        dest.probe_at = now + timedelta(seconds=settings.cooldown)  # a probe that never reports is retaken
        log.warning("%s: circuit breaker half-open; job %s probes", dest.provider, job_id)
    elif dest.breaker_state == HALF_OPEN and dest.probe_owner != job_id:
        if dest.probe_at is not None and now < dest.probe_at:
            # look again soon: the probe may close the breaker well before the cool-down ends
            left = min((dest.probe_at - now).total_seconds(), PROBE_RECHECK)
            return Admission(defer=left, reason="circuit breaker probing")
        dest.probe_owner, dest.probe_at = job_id, now + timedelta(seconds=settings.cooldown)
    limit = settings.rate_limits.get(dest.provider)
    if limit is None:
        return Admission()
    level = limit.burst if dest.tokens is None or dest.tokens_at is None else dest.tokens
    if dest.tokens_at is not None:
        level = min(limit.burst, level + max(0.0, (now - dest.tokens_at).total_seconds()) * limit.rate)
    wait = max(0.0, (1 - level) / limit.rate)
    if wait > MAX_SLOT_WAIT:
        dest.tokens, dest.tokens_at = level, now
        return Admission(defer=wait, reason=f"rate limit of {limit.rate:g}/s for {dest.provider}")
    dest.tokens, dest.tokens_at = level - 1, now
    return Admission(wait=wait)


def report(
    dest: Destination, now: datetime, job_id: str, result: ProviderDelivery, settings: GuardSettings
) -> str | None:
    """Fold a run's result into the destination; return the breaker's new state when it changed."""
    before = dest.breaker_state
    retry_after = result.attempts[-1].retry_after if result.attempts else None
    if retry_after and result.attempts[-1].status_code == 429:
        until = now + timedelta(seconds=retry_after)
        if dest.paused_until is None or dest.paused_until < until:
            dest.paused_until = until
    last = result.attempts[-1] if result.attempts else None
    answered = last is not None and last.status_code is not None and last.verdict != "retry"
    if result.status in ("delivered", "pending") or answered:
        # delivered, or a deliberate answer (e.g. a 400 about this request): the provider is up
        dest.breaker_state, dest.consecutive_failures = CLOSED, 0
        dest.opened_at = dest.probe_at = dest.probe_owner = None
    elif last is not None and last.verdict == "retry" and last.status_code != 429:
        # a 429 says "slower", not "down": the pause above handles it
        dest.consecutive_failures += 1
        dest.last_error = clip_error(None if result.error is None else str(result.error))
        probe_failed = before == HALF_OPEN and dest.probe_owner == job_id
        if probe_failed or (before == CLOSED and dest.consecutive_failures >= settings.failure_threshold):
            dest.breaker_state, dest.probe_owner = OPEN, None
            dest.opened_at = dest.opened_at if probe_failed else now
            dest.probe_at = now + timedelta(seconds=settings.cooldown)
    return dest.breaker_state if dest.breaker_state != before else None


# --- the worker's side ------------------------------------------------------------------------------------
class Guard:
    """A worker's view of the destinations: cached snapshot, and the two store round trips per job."""

    def __init__(self, store: Store, settings: GuardSettings | None = None) -> None:
        self.store = store
        #: what the operator set (flags, environment); :attr:`settings` adds config and defaults to it
        self.base = settings or GuardSettings()
        self.settings = replace(self.base, rate_limits=effective_limits(self.base.rate_limits, None))
        self._snapshot: dict[str, Destination] = {}
        self._read_at = 0.0
        self._config: LoadedConfig | None = None

    def use_config(self, config: LoadedConfig | None) -> None:
        """Take the connectors' ``rate_limit`` settings from ``config`` (cheap when it has not changed)."""
        if config is self._config:
            return
        self._config = config
        self.settings = replace(self.base, rate_limits=effective_limits(self.base.rate_limits, config))

    async def refresh(self, max_age: float = 1.0) -> None:
        if time.monotonic() - self._read_at < max_age:
            return
        found = await asyncio.to_thread(self.store.list_destinations)
        self._snapshot = {d.provider: d for d in found}
        self._read_at = time.monotonic()

    def paused(self, now: datetime) -> list[str]:
        """Providers whose jobs no worker should claim now (a claim filter; :meth:`admit` decides)."""

        def held(d: Destination) -> bool:
            if d.held(now) or (d.paused_until is not None and d.paused_until > now):
                return True
            return d.breaker_state in (OPEN, HALF_OPEN) and d.probe_at is not None and d.probe_at > now

        return [d.provider for d in self._snapshot.values() if held(d)]

    def _quiet(self, provider: str) -> bool:
        d = self._snapshot.get(provider)
        healthy = d is None or (d.breaker_state == CLOSED and d.paused_until is None and d.held_at is None)
        return healthy and provider not in self.settings.rate_limits

    async def admit(self, job: Job) -> Admission:
        if self._quiet(job.provider):
            return Admission()
        s = self.settings
        return await asyncio.to_thread(
            self.store.update_destination, job.provider, lambda d, now: admit(d, now, job.id, s)
        )

    async def report(self, job: Job, result: ProviderDelivery) -> None:
        d = self._snapshot.get(job.provider)
        if not result.attempts:
            return  # nothing was sent: nothing learnt about the provider
        last = result.attempts[-1]
        up = result.status in ("delivered", "pending") or (
            last.status_code is not None and last.verdict != "retry"
        )
        clean = d is None or (d.breaker_state == CLOSED and d.consecutive_failures == 0)
        if up and clean and last.status_code != 429:
            return  # the common case costs no write
        s = self.settings
        changed = await asyncio.to_thread(
            self.store.update_destination, job.provider, lambda dst, now: report(dst, now, job.id, result, s)
        )
        self._read_at = 0.0  # re-read the snapshot on the next poll
        if changed == OPEN:
            log.warning("%s: circuit breaker open after failures; its deliveries wait", job.provider)
        elif changed == CLOSED:
            log.warning("%s: circuit breaker closed; deliveries resume", job.provider)
