"""What an operator needs beside the evidence: where each failure stands now, the queue, measured health,
and the values a search can match.

* :func:`with_lifecycle`: per failed history item, whether its event was **delivered later** (a newer
  successful delivery of the same event to the same provider), is **retrying** (its outbox job is queued,
  with the next attempt's time, or running), is **dead** (a dead letter) or has **failed** for good.
* :func:`unresolved_first`: latest failures with the unresolved ones first.
* :func:`queue_overview`: jobs per state, the queued jobs by next run, running jobs, dead letters, and
  the providers' breakers.
* :func:`integration_health`: health measured from an integration's recent deliveries and its provider's
  breaker, to show beside the declared ``health_status``.
* :func:`search_values`: the providers and event types the store holds (for prefix search).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.governance.pause import pause_view
from cavra.store import Store
from cavra.store.base import DeliveryFilter, iso, normalize_kinds, parse_iso
from cavra.store.jobs import DEAD, FAILED, HALF_OPEN, JOB_STATES, OPEN, QUEUED, RUNNING, SUCCEEDED, JobFilter

#: how far back measured health looks
HEALTH_WINDOW = timedelta(hours=24)
#: failure rate (in the window) from which an integration is "degraded"
DEGRADED_RATE = 0.2
RESOLVED = ("delivered", "delivered_later")
#: an event with at most this many provider deliveries has them all read by its event id
FEW = 100


def _later_success(store: Store, item: Mapping[str, Any]) -> dict[str, Any] | None:
    """A newer successful delivery of the item's event to its provider (a replay, a new request).

    The event's deliveries are counted first by the ``event_id`` index alone (an event has few); only
    when there is more than this one is the newest success looked up."""
    event_id, provider = item.get("event_id"), item.get("provider")
    if not event_id or not provider:
        return None
    by_event = DeliveryFilter(event_id=str(event_id))
    count = store.count_provider_deliveries(by_event)
    if count <= 1:
        return None
    if count <= FEW:  # the event's rows by its own index, picked here (a planner may choose another index)
        rows = store.page_provider_deliveries(by_event, limit=count)
        later = [r for r in rows if r.provider == provider and r.success][:1]  # newest first
    else:
        narrowed = by_event.narrowed(provider=str(provider), success=True)
        later = store.page_provider_deliveries(narrowed, limit=1)
    created = item.get("created_at")
    if later and (not isinstance(created, str) or later[0].created_at > parse_iso(created)):
        row = later[0]
        return {"state": "delivered_later", "at": iso(row.created_at), "delivery_id": row.delivery_id}
    return None


def _lifecycle(store: Store, item: Mapping[str, Any]) -> dict[str, Any]:
    if item.get("success"):
        return {"state": "delivered"}
    doc = store.get_delivery(str(item.get("delivery_id")))
    job_id = ((doc or {}).get("job") or {}).get("job_id")
    job = store.get_job(job_id) if isinstance(job_id, str) else None
    if job is not None and job.state == SUCCEEDED:  # a later run of the same job delivered it
        return {"state": "delivered_later", "delivery_id": job.delivery_id, "job_id": job.id}
    if job is not None and job.state == QUEUED:
        return {"state": "retrying", "at": iso(job.run_after), "job_id": job.id}
    if job is not None and job.state == RUNNING:
        return {"state": "running", "job_id": job.id}
    later = _later_success(store, item)
    if later is not None:
        return later
    if job is None:
        return {"state": "failed"}
    return {"state": "dead" if job.state == DEAD else "failed", "job_id": job.id}


def with_lifecycle(store: Store, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The items, each with ``lifecycle``: ``{"state", "at"?, "delivery_id"?, "job_id"?}``."""
    return [{**item, "lifecycle": _lifecycle(store, item)} for item in items]


