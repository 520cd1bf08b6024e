"""Publish events through the routes (``POST /events``, ``cavra events publish``).

Each event is routed (:mod:`cavra.routing`, pure) and becomes one outbox job per matched destination
(metadata kind ``event-delivery``); every job's payload names the route that sent it, and so does each
record its runs store (``route``). All the jobs of one call are written in one transaction, then run now
in this process when the caller waits (as the release deliveries are), or left to the workers.

Idempotency is the outbox's: a job's key is derived from the event's identity and the destination, or
from the caller's ``Idempotency-Key`` scoped to the event and the destination, so publishing an event
again answers the first jobs and sends nothing twice.

An event that matches no route is never dropped: it is answered ``unrouted`` and recorded in the evidence
chain (metadata kind ``unrouted-event``, a record with no deliveries, ``routing.status = "unrouted"``); a
plain record ``unrouted_event/<event_id>`` points at it, so publishing it again records nothing new. Both
outcomes are counted in ``cavra_events_published_total{outcome}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cavra.config import LoadedConfig
from cavra.delivery.idempotency import delivery_job, idempotency_key
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import build_record
from cavra.delivery.runtime import DeliveryRuntime
from cavra.delivery.submit import deliver_jobs
from cavra.errors import ConfigError, InputError
from cavra.events import normalize_event
from cavra.governance.notes import delivery_runtime
from cavra.governance.outbox import UNTIL_DONE, check_wait
from cavra.grouping.publish import add_to_answer, join_planned, plan_groups
from cavra.routing import Decision, RouteTable, subject_of
from cavra.service import validate_retries
from cavra.store import EVENT_DELIVERY, UNROUTED_EVENT, Store
from cavra.store.jobs import Job, NewJob
from cavra.transport import Transport

PUBLISH_SCHEMA = "cavra.events.publish.v1"
#: most events one call may publish
MAX_EVENTS = 1000
UNROUTED_KIND = "unrouted_event"


def route_table(config: LoadedConfig) -> RouteTable:
    if config.routes is None:
        raise ConfigError(
            f"{config.source}: no routes: add a 'routes' list to the connectors file (see docs/routing.md)"
        )
    return config.routes


def normalize_events(raw: Sequence[object]) -> list[dict[str, Any]]:
    """Validate every event (``events[i]: …`` on error) and refuse duplicate event ids."""
    if not raw:
        raise InputError("events: give at least one event")
    if len(raw) > MAX_EVENTS:
        raise InputError(f"events: at most {MAX_EVENTS} events per call, got {len(raw)}")
    events = [normalize_event(item, source=f"events[{i}]") for i, item in enumerate(raw)]
    seen: dict[str, int] = {}
    for i, event in enumerate(events):
        first = seen.setdefault(event["event_id"], i)
        if first != i:
            raise InputError(
                f"events[{i}]: duplicate event_id {event['event_id']!r} (first at events[{first}])"
            )
    return events


@dataclass(frozen=True)
class _Planned:
    event: int
    destination: str
    route: str


def _subject(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    kind, sid = subject_of(event)
    return (kind or None, sid or None)


def plan_jobs(
    config: LoadedConfig,
    events: Sequence[Mapping[str, Any]],
    decisions: Sequence[Decision],
    *,
    retries: int,
    key: str | None,
) -> tuple[list[NewJob], list[_Planned], dict[int, list[dict[str, str]]]]:
    """One job per (event, matched destination); disabled destinations are skipped (and said so)."""
    jobs: list[NewJob] = []
    planned: list[_Planned] = []
    skipped: dict[int, list[dict[str, str]]] = {}
    for i, (event, decision) in enumerate(zip(events, decisions, strict=True)):
        subject_kind, subject_id = _subject(event)
        for dest, route in decision.destinations.items():
            if dest not in config.targets and dest not in config.errors:
                skipped.setdefault(i, []).append({"destination": dest, "route": route, "reason": "disabled"})
                continue
            job = delivery_job(
                event,
                dest,
                kind=EVENT_DELIVERY,
                retries=retries,
                subject_kind=subject_kind,
                subject_id=subject_id,
            )
            if key is not None:  # the caller's key covers the call: scoped to each event and destination
                scoped = idempotency_key(
                    EVENT_DELIVERY, dest, event, given=key, scope=f"events/{event['event_id']}"
                )
                job = dataclasses.replace(job, idempotency_key=scoped)
            job = dataclasses.replace(job, payload={**job.payload, "route": route})
            jobs.append(job)
            planned.append(_Planned(i, dest, route))
    return jobs, planned, skipped


def record_unrouted(store: Store, event: Mapping[str, Any], routes_evaluated: int) -> str:
    """Store the evidence that ``event`` matched no route (once per event id); return its delivery id."""
    known = store.get_record(UNROUTED_KIND, str(event["event_id"]))
    if known is not None and isinstance(known.get("delivery_id"), str):
        return str(known["delivery_id"])
    record = build_record(event, [])
    record["route"] = None
    record["routing"] = {"status": "unrouted", "routes_evaluated": routes_evaluated}
    subject_kind, subject_id = _subject(event)
    stored = store.append_delivery(
        record, metadata_kind=UNROUTED_EVENT, subject_kind=subject_kind, subject_id=subject_id
    )
    body = {
        "event_id": event["event_id"],
        "event_type": event.get("event_type"),
        "delivery_id": stored.id,
        "routes_evaluated": routes_evaluated,
    }
    store.put_record(UNROUTED_KIND, str(event["event_id"]), body)
    return stored.id


async def publish_events(
    store: Store,
    config: LoadedConfig,
    raw_events: Sequence[object],
    *,
    retries: int = 1,
    idempotency_key: str | None = None,
    wait: bool = False,
    wait_seconds: float | None = None,
    transport: Transport | None = None,
    policy: RetryPolicy | None = None,
    runtime: DeliveryRuntime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Route and queue ``raw_events``; answer the ``cavra.events.publish.v1`` body (see
    :func:`publish_answer`). ``wait``: run the jobs now and wait (up to ``wait_seconds``; default until
    their first runs end) so the answer holds the records. A destination a grouping route sends the event
    to is not waited for: the event joins its group (:mod:`cavra.grouping`; ``now``: the time it joins)."""
    table = route_table(config)
    validate_retries(retries)
    check_wait(wait_seconds)
    events = normalize_events(raw_events)
    decisions = [table.route(e) for e in events]
    groups = plan_groups(config, table, events, decisions, retries=retries)
    jobs, planned, skipped = plan_jobs(config, events, groups.decisions, retries=retries, key=idempotency_key)
    from cavra.metrics import METRICS

    unrouted: dict[int, str] = {}
    for i, decision in enumerate(decisions):
        METRICS.event_routed(not decision.unrouted)
        if decision.unrouted:
            unrouted[i] = await asyncio.to_thread(record_unrouted, store, events[i], len(table.routes))
    joined = await join_planned(store, groups, now=now) if groups.joins else []
    found: list[Job] = []
    documents: list[dict[str, Any] | None] = []
    if jobs:
        sub = await deliver_jobs(
            store,
            config,
            jobs,
            runtime=delivery_runtime() if runtime is None else runtime,
            wait=wait,
            timeout=UNTIL_DONE if wait_seconds is None else wait_seconds,
            transport=transport,
            retry_base_delay=None if policy is None else policy.base_delay,
        )
        found, documents = sub.jobs, sub.documents
    answer = publish_answer(events, decisions, planned, found, documents, skipped, unrouted, waited=wait)
    return add_to_answer(answer, groups, joined)


