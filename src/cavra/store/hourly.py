"""Hourly delivery counts kept on append (revision 0010): the trends' source.

``pd_hourly`` holds, per (hour, metadata kind, provider, destination), how many provider deliveries were
indexed in that hour (by their ``created_at``), how many succeeded and how many failed (the rest are
pending). Every append adds its index rows' counts in its own transaction, as one upsert per touched
bucket (``INSERT … ON CONFLICT DO UPDATE``, which SQLite and PostgreSQL both run), so a trend over 30
days reads at most 720 hours of one small table instead of scanning the index (:func:`buckets`).
Revision 0010 builds the table from the existing index rows (:func:`rebuild`).

The counts are those of :meth:`cavra.store.base.Store.provider_stats` over the same hours, row for row
(``tests/store/test_hourly.py`` checks that both agree).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cavra.store import rawsql
from cavra.store.base import DeliveryFilter, FailureStreak, utc
from cavra.store.schema import pd_destination_totals, pd_hourly
from cavra.store.schema import provider_deliveries as pd

HOUR = timedelta(hours=1)
_KEY = ("hour", "metadata_kind", "provider", "destination")
_COUNTS = ("total", "succeeded", "failed")
_UPSERT = rawsql.insert(
    pd_hourly,
    [*_KEY, *_COUNTS],
    ' ON CONFLICT ("hour", "metadata_kind", "provider", "destination") DO UPDATE SET '
    '"total" = "pd_hourly"."total" + excluded."total", '
    '"succeeded" = "pd_hourly"."succeeded" + excluded."succeeded", '
    '"failed" = "pd_hourly"."failed" + excluded."failed"',
)

Bucket = tuple[datetime, str, str, str]


def hour_of(moment: datetime) -> datetime:
    """The start of ``moment``'s hour (UTC)."""
    return utc(moment).replace(minute=0, second=0, microsecond=0)


def count(rows: Iterable[Any]) -> dict[Bucket, list[int]]:
    """Index rows → ``[total, succeeded, failed]`` per bucket (a row is failed unless it succeeded or is
    pending, as in :mod:`cavra.store.aggregates`)."""
    out: dict[Bucket, list[int]] = {}
    for r in rows:
        provider = str(r["provider"])
        key = (hour_of(r["created_at"]), r["metadata_kind"], provider, r.get("destination") or provider)
        c = out.get(key)
        if c is None:
            c = out[key] = [0, 0, 0]
        success = bool(r["success"])
        c[0] += 1
        c[1] += success
        c[2] += not success and r["status"] != "pending"
    return out


