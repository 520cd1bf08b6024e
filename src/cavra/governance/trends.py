"""Delivery trends: deliveries, failures and success rate per time bucket, and when the current outage
began, for every provider or one, every destination or one (and one metadata kind or all).

Spans: ``24h`` (24 hourly buckets), ``7d`` (28 six-hour buckets), ``30d`` (30 daily buckets). The counts
come from :meth:`Store.bucket_counts`: on SQLite and PostgreSQL one query of the hourly counts kept on
append (:mod:`cavra.store.hourly`), so a chart at 1,000,000 records costs a few milliseconds; the outage
from the failure streaks kept on append (:mod:`cavra.store.aggregates`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.errors import InputError
from cavra.store import Store
from cavra.store.base import DeliveryFilter, FailureStreak, iso, normalize_kinds

SPANS: dict[str, tuple[int, timedelta]] = {
    "24h": (24, timedelta(hours=1)),
    "7d": (28, timedelta(hours=6)),
    "30d": (30, timedelta(days=1)),
}


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step


def delivery_trend(
    store: Store,
    *,
    span: str = "24h",
    provider: str | None = None,
    destination: str | None = None,
    metadata_kind: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``{"span", "provider", "destination", "buckets": [{"start", "end", "total", "succeeded", "failed",
    "success_rate"}], "outage_since", "outage_count", "max_total"}``, oldest bucket first."""
    if span not in SPANS:
        raise InputError(f"span: one of {', '.join(SPANS)}")
    count, step = SPANS[span]
    current = now or datetime.now(UTC)
    end = _floor(current, step) + step
    start = end - count * step
    base = DeliveryFilter(
        metadata_kinds=normalize_kinds(None if metadata_kind is None else [metadata_kind]),
        provider=provider or None,
        destination=destination or None,
    )
    buckets: list[dict[str, Any]] = []
    for n, (total, succeeded, failed) in enumerate(
        store.bucket_counts(base, start=start, step=step, count=count)
    ):
        since = start + n * step
        buckets.append(
            {
                "start": iso(since),
                "end": iso(since + step),
                "total": total,
                "succeeded": succeeded,
                "failed": failed,
                "success_rate": None if total == 0 else round(succeeded / total, 4),
            }
        )
    streaks = _streaks(store, base)
    outage = min((s.since for s in streaks), default=None)
    return {
        "span": span,
        "provider": provider or None,
        "destination": destination or None,
        "metadata_kind": metadata_kind,
        "buckets": buckets,
        "max_total": max((b["total"] for b in buckets), default=0),
        "outage_since": iso(outage),
        "outage_count": sum(s.count for s in streaks),
        "failing_providers": sorted(s.provider for s in streaks),
    }


def _streaks(store: Store, flt: DeliveryFilter) -> list[FailureStreak]:
    """The current failure streaks of ``flt``: one provider's or destination's are picked from the
    all-provider streaks the aggregates answer at once (a provider-filtered query scans the index)."""
    if flt.destination is not None:
        return store.failure_streaks(flt)
    every = store.failure_streaks(flt.narrowed(provider=None))
    return [s for s in every if flt.provider is None or s.provider == flt.provider]
