"""Aggregates kept on append answer the dashboard exactly as a full recount of the index does.

Mixed appends (several kinds and providers, successes, failures, pending, multi-provider records, config
errors, rollback events, times out of order, single appends and worker completion batches) are counted
two ways on SQLite and PostgreSQL: by the store (aggregates) and by the SQL over ``provider_deliveries``
(:mod:`cavra.store.sqlquery`). Revision 0005's backfill must give the same aggregate rows as the appends.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cavra.history import dashboard
from cavra.store import open_store
from cavra.store import sqlquery as q
from cavra.store.aggregates import rebuild
from cavra.store.base import DeliveryFilter
from cavra.store.jobs import SUCCEEDED, JobOutcome, NewJob
from cavra.store.schema import pd_destination_totals, pd_event_streaks, pd_event_type_totals, pd_totals
from cavra.store.sql import SqlStore

from .conftest import Target, make_record

KINDS = ("release-connector-delivery", "integration-delivery", "endpoint-management-publication-delivery")
PROVIDERS = ("webhook", "splunk", "slack", "jira")
TYPES = ("cavra.release.promotion_execution", "cavra.release.rollback_execution", "cavra.export.published")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _item(rng: random.Random, provider: str) -> dict[str, Any]:
    roll = rng.random()
    success = roll < 0.5
    status = "delivered" if success else ("pending" if roll > 0.9 else "failed")
    # a second destination of the provider, or (records written before destinations) none: the provider's
    named = rng.choice((None, provider, f"{provider}-b"))
    return {
        "provider": provider,
        **({} if named is None else {"destination": named}),
        "success": success,
        "status": status,
        "status_code": 200 if success else 503,
        "attempt_count": rng.randint(0, 3),
        "error": None if success else f"HTTP 503 #{rng.randint(1, 9)}",
    }


def _record(rng: random.Random) -> dict[str, Any]:
    providers = rng.sample(PROVIDERS, rng.choice((1, 1, 1, 2)))
    record = make_record(
        event_type=rng.choice(TYPES),
        event_id=f"evt-{rng.randint(1, 6)}",
        providers=[_item(rng, p) for p in providers],
    )
    if rng.random() < 0.05:  # a provider whose connector could not be loaded: indexed as failed
        record["errors"] = [{"provider": "sentinel", "error": "not configured"}]
    if rng.random() < 0.03:
        record["event_type"] = None
    return record


def _fill(store: SqlStore, seed: int, n: int) -> None:
    rng = random.Random(seed)
    for i in range(n):
        when = T0 + timedelta(minutes=rng.randint(-600, 600))  # not in append order
        store.append_delivery(_record(rng), metadata_kind=rng.choice(KINDS), created_at=when)
        if i % 25 == 0:  # a worker's completion batch: several records in one transaction
            jobs = [
                NewJob(
                    f"k-{seed}-{i}-{j}",
                    rng.choice(KINDS),
                    rng.choice(PROVIDERS),
                    {"event": {"event_id": f"e{j}"}},
                )
                for j in range(4)
            ]
            made = store.enqueue_jobs(jobs)
            store.claim_jobs("w", limit=10, lease_seconds=60, job_ids=[e.job.id for e in made])
            store.complete_jobs("w", [(e.job.id, _record(rng), JobOutcome(SUCCEEDED)) for e in made])


def _recount(store: SqlStore, flt: DeliveryFilter, per_event: bool = False) -> dict[str, Any]:
    with store.engine.connect() as conn:
        rows = conn.execute(q.streaks_stmt(flt, per_event)).all()
        errors = {int(i): e for i, e in conn.execute(q.errors_stmt([int(r[-1]) for r in rows] or [0])).all()}
        return {
            "providers": q.provider_stats(conn.execute(q.provider_stats_stmt(flt)).all()),
            "destinations": q.provider_stats(conn.execute(q.destination_stats_stmt(flt)).all()),
            "types": q.event_type_stats(conn.execute(q.event_type_stats_stmt(flt)).all()),
            "streaks": sorted(q.streaks(rows, per_event, errors), key=_streak_key),
            "count": int(conn.execute(q.count_stmt(flt)).scalar_one()),
        }


def _streak_key(s: Any) -> tuple[str, bool, str]:
    return (s.provider, s.event_id is not None, s.event_id or "")


def _answers(store: SqlStore, flt: DeliveryFilter, per_event: bool = False) -> dict[str, Any]:
    return {
        "providers": store.provider_stats(flt),
        "destinations": store.destination_stats(flt),
        "types": store.event_type_stats(flt),
        "streaks": sorted(store.failure_streaks(flt, per_event=per_event), key=_streak_key),
        "count": store.count_provider_deliveries(flt),
    }


FILTERS = [
    DeliveryFilter(),
    DeliveryFilter(metadata_kinds=(KINDS[0],)),
    DeliveryFilter(metadata_kinds=(KINDS[1],)),
    DeliveryFilter(metadata_kinds=KINDS[:2]),
    DeliveryFilter(metadata_kinds=KINDS),
]


def test_aggregates_equal_a_full_recount_after_mixed_appends(sql_target: Target) -> None:
    store = sql_target.open()
    assert isinstance(store, SqlStore)
    with store:
        _fill(store, seed=7, n=300)
        for flt in FILTERS:
            assert _answers(store, flt) == _recount(store, flt)
            rollback = flt.narrowed(event_type_contains="rollback")
            assert (
                _answers(store, rollback, per_event=True)["streaks"]
                == _recount(store, rollback, True)["streaks"]
            )
            for provider in PROVIDERS:
                for success in (None, True, False):
                    narrowed = flt.narrowed(provider=provider, success=success)
                    assert store.count_provider_deliveries(narrowed) == _recount(store, narrowed)["count"]
            for name in ("webhook", "webhook-b"):
                narrowed = flt.narrowed(destination=name)
                assert store.count_provider_deliveries(narrowed) == _recount(store, narrowed)["count"]
        board = dashboard(store, metadata_kinds=list(KINDS[:2]), now=T0)
        assert {d["destination"] for d in board["destinations"]} >= {"webhook", "webhook-b", "sentinel"}
        assert board["totals"]["deliveries"] == sum(s.total for s in _recount(store, FILTERS[3])["providers"])
        assert any(a["code"] == "provider_delivery_failing" for a in board["alerts"])


def test_streaks_over_kinds_count_only_failures_after_the_latest_success_of_any(sql_store: SqlStore) -> None:
    """Kind A fails, kind B delivers, kind A fails again: the streak over both kinds is the last failure."""
    a, b = KINDS[0], KINDS[1]
    for minute, kind, ok in ((1, a, False), (2, a, False), (3, b, True), (4, a, False), (5, b, False)):
        rec = make_record("splunk", success=ok)
        sql_store.append_delivery(rec, metadata_kind=kind, created_at=T0 + timedelta(minutes=minute))
    both = DeliveryFilter(metadata_kinds=(a, b))
    (streak,) = sql_store.failure_streaks(both)
    assert (streak.count, streak.since) == (2, T0 + timedelta(minutes=4))
    assert sql_store.failure_streaks(both) == _recount(sql_store, both)["streaks"]
    (only_a,) = sql_store.failure_streaks(DeliveryFilter(metadata_kinds=(a,)))
    assert only_a.count == 3


def _aggregate_rows(store: SqlStore) -> dict[str, list[Any]]:
    with store.engine.connect() as conn:
        return {
            t.name: sorted(tuple(r) for r in conn.execute(sa.select(t)).all())
            for t in (pd_totals, pd_event_type_totals, pd_event_streaks, pd_destination_totals)
        }


def test_the_backfill_builds_what_the_appends_kept(sql_target: Target) -> None:
    with open_store(sql_target.url) as store:
        assert isinstance(store, SqlStore)
        _fill(store, seed=11, n=120)
        kept = _aggregate_rows(store)
        assert kept["pd_totals"] and kept["pd_event_streaks"] and kept["pd_destination_totals"]
        with store.engine.begin() as conn:
            assert rebuild(conn) > 120
        assert _aggregate_rows(store) == kept
        assert store.verify_chain().ok
