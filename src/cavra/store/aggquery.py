"""Dashboard answers from the aggregates kept on append (:mod:`cavra.store.aggregates`).

Each function answers a filter that names metadata kinds only (the dashboard's all-history figures) and
returns ``None`` for any other filter, which the caller then answers with the SQL of
:mod:`cavra.store.sqlquery`. The answers are those of that SQL, row for row.

A failure streak over several metadata kinds is the failed rows after the latest success of *any* of
them; a kind whose own streak began after that success contributes all of it, and a kind whose streak
began before it (another kind delivered since) is counted with one indexed query for that group.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cavra.store.aggregates import _DEST as DEST_NAMES
from cavra.store.aggregates import _TOTALS as TOTAL_NAMES
from cavra.store.aggregates import _TYPE as TYPE_NAMES
from cavra.store.aggregates import ROLLBACK, DestinationTotals, Streak, Totals, TypeTotals, _load
from cavra.store.base import DeliveryFilter, EventTypeStats, FailureStreak, ProviderStats
from cavra.store.schema import pd_destination_totals, pd_event_streaks, pd_event_type_totals, pd_totals
from cavra.store.schema import provider_deliveries as pd
from cavra.store.sqlquery import _FAILED, _req, conditions

if TYPE_CHECKING:
    from cavra.store.base import Store

_EMPTY = DeliveryFilter()


def kinds_only(flt: DeliveryFilter, **allowed: Any) -> bool:
    """True if ``flt`` sets nothing but metadata kinds (and the ``allowed`` fields to those values)."""
    return replace(flt, metadata_kinds=None, **dict.fromkeys(allowed)) == _EMPTY and all(
        getattr(flt, k) == v for k, v in allowed.items()
    )


def _where(table: sa.Table, flt: DeliveryFilter) -> list[sa.ColumnElement[bool]]:
    return [] if flt.metadata_kinds is None else [table.c.metadata_kind.in_(flt.metadata_kinds)]


def _rows(
    conn: sa.Connection, table: sa.Table, flt: DeliveryFilter, cls: type[Any], names: Sequence[str]
) -> Any:
    return [
        (m, _load(cls, m, names))
        for m in conn.execute(sa.select(table).where(*_where(table, flt))).mappings()
    ]


def provider_stats(conn: sa.Connection, flt: DeliveryFilter) -> list[ProviderStats] | None:
    if not kinds_only(flt):
        return None
    merged: dict[str, ProviderStats] = {}
    for m, t in _rows(conn, pd_totals, flt, Totals, TOTAL_NAMES):
        s = merged.get(m["provider"])
        mine = ProviderStats(
            m["provider"],
            t.total,
            t.succeeded,
            t.failed,
            t.pending,
            t.attempts,
            t.last_success_at,
            t.last_failure_at,
            t.first_failure_at,
        )
        merged[m["provider"]] = mine if s is None else _merge(s, mine)
    return [merged[p] for p in sorted(merged)]


def destination_stats(conn: sa.Connection, flt: DeliveryFilter) -> list[ProviderStats] | None:
    """Per destination, from ``pd_destination_totals`` (``None``: answer ``flt`` with the index's SQL)."""
    if not kinds_only(flt):
        return None
    merged: dict[str, ProviderStats] = {}
    for m, t in _rows(conn, pd_destination_totals, flt, DestinationTotals, DEST_NAMES):
        s = merged.get(m["destination"])
        mine = ProviderStats(
            t.provider,
            t.total,
            t.succeeded,
            t.failed,
            t.pending,
            t.attempts,
            t.last_success_at,
            t.last_failure_at,
            t.first_failure_at,
            m["destination"],
        )
        merged[m["destination"]] = mine if s is None else _merge(s, mine)
    return [merged[d] for d in sorted(merged)]


def _merge(a: ProviderStats, b: ProviderStats) -> ProviderStats:
    return ProviderStats(
        max(a.provider, b.provider),
        a.total + b.total,
        a.succeeded + b.succeeded,
        a.failed + b.failed,
        a.pending + b.pending,
        a.attempts + b.attempts,
        _opt(max, a.last_success_at, b.last_success_at),
        _opt(max, a.last_failure_at, b.last_failure_at),
        _opt(min, a.first_failure_at, b.first_failure_at),
        a.destination,
    )


def _opt(pick: Any, a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else pick(a, b)


def count(conn: sa.Connection, flt: DeliveryFilter) -> int | None:
    """The number of index rows of a filter on kinds, and optionally provider and success."""
    plain = replace(flt, provider=None, success=None)
    if not kinds_only(plain):
        return None
    where = _where(pd_totals, flt)
    if flt.provider is not None:
        where.append(pd_totals.c.provider == flt.provider)
    column = {None: pd_totals.c.total, True: pd_totals.c.succeeded}.get(flt.success)
    value = pd_totals.c.total - pd_totals.c.succeeded if column is None and flt.success is False else column
    assert value is not None
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(value), 0)).where(*where)).scalar_one())


