"""SQL for history and dashboards: filters, keyset pages and aggregates, computed by the database.

Every query runs on the ``provider_deliveries`` index with the filter's conditions; nothing here loads
the table into Python. Ordering for pages is (created_at, id) descending; "after the latest success" is
decided by ``id``, which follows insertion (append) order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cavra.store.base import (
    Cursor,
    DeliveryFilter,
    EventTypeStats,
    FailureStreak,
    ProviderDeliveryRow,
    ProviderStats,
    UnpublishedExport,
    parse_iso,
    utc,
)
from cavra.store.schema import provider_deliveries as pd
from cavra.store.schema import records

_FAILED = sa.and_(sa.not_(pd.c.success), pd.c.status != "pending")
_PENDING = sa.and_(sa.not_(pd.c.success), pd.c.status == "pending")
_EXPORT = "endpoint_export"


def conditions(flt: DeliveryFilter, table: sa.FromClause = pd) -> list[sa.ColumnElement[bool]]:
    """WHERE conditions of a filter (on the index table or an alias of it)."""
    c = table.c
    out: list[sa.ColumnElement[bool]] = []
    if flt.metadata_kinds is not None:
        out.append(c.metadata_kind.in_(flt.metadata_kinds))
    for name in (
        "provider",
        "destination",
        "integration_id",
        "event_type",
        "event_id",
        "status",
        "subject_kind",
        "subject_id",
    ):
        value = getattr(flt, name)
        if value is not None:
            out.append(c[name] == value)
    if flt.event_type_contains is not None:
        out.append(c.event_type.contains(flt.event_type_contains, autoescape=True))
    if flt.success is not None:
        out.append(c.success.is_(sa.true()) if flt.success else c.success.is_(sa.false()))
    if flt.since is not None:
        out.append(c.created_at >= flt.since)
    if flt.until is not None:
        out.append(c.created_at < flt.until)
    return out


def count_stmt(flt: DeliveryFilter) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(pd).where(*conditions(flt))


def page_stmt(flt: DeliveryFilter, limit: int, after: Cursor | None, offset: int = 0) -> sa.Select[Any]:
    where = conditions(flt)
    if after is not None:
        # the plain bound (created_at <= cursor) lets both planners start the index range at the cursor
        # instead of filtering every newer row (a deep page at 1,000,000 records: ~30 ms → ~4 ms)
        where.append(pd.c.created_at <= after.created_at)
        where.append(
            sa.or_(
                pd.c.created_at < after.created_at,
                sa.and_(pd.c.created_at == after.created_at, pd.c.id < after.row_id),
            )
        )
    stmt = sa.select(pd).where(*where).order_by(pd.c.created_at.desc(), pd.c.id.desc()).limit(limit)
    return stmt.offset(offset) if offset else stmt


def to_row(m: sa.RowMapping) -> ProviderDeliveryRow:
    return ProviderDeliveryRow(
        row_id=int(m["id"]),
        delivery_id=m["delivery_id"],
        provider=m["provider"],
        success=bool(m["success"]),
        status=m["status"],
        status_code=m["status_code"],
        attempt_count=int(m["attempt_count"]),
        event_type=m["event_type"],
        event_id=m["event_id"],
        metadata_kind=m["metadata_kind"],
        integration_id=m["integration_id"],
        subject_kind=m["subject_kind"],
        subject_id=m["subject_id"],
        created_at=m["created_at"],
        error=m["error"],
        destination=m["destination"],
    )


def _count_if(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)


def provider_stats_stmt(flt: DeliveryFilter) -> sa.Select[Any]:
    return (
        sa.select(
            pd.c.provider,
            sa.func.count(),
            _count_if(pd.c.success.is_(sa.true())),
            _count_if(_FAILED),
            _count_if(_PENDING),
            sa.func.coalesce(sa.func.sum(pd.c.attempt_count), 0),
            sa.func.max(sa.case((pd.c.success.is_(sa.true()), pd.c.created_at))),
            sa.func.max(sa.case((_FAILED, pd.c.created_at))),
            sa.func.min(sa.case((_FAILED, pd.c.created_at))),
        )
        .where(*conditions(flt))
        .group_by(pd.c.provider)
        .order_by(pd.c.provider)
    )


def destination_stats_stmt(flt: DeliveryFilter) -> sa.Select[Any]:
    """:func:`provider_stats_stmt` per destination, with the greatest provider name of its rows first."""
    return (
        sa.select(
            sa.func.max(pd.c.provider),
            sa.func.count(),
            _count_if(pd.c.success.is_(sa.true())),
            _count_if(_FAILED),
            _count_if(_PENDING),
            sa.func.coalesce(sa.func.sum(pd.c.attempt_count), 0),
            sa.func.max(sa.case((pd.c.success.is_(sa.true()), pd.c.created_at))),
            sa.func.max(sa.case((_FAILED, pd.c.created_at))),
            sa.func.min(sa.case((_FAILED, pd.c.created_at))),
            pd.c.destination,
        )
        .where(*conditions(flt))
        .group_by(pd.c.destination)
        .order_by(pd.c.destination)
    )


def provider_stats(rows: Sequence[Sequence[Any]]) -> list[ProviderStats]:
    return [
        ProviderStats(
            str(r[0]),
            int(r[1]),
            int(r[2]),
            int(r[3]),
            int(r[4]),
            int(r[5]),
            _ts(r[6]),
            _ts(r[7]),
            _ts(r[8]),
            None if len(r) < 10 else str(r[9]),
        )
        for r in rows
    ]


def event_type_stats_stmt(flt: DeliveryFilter) -> sa.Select[Any]:
    return (
        sa.select(
            pd.c.event_type, sa.func.count(), _count_if(pd.c.success.is_(sa.true())), _count_if(_FAILED)
        )
        .where(*conditions(flt))
        .group_by(pd.c.event_type)
        .order_by(sa.func.count().desc(), sa.case((pd.c.event_type.is_(None), 0), else_=1), pd.c.event_type)
    )


def event_type_stats(rows: Sequence[Sequence[Any]]) -> list[EventTypeStats]:
    return [EventTypeStats(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]


def streaks_stmt(flt: DeliveryFilter, per_event: bool) -> sa.Select[Any]:
    """Per group: failed rows after the group's latest success (pending rows neither count nor reset)."""
    ok = pd.alias("ok")
    keys = [ok.c.provider, ok.c.event_id] if per_event else [ok.c.provider]
    last_ok = (
        sa.select(*keys, sa.func.max(ok.c.id).label("last_ok_id"))
        .where(*conditions(flt, ok), ok.c.success.is_(sa.true()))
        .group_by(*keys)
        .subquery("last_ok")
    )
    join_on = [last_ok.c.provider == pd.c.provider]
    group = [pd.c.provider]
    if per_event:
        join_on.append(last_ok.c.event_id.is_not_distinct_from(pd.c.event_id))
        group.append(pd.c.event_id)
    return (
        sa.select(
            *group,
            sa.func.max(pd.c.event_type),
            sa.func.count(),
            sa.func.min(pd.c.created_at),
            sa.func.max(pd.c.created_at),
            sa.func.max(pd.c.id),
        )
        .select_from(pd.outerjoin(last_ok, sa.and_(*join_on)))
        .where(*conditions(flt), _FAILED, pd.c.id > sa.func.coalesce(last_ok.c.last_ok_id, 0))
        .group_by(*group)
        .order_by(*group)
    )