def add(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add the counts of ``rows`` (index rows being appended) inside the caller's transaction."""
    counted = count(rows)
    if counted:
        _UPSERT.executemany(conn, [(*k, *v) for k, v in sorted(counted.items())])


def rebuild(conn: sa.Connection, *, batch: int = 50_000) -> int:
    """Recompute ``pd_hourly`` from ``provider_deliveries``; return the index rows counted."""
    conn.execute(sa.delete(pd_hourly))
    read = sa.select(
        pd.c.id,
        pd.c.created_at,
        pd.c.metadata_kind,
        pd.c.provider,
        pd.c.destination,
        pd.c.success,
        pd.c.status,
    )
    totals: dict[Bucket, list[int]] = {}
    last = 0
    counted = 0
    while True:
        rows = conn.execute(read.where(pd.c.id > last).order_by(pd.c.id).limit(batch)).mappings().all()
        if not rows:
            break
        for key, c in count(rows).items():
            have = totals.setdefault(key, [0, 0, 0])
            for i in range(3):
                have[i] += c[i]
        last = int(rows[-1]["id"])
        counted += len(rows)
    if totals:
        conn.execute(
            sa.insert(pd_hourly),
            [dict(zip((*_KEY, *_COUNTS), (*k, *v), strict=True)) for k, v in sorted(totals.items())],
        )
    return counted


def supports(flt: DeliveryFilter) -> bool:
    """Can ``pd_hourly`` answer ``flt``? Kinds, provider, destination and whole-hour times only."""
    from dataclasses import replace

    bare = replace(flt, metadata_kinds=None, provider=None, destination=None, since=None, until=None)
    whole = all(t is None or hour_of(t) == utc(t) for t in (flt.since, flt.until))
    return bare == DeliveryFilter() and whole


def hours(conn: sa.Connection, flt: DeliveryFilter) -> dict[datetime, tuple[int, int, int]]:
    """``hour → (total, succeeded, failed)`` for the hours of ``flt`` that had deliveries (``flt`` must be
    :func:`supports`-ed)."""
    t = pd_hourly
    where: list[sa.ColumnElement[bool]] = []
    if flt.since is not None:
        where.append(t.c.hour >= utc(flt.since))
    if flt.until is not None:
        where.append(t.c.hour < utc(flt.until))
    if flt.metadata_kinds is not None:
        where.append(t.c.metadata_kind.in_(flt.metadata_kinds))
    if flt.provider is not None:
        where.append(t.c.provider == flt.provider)
    if flt.destination is not None:
        where.append(t.c.destination == flt.destination)
    stmt = (
        sa.select(t.c.hour, sa.func.sum(t.c.total), sa.func.sum(t.c.succeeded), sa.func.sum(t.c.failed))
        .where(*where)
        .group_by(t.c.hour)
    )
    out = {}
    for hour, total, ok, bad in conn.execute(stmt).all():
        when = hour if isinstance(hour, datetime) else datetime.fromisoformat(str(hour))
        out[utc(when) if when.tzinfo else when.replace(tzinfo=UTC)] = (int(total), int(ok), int(bad))
    return out


def fold(
    per_hour: Mapping[datetime, tuple[int, int, int]], *, start: datetime, step: timedelta, count: int
) -> list[tuple[int, int, int]]:
    """Hourly counts summed into ``count`` buckets of ``step`` (a whole number of hours) from ``start``."""
    out = [[0, 0, 0] for _ in range(count)]
    begin = utc(start)
    for hour, counts in per_hour.items():
        n = int((hour - begin) // step)
        if 0 <= n < count:
            for i in range(3):
                out[n][i] += counts[i]
    return [(a, b, c) for a, b, c in out]


def destination_streak(conn: sa.Connection, flt: DeliveryFilter) -> list[FailureStreak] | None:
    """One destination's current failure streak from ``pd_destination_totals`` (revision 0008), when
    ``flt`` names the destination and kinds only and no kind's open streak straddles the latest success
    of any of the kinds (so that each counts wholly or not at all); ``None`` otherwise (the caller asks
    the index).
    What the index's SQL answers, without reading the destination's rows (the trends' outage)."""
    from cavra.store.aggquery import kinds_only

    if flt.destination is None or not kinds_only(flt, destination=flt.destination):
        return None
    t = pd_destination_totals
    where = [t.c.destination == flt.destination]
    if flt.metadata_kinds is not None:
        where.append(t.c.metadata_kind.in_(flt.metadata_kinds))
    cols = ("provider", "last_ok_id", "streak_count", "streak_first_id", "streak_since")
    rows = conn.execute(
        sa.select(*[t.c[c] for c in (*cols, "streak_last_at", "streak_last_id", "streak_event_type")]).where(
            *where
        )
    ).all()
    latest_ok = max((int(r[1]) for r in rows), default=0)
    # a kind's streak wholly before the latest success of another kind has ended; one wholly after it counts
    open_ = [r for r in rows if int(r[2]) > 0 and int(r[6]) > latest_ok]
    if not open_:
        return []
    if not all(r[3] is not None and int(r[3]) > latest_ok for r in open_):
        return None  # a streak that the other kind's success cut in two: the index counts its tail
    last_id = max(int(r[6]) for r in open_)
    error = conn.execute(sa.select(pd.c.error).where(pd.c.id == last_id)).scalar()
    return [
        FailureStreak(
            provider=max(str(r[0]) for r in open_),
            event_id=None,
            event_type=max((r[7] for r in open_ if r[7] is not None), default=None),
            count=sum(int(r[2]) for r in open_),
            since=utc(min(r[4] for r in open_)),
            last_at=utc(max(r[5] for r in open_)),
            last_error=error,
        )
    ]