def event_type_stats(conn: sa.Connection, flt: DeliveryFilter) -> list[EventTypeStats] | None:
    if not kinds_only(flt):
        return None
    merged: dict[str, EventTypeStats] = {}
    for m, t in _rows(conn, pd_event_type_totals, flt, TypeTotals, TYPE_NAMES):
        s = merged.get(m["event_key"])
        merged[m["event_key"]] = EventTypeStats(
            t.event_type,
            t.total + (s.total if s else 0),
            t.succeeded + (s.succeeded if s else 0),
            t.failed + (s.failed if s else 0),
        )
    return sorted(merged.values(), key=lambda e: (-e.total, e.event_type is not None, e.event_type or ""))


_STREAK_COLUMNS = (
    "last_ok_id",
    "streak_count",
    "streak_first_id",
    "streak_since",
    "streak_last_at",
    "streak_last_id",
    "streak_event_type",
)


def failure_streaks(conn: sa.Connection, flt: DeliveryFilter, per_event: bool) -> list[FailureStreak] | None:
    """Current failure streaks per provider (or, for rollback events, per provider and event).

    Only groups with a streak are read; over several kinds, the latest success of each such group in the
    other kinds is read too (one grouped query), since it ends the streaks that began before it."""
    keys: tuple[str, ...]
    if per_event and kinds_only(flt, event_type_contains=ROLLBACK):
        table, keys = pd_event_streaks, ("provider", "event_key", "event_id")
    elif not per_event and kinds_only(flt):
        table, keys = pd_totals, ("provider",)
    else:
        return None
    width = 2 if per_event else 1
    stmt = sa.select(*[table.c[c] for c in (*keys, *_STREAK_COLUMNS)]).where(
        *_where(table, flt), _open(table)
    )
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for r in conn.execute(stmt).all():
        groups.setdefault(tuple(r[:width]), []).append(r[len(keys) :])
    several = flt.metadata_kinds is None or len(flt.metadata_kinds) > 1
    latest = _latest_ok(conn, table, flt, width, list(groups)) if several and groups else {}
    found: list[tuple[str, str | None, int, str | None, datetime, datetime, int]] = []
    for group, parts in groups.items():
        provider = group[0]
        event_id = _event_id(group[1]) if per_event else None
        latest_ok = max(latest.get(group, 0), *(p[0] for p in parts))
        if all(p[2] is not None and p[2] > latest_ok for p in parts):
            n = sum(p[1] for p in parts)
            event_type = _opt_all(max, (p[6] for p in parts))
            since = _opt_all(min, (p[3] for p in parts))
            last_at = _opt_all(max, (p[4] for p in parts))
            last_id = _opt_all(max, (p[5] for p in parts))
        else:
            row = _recount(conn, flt, provider, event_id, per_event, latest_ok)
            if row is None:
                continue
            event_type, n, since, last_at, last_id = row
        found.append((provider, event_id, int(n), event_type, _req(since), _req(last_at), int(last_id)))
    errors: dict[int, str | None] = {}
    ids = sorted({f[-1] for f in found})
    for start in range(0, len(ids), 500):
        stmt = sa.select(pd.c.id, pd.c.error).where(pd.c.id.in_(ids[start : start + 500]))
        errors.update((int(i), e) for i, e in conn.execute(stmt).all())
    found.sort(key=lambda f: (f[0], f[1] is not None, f[1] or ""))
    return [
        FailureStreak(
            provider=provider,
            event_id=event_id,
            event_type=event_type,
            count=n,
            since=since,
            last_at=last_at,
            last_error=errors.get(last_id),
        )
        for provider, event_id, n, event_type, since, last_at, last_id in found
    ]


def _event_id(key: str) -> str | None:
    return None if key == "" else key[1:]


def _latest_ok(
    conn: sa.Connection, table: sa.Table, flt: DeliveryFilter, width: int, groups: list[tuple[Any, ...]]
) -> dict[tuple[Any, ...], int]:
    """The latest success (row id) per group over every kind of the filter."""
    cols = [table.c[c] for c in ("provider", "event_key")[:width]]
    out: dict[tuple[Any, ...], int] = {}
    last = sorted({g[-1] for g in groups})
    for start in range(0, len(last), 500):
        stmt = (
            sa.select(*cols, sa.func.max(table.c.last_ok_id))
            .where(*_where(table, flt), cols[-1].in_(last[start : start + 500]))
            .group_by(*cols)
        )
        out.update((tuple(r[:width]), int(r[width] or 0)) for r in conn.execute(stmt).all())
    return out