def unresolved_first(store: Store, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Latest failures with their lifecycle, unresolved (retrying, dead, failed) before resolved ones
    (each group keeps its newest-first order)."""
    annotated = with_lifecycle(store, items)
    return sorted(annotated, key=lambda it: it["lifecycle"]["state"] in RESOLVED)


def queue_overview(store: Store, *, provider: str | None = None, limit: int = 50) -> dict[str, Any]:
    """The outbox now: counts per state, queued jobs by next run, running jobs, dead letters, breakers
    (each with ``pause``: an operator's pause, and ``retry_after_until``: the provider's own wait), and
    ``paused``: the destinations an operator has paused."""
    now = datetime.now(UTC)
    stats = store.queue_stats(now=now)
    by_state = {s: stats.count(s) for s in JOB_STATES}
    if provider:
        by_state = {s: stats.by_provider.get((provider, s), 0) for s in JOB_STATES}

    def jobs(state: str) -> list[dict[str, Any]]:
        found = store.list_jobs(JobFilter(states=(state,), provider=provider or None), limit=limit)
        return [j.to_dict() for j in found]

    queued = sorted(jobs(QUEUED), key=lambda j: j["run_after"] or "")
    dead = sorted(jobs(DEAD), key=lambda j: j["updated_at"] or "", reverse=True)
    breakers = [
        {
            **d.to_dict(),
            "probe_due": d.probe_at is not None and d.probe_at <= now,
            "retry_after_until": iso(d.paused_until) if d.paused_until and d.paused_until > now else None,
            "pause": pause_view(d, now),
        }
        for d in store.list_destinations()
        if (not provider or d.provider == provider)
    ]
    return {
        "generated_at": iso(now),
        "provider": provider,
        "counts": by_state,
        "due": stats.due,
        "oldest_due": iso(stats.oldest_due),
        "expired_leases": stats.expired_leases,
        "queued": queued,
        "running": jobs(RUNNING),
        "dead": dead,
        "failed": sorted(jobs(FAILED), key=lambda j: j["updated_at"] or "", reverse=True),
        "breakers": breakers,
        "paused": sorted(b["provider"] for b in breakers if b["pause"]),
        "limit": limit,
    }


def _measured(total: int, failed: int, streak: int, breaker: str | None) -> str:
    if breaker in (OPEN, HALF_OPEN):
        return "failing"
    if total == 0:
        return "unknown"
    if streak >= 3 or failed == total:
        return "failing"
    if streak or failed / total > DEGRADED_RATE:
        return "degraded"
    return "healthy"


def integration_health(store: Store, integrations: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The integrations, each with ``measured_health``: ``{"status", "deliveries", "failed",
    "consecutive_failures", "breaker", "since"}`` from the last :data:`HEALTH_WINDOW` of its deliveries
    and its provider's breaker. ``status``: ``failing`` (breaker open or half-open, 3+ failures in a row,
    or every delivery failed), ``degraded`` (a failure in a row, or over 20 % failed), ``healthy``,
    ``unknown`` (no delivery in the window)."""
    now = datetime.now(UTC)
    since = now - HEALTH_WINDOW
    breakers = {d.provider: d.breaker_state for d in store.list_destinations()}
    out = []
    for it in integrations:
        iid, provider = str(it.get("integration_id")), str(it.get("provider"))
        flt = DeliveryFilter(integration_id=iid, since=since)
        stats = [s for s in store.provider_stats(flt) if s.provider == provider]
        total = sum(s.total for s in stats)
        failed = sum(s.failed for s in stats)
        # the streak within the window (bounded: an integration's whole history may be long)
        streak = sum(s.count for s in store.failure_streaks(flt) if s.provider == provider)
        breaker = breakers.get(provider)
        out.append(
            {
                **it,
                "measured_health": {
                    "status": _measured(total, failed, streak, breaker),
                    "deliveries": total,
                    "failed": failed,
                    "consecutive_failures": streak,
                    "breaker": breaker or "closed",
                    "since": iso(since),
                },
            }
        )
    return out


def search_values(store: Store, metadata_kind: str | None = None) -> dict[str, list[str]]:
    """The providers and event types stored (of one kind, or all)."""
    flt = DeliveryFilter(metadata_kinds=normalize_kinds(None if metadata_kind is None else [metadata_kind]))
    providers = sorted(s.provider for s in store.provider_stats(flt))
    types = sorted({e.event_type for e in store.event_type_stats(flt) if e.event_type})
    return {"providers": providers, "event_types": types}


__all__ = [
    "integration_health",
    "queue_overview",
    "search_values",
    "unresolved_first",
    "with_lifecycle",
]
