"""History and dashboard queries over in-memory rows: the JSON-file backend's twin of :mod:`sqlquery`.

The JSON file is read whole anyway, so its queries run in Python over the same
:class:`~cavra.store.base.ProviderDeliveryRow` values the SQL backend returns, with the same semantics
(filters, (created_at, row_id) ordering, "failed" = not successful and not pending, streaks after the
latest success by insertion order). The shared test suite holds the two to one behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from cavra.store.base import (
    Cursor,
    DeliveryFilter,
    EventTypeStats,
    FailureStreak,
    ProviderDeliveryRow,
    ProviderStats,
    UnpublishedExport,
    parse_iso,
)
from cavra.store.document import MAX_PROVIDERS, index_rows

_EXPORT = "endpoint_export"


def rows_of(documents: Iterable[Mapping[str, Any]]) -> list[ProviderDeliveryRow]:
    """Index rows of stored documents, in insertion order (row id = sequence * 1000 + position)."""
    out: list[ProviderDeliveryRow] = []
    for doc in documents:
        try:
            created = parse_iso(str(doc.get("created_at")))
            sequence = int(doc.get("sequence", 0))
        except (TypeError, ValueError):
            continue  # a damaged document is reported by verify_chain
        for r in index_rows(doc, created):
            out.append(
                ProviderDeliveryRow(
                    row_id=sequence * (MAX_PROVIDERS + 1) + int(r["position"]),
                    delivery_id=str(r["delivery_id"]),
                    provider=r["provider"],
                    success=r["success"],
                    status=r["status"],
                    status_code=r["status_code"],
                    attempt_count=r["attempt_count"],
                    event_type=r["event_type"],
                    event_id=r["event_id"],
                    metadata_kind=str(r["metadata_kind"]),
                    integration_id=r["integration_id"],
                    subject_kind=r["subject_kind"],
                    subject_id=r["subject_id"],
                    created_at=created,
                    error=r["error"],
                    destination=r["destination"],
                )
            )
    return out


def matches(row: ProviderDeliveryRow, flt: DeliveryFilter) -> bool:
    if flt.metadata_kinds is not None and row.metadata_kind not in flt.metadata_kinds:
        return False
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
        wanted = getattr(flt, name)
        if wanted is not None and getattr(row, name) != wanted:
            return False
    if flt.event_type_contains is not None and flt.event_type_contains not in (row.event_type or ""):
        return False
    if flt.success is not None and row.success != flt.success:
        return False
    if flt.since is not None and row.created_at < flt.since:
        return False
    return not (flt.until is not None and row.created_at >= flt.until)


def select(rows: Iterable[ProviderDeliveryRow], flt: DeliveryFilter) -> list[ProviderDeliveryRow]:
    return [r for r in rows if matches(r, flt)]


def page(
    rows: Sequence[ProviderDeliveryRow], limit: int, after: Cursor | None, offset: int = 0
) -> list[ProviderDeliveryRow]:
    ordered = sorted(rows, key=lambda r: (r.created_at, r.row_id), reverse=True)
    if after is not None:
        key = (after.created_at, after.row_id)
        ordered = [r for r in ordered if (r.created_at, r.row_id) < key]
    return ordered[offset : offset + limit]


def provider_stats(rows: Iterable[ProviderDeliveryRow]) -> list[ProviderStats]:
    groups: dict[str, list[ProviderDeliveryRow]] = {}
    for r in rows:
        groups.setdefault(r.provider, []).append(r)
    return [_stats(name, g) for name, g in sorted(groups.items())]


def destination_stats(rows: Iterable[ProviderDeliveryRow]) -> list[ProviderStats]:
    """Per destination; ``provider`` is the greatest provider name among its rows (one, in practice)."""
    groups: dict[str, list[ProviderDeliveryRow]] = {}
    for r in rows:
        groups.setdefault(r.destination or r.provider, []).append(r)
    return [
        replace(_stats(max(r.provider for r in g), g), destination=name) for name, g in sorted(groups.items())
    ]


def _stats(name: str, g: Sequence[ProviderDeliveryRow]) -> ProviderStats:
    return ProviderStats(
        provider=name,
        total=len(g),
        succeeded=sum(r.success for r in g),
        failed=sum(r.failed for r in g),
        pending=sum(not r.success and not r.failed for r in g),
        attempts=sum(r.attempt_count for r in g),
        last_success_at=max((r.created_at for r in g if r.success), default=None),
        last_failure_at=max((r.created_at for r in g if r.failed), default=None),
        first_failure_at=min((r.created_at for r in g if r.failed), default=None),
    )


def event_type_stats(rows: Iterable[ProviderDeliveryRow]) -> list[EventTypeStats]:
    groups: dict[str | None, list[ProviderDeliveryRow]] = {}
    for r in rows:
        groups.setdefault(r.event_type, []).append(r)
    stats = [
        EventTypeStats(name, len(g), sum(r.success for r in g), sum(r.failed for r in g))
        for name, g in groups.items()
    ]
    return sorted(stats, key=lambda s: (-s.total, s.event_type is not None, s.event_type or ""))


def failure_streaks(rows: Iterable[ProviderDeliveryRow], *, per_event: bool) -> list[FailureStreak]:
    groups: dict[tuple[str, str | None], list[ProviderDeliveryRow]] = {}
    for r in sorted(rows, key=lambda r: r.row_id):
        groups.setdefault((r.provider, r.event_id if per_event else None), []).append(r)
    out = []
    for (provider, event_id), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        last_ok = max((i for i, r in enumerate(g) if r.success), default=-1)
        failed = [r for r in g[last_ok + 1 :] if r.failed]
        if failed:
            out.append(
                FailureStreak(
                    provider=provider,
                    event_id=event_id,
                    event_type=max((r.event_type for r in failed if r.event_type is not None), default=None),
                    count=len(failed),
                    since=min(r.created_at for r in failed),
                    last_at=max(r.created_at for r in failed),
                    last_error=failed[-1].error,
                )
            )
    return out


def unpublished_exports(
    exports: Iterable[tuple[str, datetime]], rows: Iterable[ProviderDeliveryRow], *, stored_before: datetime
) -> list[UnpublishedExport]:
    delivered: set[str] = set()
    failures: dict[str, list[ProviderDeliveryRow]] = {}
    for r in sorted(rows, key=lambda r: r.row_id):
        if r.subject_kind != _EXPORT or r.subject_id is None:
            continue
        if r.success:
            delivered.add(r.subject_id)
        elif r.failed:
            failures.setdefault(r.subject_id, []).append(r)
    out = [
        UnpublishedExport(
            export_id,
            stored_at,
            len(failures.get(export_id, [])),
            failures[export_id][-1].error if export_id in failures else None,
        )
        for export_id, stored_at in exports
        if stored_at < stored_before and export_id not in delivered
    ]
    return sorted(out, key=lambda e: (e.stored_at, e.export_id))


def export_counts(export_ids: Iterable[str], rows: Iterable[ProviderDeliveryRow]) -> tuple[int, int]:
    delivered = {r.subject_id for r in rows if r.subject_kind == _EXPORT and r.success}
    ids = list(export_ids)
    return len(ids), sum(1 for i in ids if i in delivered)
