"""Delivery trends: deliveries, failures and success rate per time bucket, and when the current outage
began, for every provider or one (and one metadata kind or all).

Spans: ``24h`` (24 hourly buckets), ``7d`` (28 six-hour buckets), ``30d`` (30 daily buckets). Each bucket
is one aggregate query of the store (:meth:`Store.provider_stats` over the bucket's time range), so a
chart costs at most 30 indexed range queries; it is not read from aggregates kept on append.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.errors import InputError
from cavra.store import Store
from cavra.store.base import DeliveryFilter, iso, normalize_kinds

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
    metadata_kind: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``{"span", "provider", "buckets": [{"start", "end", "total", "succeeded", "failed",
    "success_rate"}], "outage_since", "outage_count", "max_total"}``, oldest bucket first."""
    if span not in SPANS:
        raise InputError(f"span: one of {', '.join(SPANS)}")
    count, step = SPANS[span]
    current = now or datetime.now(UTC)
    end = _floor(current, step) + step
    base = DeliveryFilter(
        metadata_kinds=normalize_kinds(None if metadata_kind is None else [metadata_kind]),
        provider=provider or None,
    )
    buckets: list[dict[str, Any]] = []
    biggest = 0
    for n in range(count):
        start = end - (count - n) * step
        stats = store.provider_stats(base.narrowed(since=start, until=start + step))
        total = sum(s.total for s in stats)
        succeeded = sum(s.succeeded for s in stats)
        failed = sum(s.failed for s in stats)
        biggest = max(biggest, total)
        buckets.append(
            {
                "start": iso(start),
                "end": iso(start + step),
                "total": total,
                "succeeded": succeeded,
                "failed": failed,
                "success_rate": None if total == 0 else round(succeeded / total, 4),
            }
        )
    streaks = store.failure_streaks(base)
    outage = min((s.since for s in streaks), default=None)
    return {
        "span": span,
        "provider": provider or None,
        "metadata_kind": metadata_kind,
        "buckets": buckets,
        "max_total": biggest,
        "outage_since": iso(outage),
        "outage_count": sum(s.count for s in streaks),
        "failing_providers": sorted(s.provider for s in streaks),
    }