def errors_stmt(row_ids: Sequence[int]) -> sa.Select[Any]:
    return sa.select(pd.c.id, pd.c.error).where(pd.c.id.in_(row_ids))


def streaks(
    rows: Sequence[Sequence[Any]], per_event: bool, errors: dict[int, str | None]
) -> list[FailureStreak]:
    out = []
    for r in rows:
        provider, event_id, rest = (r[0], r[1], r[2:]) if per_event else (r[0], None, r[1:])
        event_type, count, since, last_at, last_row = rest
        out.append(
            FailureStreak(
                provider=str(provider),
                event_id=event_id,
                event_type=event_type,
                count=int(count),
                since=_req(since),
                last_at=_req(last_at),
                last_error=errors.get(int(last_row)),
            )
        )
    return out


def _delivered(record_id: sa.ColumnElement[Any]) -> sa.Exists:
    return sa.exists().where(
        pd.c.subject_kind == _EXPORT, pd.c.subject_id == record_id, pd.c.success.is_(sa.true())
    )


def unpublished_stmt(stored_before: datetime) -> sa.Select[Any]:
    failures = (
        sa.select(sa.func.count())
        .where(pd.c.subject_kind == _EXPORT, pd.c.subject_id == records.c.record_id, _FAILED)
        .scalar_subquery()
    )
    last_error = (
        sa.select(pd.c.error)
        .where(pd.c.subject_kind == _EXPORT, pd.c.subject_id == records.c.record_id, _FAILED)
        .order_by(pd.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        sa.select(records.c.record_id, records.c.created_at, failures, last_error)
        .where(
            records.c.kind == _EXPORT,
            records.c.created_at < stored_before,
            sa.not_(_delivered(records.c.record_id)),
        )
        .order_by(records.c.created_at, records.c.record_id)
    )


def unpublished(rows: Sequence[Sequence[Any]]) -> list[UnpublishedExport]:
    return [UnpublishedExport(str(r[0]), _req(r[1]), int(r[2] or 0), r[3]) for r in rows]


def export_counts_stmt() -> sa.Select[Any]:
    return sa.select(sa.func.count(), _count_if(_delivered(records.c.record_id))).where(
        records.c.kind == _EXPORT
    )


def _ts(value: Any) -> datetime | None:
    """Aggregates (max over a CASE) lose the column type on SQLite; restore aware UTC datetimes."""
    if value is None:
        return None
    return utc(value) if isinstance(value, datetime) else parse_iso(str(value))


def _req(value: Any) -> datetime:
    ts = _ts(value)
    assert ts is not None
    return ts
