"""The dashboard's rollback alerts with many failing (provider, rollback event) pairs.

SQL stores with aggregates answer them with three small reads (the count, the oldest start and the newest
:data:`MAX_EVENT_ALERTS` of the open streaks, :func:`cavra.store.aggquery.newest_event_streaks`) instead
of reading every open streak. Here the whole dashboard must equal the plain computations (every streak
read and sorted in Python; on SQL also without aggregates, from the index rows alone), and the rollback
alerts must equal a recount of the appended records in this file, on SQLite, PostgreSQL and the JSON file.
The data has ties on the streak start at the 20th place, event ids that differ by case and punctuation
(ordered by code point, whatever the database's collation), a rollback event without an event id,
pending deliveries (which neither count nor end a streak), times out of append order, other kinds and
event types, and streaks ended by a later success.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cavra import history
from cavra.history import MAX_EVENT_ALERTS, dashboard, newest_rollback_streaks
from cavra.store import Store
from cavra.store.aggquery import newest_event_streaks
from cavra.store.base import DeliveryFilter, iso
from cavra.store.sql import SqlStore

from .conftest import make_record

RELEASE = "release-connector-delivery"
INTEGRATION = "integration-delivery"
ROLLBACK = "cavra.release.rollback_execution"
PROMOTION = "cavra.release.promotion_execution"
PROVIDERS = ("webhook", "splunk", "jira")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=2)
ROLLBACKS = DeliveryFilter(metadata_kinds=(RELEASE,), event_type_contains="rollback")
#: event ids whose code-point order differs from a linguistic collation's ("-" < "_" < "a", "B" < "a")
EVENTS = ("evt-b", "evt_a", "Evt-c", "evt.a", "EVT-a", "evt-a", "evt-B", "évt-d")


@dataclass
class Row:
    """One provider delivery as appended, in append (row id) order."""

    kind: str
    provider: str
    event_type: str
    event_id: str | None
    status: str
    created: datetime
    error: str | None


def _append(
    store: Store,
    rows: list[Row],
    kind: str,
    event_type: str,
    event_id: str | None,
    when: datetime,
    items: list[tuple[str, str, str | None]],
) -> None:
    record = make_record(
        event_type=event_type,
        event_id=event_id or "unused",
        providers=[
            {
                "provider": provider,
                "success": status == "delivered",
                "status": status,
                "status_code": 200 if status == "delivered" else 503,
                "attempt_count": 1,
                "error": error,
            }
            for provider, status, error in items
        ],
    )
    if event_id is None:
        record["event_id"] = None
    store.append_delivery(record, metadata_kind=kind, created_at=when)
    rows.extend(Row(kind, p, event_type, event_id, s, when, e) for p, s, e in items)


def _fill(store: Store, rows: list[Row], *, seed: int, events: int, bare: bool = True) -> None:
    """Rollback deliveries for ``events`` event ids (and with ``bare`` no event id and the bare
    :data:`EVENTS`), several failing per provider, and noise around them."""
    rng = random.Random(seed)
    ids: list[str | None] = [f"{rng.choice(EVENTS)}-{n:03d}" for n in range(events)]
    ids += [None, *EVENTS] if bare else []
    for n, event_id in enumerate(ids):
        # a block of events whose streaks all start at one time, the newest: the 20 listed are picked
        # among them by provider and event id alone
        tie = 10 <= n % 40 < 30
        base = T0 + timedelta(minutes=1000 if tie else rng.randint(0, 900))
        for step in range(rng.randint(1, 4)):
            # out of append order too
            when = base if tie else base + timedelta(minutes=rng.choice((0, 0, step, -step)))
            items = []
            for provider in rng.sample(PROVIDERS, rng.randint(1, 3)):
                roll = rng.random()
                status = "delivered" if roll < 0.25 else "pending" if roll < 0.35 else "failed"
                error = None if status == "delivered" else f"HTTP 503 #{rng.randint(1, 99)} " + "x" * 250
                items.append((provider, status, error))
            _append(store, rows, RELEASE, ROLLBACK, event_id, when, items)
        if rng.random() < 0.2:  # the same event in another kind, and a promotion: neither counts here
            _append(store, rows, INTEGRATION, ROLLBACK, event_id, base, [("webhook", "failed", "boom")])
            _append(store, rows, RELEASE, PROMOTION, event_id, base, [("splunk", "failed", "boom")])


def _expected_rollback_alerts(rows: list[Row]) -> list[dict[str, Any]]:
    """The rollback alerts, recounted from the appended rows: the failed deliveries of each (provider,
    event) after its latest success (pending ones neither count nor end it)."""
    streaks: dict[tuple[str, str | None], list[Row]] = {}
    for r in rows:
        if r.kind != RELEASE or "rollback" not in r.event_type:
            continue
        key = (r.provider, r.event_id)
        if r.status == "delivered":
            streaks[key] = []
        elif r.status == "failed":
            streaks.setdefault(key, []).append(r)
    found = sorted(
        ((key, failed) for key, failed in streaks.items() if failed),
        key=lambda kf: (kf[0][0], kf[0][1] is not None, kf[0][1] or ""),
    )
    found.sort(key=lambda kf: min(r.created for r in kf[1]), reverse=True)
    alerts = []
    if len(found) > MAX_EVENT_ALERTS:
        rest = found[MAX_EVENT_ALERTS:]
        alerts.append(
            {
                "level": "critical",
                "code": "rollback_delivery_failed_more",
                "provider": None,
                "message": f"{len(rest)} more rollback execution events were not delivered "
                f"(the {MAX_EVENT_ALERTS} most recent are listed one by one)",
                "since": iso(min(r.created for _, failed in rest for r in failed)),
                "count": len(rest),
                "event_id": None,
                "subject_id": None,
            }
        )
    for (provider, event_id), failed in found[:MAX_EVENT_ALERTS]:
        since = min(r.created for r in failed)
        n = len(failed)
        what = "1 failed delivery" if n == 1 else f"{n} failed deliveries"
        error = failed[-1].error
        alerts.append(
            {
                "level": "critical",
                "code": "rollback_delivery_failed",
                "provider": provider,
                "message": f"rollback execution event {event_id} was not delivered to {provider}: "
                f"{what} since {iso(since)}" + (f"; last error: {error[:200]}" if error else ""),
                "since": iso(since),
                "count": n,
                "event_id": event_id,
                "subject_id": None,
            }
        )
    # the dashboard's order of alerts (stable: equal keys keep the listing order)
    alerts.sort(key=lambda a: (a["since"], a["code"], a["provider"] or ""))
    return alerts


#: what makes an alert actionable (its record and the filtered history), checked apart from the rest
_LINKS = ("delivery_id", "history")


def _rollback_alerts(board: dict[str, Any]) -> list[dict[str, Any]]:
    alerts = [a for a in board["alerts"] if a["code"].startswith("rollback_delivery_failed")]
    for alert in alerts:
        if alert["code"] == "rollback_delivery_failed":  # one event: it links its newest failed record
            assert isinstance(alert.get("delivery_id"), str) and alert["delivery_id"].startswith("dlv_")
    return [{k: v for k, v in a.items() if k not in _LINKS} for a in alerts]


def _untied(board: dict[str, Any]) -> dict[str, Any]:
    """The board with the listed rollback alerts reduced to their starts and counts."""
    listed = [a for a in board["alerts"] if a["code"] == "rollback_delivery_failed"]
    return {
        **board,
        "alerts": [a for a in board["alerts"] if a not in listed],
        "listed": sorted((a["since"], a["count"]) for a in listed),
    }


@contextmanager
def _plain(store: Store, monkeypatch: pytest.MonkeyPatch, *, aggregates: bool) -> Iterator[None]:
    """The dashboard without the fast path: every streak read and sorted in Python (and on SQL without
    ``aggregates``, every figure recomputed from the index rows)."""
    with monkeypatch.context() as m:
        m.setattr(history, "newest_event_streaks", lambda *a: None)
        if isinstance(store, SqlStore):
            m.setattr(store, "aggregates", aggregates)
        yield


def _check(store: Store, rows: list[Row], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    board = dashboard(store, metadata_kinds=[RELEASE], now=NOW)
    assert _rollback_alerts(board) == _expected_rollback_alerts(rows)
    for aggregates in (True, False):
        with _plain(store, monkeypatch, aggregates=aggregates):
            plain = dashboard(store, metadata_kinds=[RELEASE], now=NOW)
        if aggregates or getattr(store, "backend", None) != "postgresql":
            assert plain == board
        else:
            # without aggregates, PostgreSQL's SQL orders a NULL event id last among equally old streaks
            # (SQLite and the aggregates first): the same streaks, but another pick among the tied ones
            assert _untied(plain) == _untied(board)
    every = sorted(store.failure_streaks(ROLLBACKS, per_event=True), key=lambda st: st.since, reverse=True)
    got = newest_rollback_streaks(store, ROLLBACKS)
    assert got.newest == every[:MAX_EVENT_ALERTS]
    assert got.total == len(every)
    assert got.oldest == min((st.since for st in every), default=None)
    fast = newest_event_streaks(store, ROLLBACKS, MAX_EVENT_ALERTS)
    if isinstance(store, SqlStore):
        assert fast == got  # the SQL stores answer from the aggregates, not from every streak
    else:
        assert fast is None
    return board


def test_many_failing_rollback_events_match_the_plain_computation(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[Row] = []
    assert _rollback_alerts(_check(store, rows, monkeypatch)) == []  # no streak at all

    _fill(store, rows, seed=3, events=6, bare=False)  # a few: listed one by one, nothing summed up
    board = _check(store, rows, monkeypatch)
    assert 0 < len(_rollback_alerts(board)) <= MAX_EVENT_ALERTS

    _fill(store, rows, seed=5, events=70)  # many: the newest 20 listed, the rest summed up
    board = _check(store, rows, monkeypatch)
    [more] = [a for a in board["alerts"] if a["code"] == "rollback_delivery_failed_more"]
    assert more["count"] > 2 * MAX_EVENT_ALERTS
    listed = [a for a in board["alerts"] if a["code"] == "rollback_delivery_failed"]
    assert len(listed) == MAX_EVENT_ALERTS
    assert len({a["since"] for a in listed}) == 1  # all tied on the start

    # later successes end some streaks (and new failures open others)
    for provider, event_id in sorted({(r.provider, r.event_id) for r in rows[::3]}, key=str):
        ok = (provider, "delivered", None)
        _append(store, rows, RELEASE, ROLLBACK, event_id, T0 + timedelta(minutes=30), [ok])
    _fill(store, rows, seed=11, events=10)
    _check(store, rows, monkeypatch)


def test_fast_path_is_only_for_one_kind_of_rollback_events(store: Store) -> None:
    rows: list[Row] = []
    _fill(store, rows, seed=2, events=5)
    for flt in (
        DeliveryFilter(metadata_kinds=(RELEASE, INTEGRATION), event_type_contains="rollback"),
        DeliveryFilter(metadata_kinds=None, event_type_contains="rollback"),
        DeliveryFilter(metadata_kinds=(RELEASE,)),
        DeliveryFilter(metadata_kinds=(RELEASE,), event_type_contains="rollback", provider="webhook"),
    ):
        assert newest_event_streaks(store, flt, MAX_EVENT_ALERTS) is None
        every = sorted(store.failure_streaks(flt, per_event=True), key=lambda st: st.since, reverse=True)
        got = newest_rollback_streaks(store, flt)
        assert (got.newest, got.total) == (every[:MAX_EVENT_ALERTS], len(every))
