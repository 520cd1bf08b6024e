"""Delivery history, dashboards and alert rules over the evidence store.

History and dashboards count *provider deliveries* (one per ``deliveries[]`` item of a stored record).
On SQL stores every number is computed by the database (the store's query methods); nothing here loads
the table. Alerts describe the current state, so they clear by themselves:

``provider_delivery_failing``
    a provider whose latest delivery failed: ``count`` consecutive failures ``since`` the first of them;
    warning, critical from ``critical_after`` failures; clears when the provider delivers again.
``rollback_delivery_failed`` (critical)
    a rollback-execution event (event type containing ``rollback``) whose latest delivery to a provider
    failed; clears when that event is delivered to that provider.
``failure_rate_high`` (warning)
    a provider whose failure rate in the window exceeds the threshold.
``export_not_published`` (warning, publication dashboard)
    an endpoint export stored more than ``export_window`` ago with no successful publication delivery.
``queue_backlog``, ``delivery_paused``, ``provider_rate_limited``
    the delivery queue's own health (:mod:`cavra.delivery.health`), on the boards whose kinds they concern.

Each alert names the record it is about (``delivery_id``) and the history filters that show it
(``history``); each provider has a ``state`` that agrees with its alerts (:mod:`cavra.alert_links`). A
rollback alert names the rollback execution (its ``rre_…`` id, ``subject_id``), not the event's hash.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.alert_links import board_queue_alerts, link, provider_states
from cavra.alert_rules import export_alerts, rate_alerts, rollback_alerts, streak_alerts
from cavra.connectors.registry import PROVIDERS, unknown_provider_message
from cavra.errors import InputError
from cavra.store.aggquery import NewestStreaks, newest_event_streaks
from cavra.store.base import (
    Cursor,
    DeliveryFilter,
    ProviderStats,
    Store,
    iso,
    normalize_kinds,
    parse_iso,
    utc,
)

#: per-event rollback alerts listed one by one, at most; the rest are summed up in one alert
MAX_EVENT_ALERTS = 20

CONNECTOR_DASHBOARD = "cavra.release.connector_delivery_dashboard.v1"
PUBLICATION_DASHBOARD = "cavra.release.endpoint_publication_dashboard.v1"
INTEGRATION_DASHBOARD = "cavra.integration.delivery_dashboard.v1"
#: every kind of delivery at once (the console's overview)
DELIVERY_DASHBOARD = "cavra.delivery_dashboard.v1"
MAX_LIMIT = 500
LATEST_FAILURES = 10
_LEVEL_ORDER = {"critical": 0, "warning": 1}


@dataclass(frozen=True)
class HistoryPage:
    """One page of history, newest first, with the total matching the filters and the next page's cursor."""

    items: list[dict[str, Any]]
    total: int
    next_cursor: str | None
    limit: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "count": len(self.items),
            "total": self.total,
            "limit": self.limit,
            "next_cursor": self.next_cursor,
        }


