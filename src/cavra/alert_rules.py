"""The dashboard's alert rules (:func:`cavra.history.dashboard` describes them): each rule turns what the
store counted into alerts of one code. :mod:`cavra.alert_links` then makes each actionable."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from cavra.alert_links import latest_failure
from cavra.store.aggquery import NewestStreaks
from cavra.store.base import DeliveryFilter, FailureStreak, ProviderStats, Store, UnpublishedExport, iso


def alert(
    level: str,
    code: str,
    message: str,
    *,
    since: datetime,
    count: int,
    provider: str | None = None,
    event_id: str | None = None,
    subject_id: str | None = None,
) -> dict[str, Any]:
    return {
        "level": level,
        "code": code,
        "provider": provider,
        "message": message,
        "since": iso(since),
        "count": count,
        "event_id": event_id,
        "subject_id": subject_id,
    }


def plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else f"{n} {word}s"


def last_error(error: str | None) -> str:
    return f"; last error: {error[:200]}" if error else ""


def duration(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 3600 == 0:
        return plural(seconds // 3600, "hour")
    if seconds % 60 == 0:
        return plural(seconds // 60, "minute")
    return plural(seconds, "second")


def streak_alerts(streaks: Iterable[FailureStreak], critical_after: int) -> list[dict[str, Any]]:
    """``provider_delivery_failing``: a provider whose latest delivery failed."""
    alerts: list[dict[str, Any]] = []
    for st in streaks:
        level = "critical" if st.count >= critical_after else "warning"
        what = "the latest delivery" if st.count == 1 else f"the last {st.count} deliveries"
        alerts.append(
            alert(
                level,
                "provider_delivery_failing",
                f"{st.provider}: {what} failed since {iso(st.since)}{last_error(st.last_error)}",
                since=st.since,
                count=st.count,
                provider=st.provider,
            )
        )
    return alerts


def rollback_alerts(
    store: Store, base: DeliveryFilter, rollback: NewestStreaks, *, listed: int
) -> list[dict[str, Any]]:
    """``rollback_delivery_failed`` for the ``listed`` newest undelivered rollback events, and
    ``rollback_delivery_failed_more`` summing up the rest."""
    alerts: list[dict[str, Any]] = []
    if rollback.total > listed:
        rest = rollback.total - listed
        assert rollback.oldest is not None
        alerts.append(
            alert(
                "critical",
                "rollback_delivery_failed_more",
                f"{rest} more rollback execution events were not delivered "
                f"(the {listed} most recent are listed one by one)",
                since=rollback.oldest,
                count=rest,
                provider=None,
            )
        )
    for st in rollback.newest:
        row = latest_failure(store, base.narrowed(event_id=st.event_id, provider=st.provider))
        subject = row.get("subject_id") if row else None
        what = f"rollback execution {subject}" if subject else f"rollback execution event {st.event_id}"
        one = alert(
            "critical",
            "rollback_delivery_failed",
            f"{what} was not delivered to {st.provider}: "
            f"{plural(st.count, 'failed delivery')} since {iso(st.since)}{last_error(st.last_error)}",
            since=st.since,
            count=st.count,
            provider=st.provider,
            event_id=st.event_id,
            subject_id=subject,
        )
        one["delivery_id"] = row["delivery_id"] if row else None
        one["history"] = {"event_id": st.event_id, "provider": st.provider} if st.event_id else None
        alerts.append(one)
    return alerts


def rate_alerts(
    window_stats: Iterable[ProviderStats], window: timedelta, threshold: float
) -> list[dict[str, Any]]:
    """``failure_rate_high``: a provider whose failure rate in the window exceeds ``threshold``."""
    alerts: list[dict[str, Any]] = []
    for ws in window_stats:
        rate = ws.failed / ws.total if ws.total else 0.0
        if ws.failed and rate > threshold and ws.first_failure_at is not None:
            alerts.append(
                alert(
                    "warning",
                    "failure_rate_high",
                    f"{ws.provider}: {ws.failed} of {ws.total} deliveries failed in the last "
                    f"{duration(window)} ({rate:.0%}, threshold {threshold:.0%})",
                    since=ws.first_failure_at,
                    count=ws.failed,
                    provider=ws.provider,
                )
            )
    return alerts


def export_alerts(unpublished: Sequence[UnpublishedExport], export_window: timedelta) -> list[dict[str, Any]]:
    """``export_not_published``: an endpoint export stored longer than ``export_window`` ago, unpublished."""
    alerts: list[dict[str, Any]] = []
    for ex in unpublished:
        tried = (
            f"{plural(ex.failed_deliveries, 'failed delivery')}" if ex.failed_deliveries else "no delivery"
        )
        alerts.append(
            alert(
                "warning",
                "export_not_published",
                f"endpoint export {ex.export_id} was stored at {iso(ex.stored_at)} and is not published "
                f"after {duration(export_window)} ({tried}{last_error(ex.last_error)})",
                since=ex.stored_at,
                count=ex.failed_deliveries,
                subject_id=ex.export_id,
            )
        )
    return alerts
