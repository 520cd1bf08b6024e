"""Publishing through grouping routes: the (event, destination) pairs a grouping route sends join their
group (:func:`cavra.grouping.state.join_groups`) instead of getting a job of their own; the answer says
which group each joined and which flush job will send it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cavra.config import LoadedConfig
from cavra.grouping.state import Join, Joined, join_groups
from cavra.routing import Decision, RouteTable, subject_of
from cavra.routing.grouping import GroupSettings, group_of
from cavra.store import Store


@dataclass(frozen=True)
class GroupPlan:
    """The joins of one publish call, and the decisions left for ordinary jobs."""

    joins: list[tuple[int, Join]]
    decisions: list[Decision]


def grouping_of(table: RouteTable) -> dict[str, GroupSettings]:
    """Route name -> its grouping, for the routes that group."""
    return {r.name: r.grouping for r in table.routes if r.grouping is not None}


def plan_groups(
    config: LoadedConfig,
    table: RouteTable,
    events: Sequence[Mapping[str, Any]],
    decisions: Sequence[Decision],
    *,
    retries: int,
) -> GroupPlan:
    """Split off the pairs that join a group: a loaded destination sent the event by a grouping route (a
    destination that did not load gets an ordinary job, whose record says why it was not sent)."""
    settings = grouping_of(table)
    joins: list[tuple[int, Join]] = []
    left: list[Decision] = list(decisions)
    if not settings:
        return GroupPlan(joins, left)
    for i, (event, decision) in enumerate(zip(events, decisions, strict=True)):
        keep: dict[str, str] = {}
        for dest, route in decision.destinations.items():
            grouping = settings.get(route)
            target = config.targets.get(dest)
            if grouping is None or target is None:
                keep[dest] = route
                continue
            kind, sid = subject_of(event)
            payload: dict[str, Any] = {"options": {"retries": retries, "timeout_seconds": None}}
            if target.provider != dest:
                payload["provider"] = target.provider
            ref = group_of(event, dest, route, grouping)
            joins.append((i, Join(ref, event, (kind or None, sid or None), payload)))
        left[i] = Decision(decision.routes, keep)
    return GroupPlan(joins, left)


async def join_planned(store: Store, plan: GroupPlan, *, now: datetime | None = None) -> list[Joined]:
    joins = [join for _i, join in plan.joins]
    when = now or datetime.now(UTC)
    return await asyncio.to_thread(join_groups, store, joins, now=when)


def add_to_answer(answer: dict[str, Any], plan: GroupPlan, joined: Sequence[Joined]) -> dict[str, Any]:
    """Each grouped destination in its event's ``destinations`` (``state: grouped``, its ``group``)."""
    if not plan.joins:
        return answer
    for (i, join), found in zip(plan.joins, joined, strict=True):
        job = found.job_id
        answer["events"][i]["destinations"].append(
            {
                "destination": join.ref.destination,
                "route": join.ref.route,
                "job_id": job,
                "state": "grouped",
                "status_url": None if job is None else f"/jobs/{job}",
                "delivery_id": None,
                "group": found.to_dict(),
            }
        )
    answer["grouped"] = len(plan.joins)
    first = next((j.job_id for j in joined if j.job_id), None)
    if "status_url" not in answer and first is not None:  # only grouped destinations: their first flush
        answer["job_id"], answer["status_url"] = first, f"/jobs/{first}"
    if answer.get("status") == "completed":  # the grouped destinations' messages go out later
        answer["status"] = "accepted"
        answer.pop("success", None)
    return answer