def encode_cursor(cursor: Cursor) -> str:
    raw = json.dumps([iso(cursor.created_at), cursor.row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created, row_id = json.loads(raw)
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise ValueError("row id")
        return Cursor(parse_iso(str(created)), row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        # the value is not quoted back: a pasted credential must not come back in an error
        raise InputError(
            "cursor: not a cursor returned by this history (use the previous page's next_cursor)"
        ) from None


def _when(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def query_history(
    store: Store,
    *,
    metadata_kinds: Sequence[str] | None,
    provider: str | None = None,
    destination: str | None = None,
    integration_id: str | None = None,
    event_type: str | None = None,
    event_id: str | None = None,
    success: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
    offset: int = 0,
    status: str | None = None,
    subject_kind: str | None = None,
    subject_id: str | None = None,
) -> HistoryPage:
    """Provider deliveries matching every given filter, newest first (``since <= created_at < until``).

    ``provider`` is the provider (the type: ``slack``), ``destination`` the destination's name
    (``slack-release``); a destination named after its provider has that name.

    Page with ``cursor`` (the previous page's ``next_cursor``; stable while new deliveries arrive) or
    ``offset``. Naive datetimes are taken as UTC.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"limit: must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise InputError(f"offset: must be 0 or more, got {offset}")
    if provider and provider not in PROVIDERS:  # a typo must not answer "no deliveries"
        raise InputError(f"--provider: {unknown_provider_message(provider)}")
    flt = DeliveryFilter(
        metadata_kinds=normalize_kinds(metadata_kinds),
        provider=provider,
        destination=destination,
        integration_id=integration_id,
        event_type=event_type,
        event_id=event_id,
        success=success,
        status=status,
        subject_kind=subject_kind,
        subject_id=subject_id,
        since=_when(since),
        until=_when(until),
    )
    after = decode_cursor(cursor) if cursor else None
    rows = store.page_provider_deliveries(flt, limit=limit + 1, after=after, offset=offset)
    total = store.count_provider_deliveries(flt)
    page = rows[:limit]
    next_cursor = encode_cursor(Cursor(page[-1].created_at, page[-1].row_id)) if len(rows) > limit else None
    return HistoryPage([r.to_item() for r in page], total, next_cursor, limit)


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _provider_entry(s: ProviderStats, streak: int) -> dict[str, Any]:
    return {
        "provider": s.provider,
        "total": s.total,
        "succeeded": s.succeeded,
        "failed": s.failed,
        "pending": s.pending,
        "attempts": s.attempts,
        "success_rate": _rate(s.succeeded, s.total),
        "last_success_at": iso(s.last_success_at),
        "last_failure_at": iso(s.last_failure_at),
        "failing": streak > 0,
        "consecutive_failures": streak,
    }


def _destination_entry(s: ProviderStats) -> dict[str, Any]:
    return {
        "destination": s.destination,
        "provider": s.provider,
        "total": s.total,
        "succeeded": s.succeeded,
        "failed": s.failed,
        "pending": s.pending,
        "attempts": s.attempts,
        "success_rate": _rate(s.succeeded, s.total),
        "last_success_at": iso(s.last_success_at),
        "last_failure_at": iso(s.last_failure_at),
    }


def newest_rollback_streaks(store: Store, flt: DeliveryFilter) -> NewestStreaks:
    """The :data:`MAX_EVENT_ALERTS` newest per-event failure streaks of ``flt`` (newest first; equal
    starts in the order of ``failure_streaks``), how many there are, and the earliest start of them all.

    A SQL store with aggregates reads only those (:func:`cavra.store.aggquery.newest_event_streaks`);
    otherwise every streak is read and sorted here."""
    fast = newest_event_streaks(store, flt, MAX_EVENT_ALERTS)
    if fast is not None:
        return fast
    every = store.failure_streaks(flt, per_event=True)
    # heapq.nlargest is sorted(..., reverse=True)[:n], equal keys kept in their order
    newest = heapq.nlargest(MAX_EVENT_ALERTS, every, key=lambda st: st.since)
    return NewestStreaks(newest, len(every), min((st.since for st in every), default=None))


def dashboard(
    store: Store,
    *,
    metadata_kinds: Sequence[str] | None,
    schema: str = CONNECTOR_DASHBOARD,
    now: datetime | None = None,
    window: timedelta = timedelta(hours=24),
    failure_rate_threshold: float = 0.2,
    export_window: timedelta = timedelta(minutes=15),
    critical_after: int = 3,
) -> dict[str, Any]:
    """The delivery dashboard (``schema``): totals, per provider, per destination, per event type, latest
    failures, alerts (the rules are :mod:`cavra.alert_rules`).

    With ``schema=PUBLICATION_DASHBOARD`` it also counts endpoint exports and warns about those stored
    more than ``export_window`` before ``now`` that no delivery has published yet.
    """
    if not 0 <= failure_rate_threshold <= 1:
        raise InputError(f"failure_rate_threshold: must be between 0 and 1, got {failure_rate_threshold}")
    current = utc(now) if now is not None else datetime.now(UTC)
    base = DeliveryFilter(metadata_kinds=normalize_kinds(metadata_kinds))
    in_window = base.narrowed(since=current - window, until=current + timedelta(microseconds=1))

    stats = store.provider_stats(base)
    streaks = {s.provider: s for s in store.failure_streaks(base)}
    window_stats = store.provider_stats(in_window)
    alerts = streak_alerts(streaks.values(), critical_after)
    rollback = newest_rollback_streaks(store, base.narrowed(event_type_contains="rollback"))
    alerts += rollback_alerts(store, base, rollback, listed=MAX_EVENT_ALERTS)
    alerts += rate_alerts(window_stats, window, failure_rate_threshold)

    result: dict[str, Any] = {"schema_version": schema, "generated_at": iso(current)}
    if schema == PUBLICATION_DASHBOARD:
        stored, published = store.export_counts()
        alerts += export_alerts(
            store.unpublished_exports(stored_before=current - export_window), export_window
        )
        result["exports"] = {"total": stored, "published": published, "unpublished": stored - published}

    alerts.extend(board_queue_alerts(store, base.metadata_kinds, {s.provider for s in stats}, now=current))
    for alert in alerts:
        if "history" not in alert:
            link(store, base, alert, window_since=current - window)
    alerts.sort(key=lambda a: (_LEVEL_ORDER[a["level"]], a["since"], a["code"], a["provider"] or ""))
    providers = [
        _provider_entry(s, streaks[s.provider].count if s.provider in streaks else 0)
        for s in sorted(stats, key=lambda s: s.provider)
    ]
    provider_states(providers, alerts)
    latest = store.page_provider_deliveries(base.narrowed(status="failed"), limit=LATEST_FAILURES)
    result.update(
        metadata_kinds=None if base.metadata_kinds is None else list(base.metadata_kinds),
        status=alerts[0]["level"] if alerts else "ok",
        totals=_totals(stats),
        success_rate=_rate(sum(s.succeeded for s in stats), sum(s.total for s in stats)),
        window=_window(window_stats, current, window, failure_rate_threshold),
        providers=providers,
        destinations=[_destination_entry(s) for s in store.destination_stats(base)],
        event_types=[
            {"event_type": e.event_type, "total": e.total, "succeeded": e.succeeded, "failed": e.failed}
            for e in store.event_type_stats(base)
        ],
        latest_failures=[r.to_item() for r in latest],
        alerts=alerts,
    )
    return result


def _totals(stats: Sequence[ProviderStats]) -> dict[str, int]:
    return {
        "deliveries": sum(s.total for s in stats),
        "succeeded": sum(s.succeeded for s in stats),
        "failed": sum(s.failed for s in stats),
        "pending": sum(s.pending for s in stats),
        "attempts": sum(s.attempts for s in stats),
        "providers": len(stats),
    }


def _window(
    window_stats: Sequence[ProviderStats], current: datetime, window: timedelta, threshold: float
) -> dict[str, Any]:
    w_total = sum(s.total for s in window_stats)
    w_failed = sum(s.failed for s in window_stats)
    return {
        "since": iso(current - window),
        "until": iso(current),
        "seconds": int(window.total_seconds()),
        "deliveries": w_total,
        "failed": w_failed,
        "failure_rate": _rate(w_failed, w_total),
        "failure_rate_threshold": threshold,
    }
