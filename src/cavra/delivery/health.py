"""Dashboard alerts about delivery itself: the queue's backlog and the providers that are held back.

``queue_backlog``
    the oldest due outbox job has waited longer than ``threshold`` (workers are down, too few, or stuck);
    warning, critical from four times the threshold; clears when the backlog is worked off.
``delivery_paused`` (critical)
    a provider's circuit breaker is open (or half-open, probing): its deliveries wait in the queue;
    clears when a delivery succeeds again.
``provider_rate_limited`` (warning)
    a provider asked every worker to wait (``Retry-After``); clears when the time has passed.

Both dashboards (:func:`cavra.history.dashboard`) show them: the queue serves every kind of delivery.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.store import Store
from cavra.store.base import iso, utc
from cavra.store.jobs import HALF_OPEN, OPEN

#: the oldest due job may wait this long before the dashboard warns
BACKLOG_THRESHOLD = timedelta(minutes=5)


def _alert(
    level: str, code: str, message: str, *, since: datetime, count: int, provider: str | None
) -> dict[str, Any]:
    return {
        "level": level,
        "code": code,
        "provider": provider,
        "message": message,
        "since": iso(since),
        "count": count,
        "event_id": None,
        "subject_id": None,
    }


def _minutes(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{delta.total_seconds():.0f} s"


def queue_alerts(
    store: Store, *, now: datetime | None = None, threshold: timedelta = BACKLOG_THRESHOLD
) -> list[dict[str, Any]]:
    """The queue and destination alerts at ``now``."""
    current = utc(now) if now is not None else datetime.now(UTC)
    alerts: list[dict[str, Any]] = []
    stats = store.queue_stats(now=current)
    if stats.oldest_due is not None and current - stats.oldest_due > threshold:
        waited = current - stats.oldest_due
        level = "critical" if waited > threshold * 4 else "warning"
        alerts.append(
            _alert(
                level,
                "queue_backlog",
                f"the oldest due delivery job has waited {_minutes(waited)} "
                f"(threshold {_minutes(threshold)}); {stats.due} jobs are due: "
                "are workers running (cavra worker, or cavra serve)?",
                since=stats.oldest_due,
                count=stats.due,
                provider=None,
            )
        )
    for dest in store.list_destinations():
        waiting = sum(n for (p, st), n in stats.by_provider.items() if p == dest.provider and st == "queued")
        if dest.breaker_state in (OPEN, HALF_OPEN):
            probe = ""
            if dest.breaker_state == OPEN and dest.probe_at:
                # a probe time that has passed is not the future: the next claimed job probes
                probe = (
                    f"; next probe at {iso(dest.probe_at)}"
                    if dest.probe_at > current
                    else f"; a probe has been due since {iso(dest.probe_at)} (the next job run probes)"
                )
            error = f"; last error: {dest.last_error[:200]}" if dest.last_error else ""
            alerts.append(
                _alert(
                    "critical",
                    "delivery_paused",
                    f"{dest.provider}: circuit breaker {dest.breaker_state.replace('_', '-')} after "
                    f"{dest.consecutive_failures} consecutive failed deliveries; "
                    f"{waiting} jobs wait{probe}{error}",
                    since=dest.opened_at or dest.updated_at or current,
                    count=dest.consecutive_failures,
                    provider=dest.provider,
                )
            )
        if dest.paused_until is not None and dest.paused_until > current:
            alerts.append(
                _alert(
                    "warning",
                    "provider_rate_limited",
                    f"{dest.provider} asked to wait (Retry-After) until {iso(dest.paused_until)}; "
                    f"{waiting} jobs wait",
                    since=dest.updated_at or current,
                    count=waiting,
                    provider=dest.provider,
                )
            )
    return alerts
