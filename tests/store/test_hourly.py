"""Hourly counts kept on append (revision 0010) give the trends exactly what the index gives.

The mixed appends of ``test_aggregates`` (kinds, providers, destinations, pending, config errors, times out
of order, worker completion batches) are counted per bucket two ways on SQLite and PostgreSQL: by the store
(``pd_hourly``) and by the index (:meth:`Store.bucket_counts`' default, one ``provider_stats`` per bucket).
Revision 0010's backfill must give the same rows as the appends.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from cavra.store import hourly
from cavra.store.base import DeliveryFilter, Store
from cavra.store.schema import pd_hourly
from cavra.store.sql import SqlStore

from .conftest import Target
from .test_aggregates import KINDS, PROVIDERS, T0, _fill, _recount

STEPS = [(timedelta(hours=1), 24), (timedelta(hours=6), 6), (timedelta(days=1), 3)]


def _filters() -> list[DeliveryFilter]:
    out = [DeliveryFilter(), DeliveryFilter(metadata_kinds=KINDS[:2])]
    out += [DeliveryFilter(provider=p) for p in PROVIDERS]
    out += [DeliveryFilter(destination=d) for d in ("webhook", "webhook-b", "sentinel")]
    out += [DeliveryFilter(metadata_kinds=(KINDS[1],), provider="splunk")]
    return out


def test_hourly_counts_equal_the_index_per_bucket(sql_target: Target) -> None:
    store = sql_target.open()
    assert isinstance(store, SqlStore)
    with store:
        _fill(store, seed=11, n=250)
        start = T0 - timedelta(hours=12)
        checked = 0
        for flt in _filters():
            for step, count in STEPS:
                fast = store.bucket_counts(flt, start=start, step=step, count=count)
                slow = Store.bucket_counts(store, flt, start=start, step=step, count=count)
                assert fast == slow, (flt, step)
                checked += sum(t for t, _s, _f in fast)
        assert checked > 0
        # a filter the hourly table cannot answer (success) falls back to the index, same answer
        odd = DeliveryFilter(provider="webhook", success=False)
        assert store.bucket_counts(
            odd, start=start, step=timedelta(hours=1), count=24
        ) == Store.bucket_counts(store, odd, start=start, step=timedelta(hours=1), count=24)


def test_the_backfill_gives_the_rows_the_appends_gave(sql_target: Target) -> None:
    store = sql_target.open()
    assert isinstance(store, SqlStore)
    with store:
        _fill(store, seed=5, n=120)
        order = [pd_hourly.c[c] for c in ("hour", "metadata_kind", "provider", "destination")]
        with store.engine.connect() as conn:
            appended = conn.execute(sa.select(pd_hourly).order_by(*order)).all()
        with store.engine.begin() as conn:
            counted = hourly.rebuild(conn, batch=37)
            rebuilt = conn.execute(sa.select(pd_hourly).order_by(*order)).all()
        assert counted > 120 and appended == rebuilt


def test_a_destinations_streak_from_its_totals_equals_the_index(sql_target: Target) -> None:
    """The trends' outage of one destination (``pd_destination_totals``) is the index's streak, over one
    kind or several (a kind delivered since ends another kind's older streak)."""
    store = sql_target.open()
    assert isinstance(store, SqlStore)
    with store:
        _fill(store, seed=23, n=200)
        checked = 0
        for kinds in (None, KINDS[:1], KINDS[:2], KINDS):
            for name in ("webhook", "webhook-b", "splunk", "slack-b", "sentinel", "nothing"):
                flt = DeliveryFilter(metadata_kinds=kinds, destination=name)
                with store.engine.connect() as conn:
                    fast = hourly.destination_streak(conn, flt)
                if fast is None:
                    continue  # a streak cut in two: the store asks the index (as the recount does)
                assert fast == _recount(store, flt)["streaks"], (kinds, name)
                checked += 1
        assert checked >= 12