def _groups(rows: Iterable[tuple[Any, Streak]], keys: Sequence[str]) -> dict[tuple[Any, ...], list[Any]]:
    out: dict[tuple[Any, ...], list[Any]] = {}
    for m, s in rows:
        out.setdefault(tuple(m[k] for k in keys), []).append(s)
    return out


def _opt_all(pick: Any, values: Iterable[Any]) -> Any:
    present = [v for v in values if v is not None]
    return pick(present) if present else None


def _recount(
    conn: sa.Connection, flt: DeliveryFilter, provider: str, event_id: str | None, per_event: bool, after: int
) -> tuple[Any, ...] | None:
    where = [*conditions(flt), pd.c.provider == provider, _FAILED, pd.c.id > after]
    if per_event:
        where.append(pd.c.event_id.is_(None) if event_id is None else pd.c.event_id == event_id)
    stmt = sa.select(
        sa.func.max(pd.c.event_type),
        sa.func.count(),
        sa.func.min(pd.c.created_at),
        sa.func.max(pd.c.created_at),
        sa.func.max(pd.c.id),
    ).where(*where)
    row = conn.execute(stmt).one()
    return None if not row[1] else tuple(row)


def _open(table: sa.Table) -> sa.ColumnElement[bool]:
    """``streak_count > 0`` with the 0 written out, as the partial index ``ix_pd_event_streaks_open`` says
    it (a bound parameter would keep SQLite from using that index)."""
    return table.c.streak_count > sa.literal_column("0")


@dataclass(frozen=True)
class NewestStreaks:
    """The ``newest`` failure streaks of a filter, newest first (by ``since``; equal ones in the order of
    ``failure_streaks``: provider, then event id with no event id first), out of ``total``; ``oldest`` is
    the earliest ``since`` of them all (``None`` when there are none)."""

    newest: list[FailureStreak]
    total: int
    oldest: datetime | None


def newest_event_streaks(store: Store, flt: DeliveryFilter, limit: int) -> NewestStreaks | None:
    """The ``limit`` newest per-event failure streaks of a SQL store with aggregates, for a filter on one
    metadata kind and rollback events (the dashboard's rollback alerts); ``None`` for any other store or
    filter, which the caller answers from ``failure_streaks``.

    Two small reads in one snapshot instead of every open streak and its last error: the count and the
    oldest start (the partial index on open streaks, revision 0006), then the newest ``limit`` rows (the
    same index, backwards) with the last error of those rows only."""
    from cavra.store.sql import SqlStore  # here: cavra.store.sql imports this module

    if not isinstance(store, SqlStore) or not store.aggregates:
        return None
    if not kinds_only(flt, event_type_contains=ROLLBACK) or flt.metadata_kinds is None:
        return None
    if len(set(flt.metadata_kinds)) != 1:
        return None  # several kinds merge their streaks (failure_streaks does)
    s = pd_event_streaks
    where = [s.c.metadata_kind == flt.metadata_kinds[0], _open(s)]
    with store._read(snapshot=True) as conn:
        total, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(s.c.streak_since)).where(*where)
        ).one()
        if not total:
            return NewestStreaks([], 0, None)
        text = _ordered if conn.dialect.name == "postgresql" else _plain
        stmt = (
            sa.select(
                s.c.provider,
                s.c.event_key,
                s.c.streak_count,
                s.c.streak_event_type,
                s.c.streak_since,
                s.c.streak_last_at,
                pd.c.error,
            )
            .select_from(s.outerjoin(pd, pd.c.id == s.c.streak_last_id))
            .where(*where)
            .order_by(s.c.streak_since.desc(), text(s.c.provider), text(s.c.event_key))
            .limit(limit)
        )
        rows = conn.execute(stmt).all()
    newest = [
        FailureStreak(
            provider=provider,
            event_id=_event_id(key),
            event_type=event_type,
            count=int(n),
            since=_req(since),
            last_at=_req(last_at),
            last_error=error,
        )
        for provider, key, n, event_type, since, last_at, error in rows
    ]
    return NewestStreaks(newest, int(total), _req(oldest))


def _plain(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return column


def _ordered(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """Text ordered by code point, as Python orders it (PostgreSQL's database collation may not)."""
    return column.collate("C")