def publish_answer(
    events: Sequence[Mapping[str, Any]],
    decisions: Sequence[Decision],
    planned: Sequence[_Planned],
    jobs: Sequence[Job],
    documents: Sequence[dict[str, Any] | None],
    skipped: Mapping[int, list[dict[str, str]]],
    unrouted: Mapping[int, str],
    *,
    waited: bool,
) -> dict[str, Any]:
    """Per event: the routes that matched, each destination with its job (and record, once run)."""
    items: list[dict[str, Any]] = []
    for i, (event, decision) in enumerate(zip(events, decisions, strict=True)):
        items.append(
            {
                "index": i,
                "event_id": event["event_id"],
                "event_type": event.get("event_type"),
                "status": "unrouted" if decision.unrouted else "routed",
                "routes": [r.describe() for r in decision.routes],
                "destinations": [],
                "skipped": skipped.get(i, []),
                "delivery_id": unrouted.get(i),
            }
        )
    for plan, job, doc in zip(planned, jobs, documents, strict=True):
        entry: dict[str, Any] = {
            "destination": plan.destination,
            "route": plan.route,
            "job_id": job.id,
            "state": job.state,
            "status_url": f"/jobs/{job.id}",
            "delivery_id": job.delivery_id,
        }
        if doc is not None:
            entry["success"] = bool(doc.get("success"))
            if waited:
                entry["record"] = doc
        items[plan.event]["destinations"].append(entry)
    done = all(d is not None for d in documents)
    answer: dict[str, Any] = {
        "schema_version": PUBLISH_SCHEMA,
        "status": "completed" if (waited and done) or not jobs else "accepted",
        "events": items,
        "event_count": len(items),
        "routed": sum(1 for d in decisions if not d.unrouted),
        "unrouted": sum(1 for d in decisions if d.unrouted),
        "job_count": len(jobs),
    }
    if jobs:
        answer["job_id"] = jobs[0].id
        answer["status_url"] = f"/jobs/{jobs[0].id}"
    if answer["status"] == "completed":
        # every destination delivered, and every event went somewhere
        answer["success"] = not unrouted and all(bool(d and d.get("success")) for d in documents)
    return answer
