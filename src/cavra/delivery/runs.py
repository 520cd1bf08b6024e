"""What a worker's runs share: the target a job resolves to, its retry policy, how due jobs group into
batches, the worker's counters and the observer it reports to."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, replace
from typing import Any

from cavra.config import LoadedConfig, Target
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import ProviderDelivery
from cavra.delivery.schedule import Schedule
from cavra.errors import ConfigError
from cavra.store.jobs import Job, JobOutcome


class RunObserver:
    """What a worker reports after each run (metrics implement it; the default does nothing)."""

    def run_finished(
        self, job: Job, result: ProviderDelivery | None, outcome: JobOutcome, seconds: float
    ) -> None:  # pragma: no cover - interface
        return None


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def resolve_target(config: LoadedConfig | None, provider: str) -> Target:
    """The configured target of destination ``provider`` (a job's ``provider`` is its destination's name),
    or ConfigError saying why there is none (a disabled destination's job is not sent)."""
    if config is None:
        raise ConfigError("no connector config: the worker needs --config FILE or $CAVRA_CONNECTOR_CONFIG")
    if provider in config.targets:
        return config.targets[provider]
    if provider in config.errors:
        raise ConfigError(config.errors[provider])
    raise ConfigError(str(config.missing(provider)))


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    rescheduled: int = 0
    dead: int = 0
    deferred: int = 0
    released: int = 0
    lease_lost: int = 0
    #: completions written again after the store failed for a while
    completion_retries: int = 0


def target_for(config: LoadedConfig | None, provider: str, options: dict[str, Any]) -> Target:
    """The job's target, with the job's own ``timeout_seconds`` when it asked for one."""
    target = resolve_target(config, provider)
    timeout = options.get("timeout_seconds")
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        target = replace(target, options=replace(target.options, timeout=float(timeout)))
    return target


def schedule_for(config: LoadedConfig | None, destination: str, base: Schedule) -> Schedule:
    """The outbox schedule of ``destination``'s jobs: ``base`` (the worker's) with the destination's own
    ``retry`` keys (backoff base and cap, runs, age) in place of the global ones."""
    target = None if config is None else config.targets.get(destination)
    retry = None if target is None else target.settings.retry
    if retry is None:
        return base
    changes: dict[str, Any] = {
        "base_delay": retry.backoff_base,
        "max_delay": retry.backoff_max,
        "max_runs": retry.max_runs,
        "max_age": retry.max_age,
    }
    given = {k: v for k, v in changes.items() if v is not None}
    if "base_delay" in given and "max_delay" not in given:
        given["max_delay"] = max(base.max_delay, given["base_delay"])
    elif "max_delay" in given and "base_delay" not in given:
        given["base_delay"] = min(base.base_delay, given["max_delay"])
    return replace(base, **given)


def policy_for(options: dict[str, Any], base: float | None) -> RetryPolicy:
    """The short-retry policy of one run: the job's ``retries`` (0-10, default 1)."""
    retries = options.get("retries", 1)
    n = retries if isinstance(retries, int) and not isinstance(retries, bool) and 0 <= retries <= 10 else 1
    if base is None:
        return RetryPolicy(retries=n)
    return RetryPolicy(retries=n, base_delay=base, max_delay=max(base, base * 8))


def group_jobs(jobs: list[Job]) -> dict[tuple[str, str], list[Job]]:
    """Jobs that may share requests: same provider, same delivery options."""
    groups: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        options = json.dumps(job.payload.get("options") or {}, sort_keys=True, default=str)
        groups.setdefault((job.provider, options), []).append(job)
    return groups
