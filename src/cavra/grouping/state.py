"""Joining a group and taking its pending members, in one store transaction each.

**Join** (publishing an event to a destination through a grouping route): lock the group key's slot; an
event already in a group there stays where it is (publishing it again sends nothing twice); otherwise it
joins the open group, or opens a new one (the slot has none, or the last message is older than
``repeat_interval`` and nothing is pending). A group with no flush scheduled gets one: an outbox job
(metadata kind ``group-delivery``) due ``group_wait`` after the group opened, or ``group_interval`` after
its last message. The job is written in the same transaction, so the durable queue, its retries and the
destination's breaker apply to the flush.

**Take** (the flush job runs): lock the slot; the members this job already took (an earlier run that
crashed) are its members again; otherwise it takes every pending member of its group (a conditional
update: ``flush_job IS NULL``), and the slot learns that the message went out (the next one waits
``group_interval``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cavra.connectors.render import GROUP_EVENT_TYPE as GROUP_MESSAGE_TYPE
from cavra.events import event_id_of
from cavra.routing.grouping import GroupRef, GroupSettings, group_id
from cavra.store import GROUP_DELIVERY, Store
from cavra.store.base import iso
from cavra.store.groups import GroupAccess, GroupMember
from cavra.store.jobs import Job, NewJob

#: the event type of a group's message (cavra.connectors.render knows it)
GROUP_EVENT_TYPE = GROUP_MESSAGE_TYPE


@dataclass(frozen=True)
class Join:
    """One event to join its group at one destination; ``payload``: extra keys of the flush job's payload
    (retries, the destination's provider)."""

    ref: GroupRef
    event: Mapping[str, Any]
    subject: tuple[str | None, str | None] = (None, None)
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Joined:
    """Where the event went: its group, and the flush job that will send it (or sent it)."""

    group_id: str
    group_key: str
    job_id: str | None
    flush_at: str | None
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "group_key": self.group_key,
            "job_id": self.job_id,
            "flush_at": self.flush_at,
            "joined": self.created,
        }


@dataclass(frozen=True)
class Taken:
    """A flush's members and the slot's state after taking them."""

    slot: dict[str, Any]
    members: list[GroupMember]


def _when(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def is_open(slot: Mapping[str, Any], settings: GroupSettings, now: datetime) -> bool:
    """The slot's group takes new events: one is pending, or its last message is within repeat_interval."""
    if not slot.get("group_id"):
        return False
    last = _when(slot.get("last_flush_at"))
    if slot.get("flush_job") or last is None:
        return True
    return now < last + timedelta(seconds=settings.repeat_interval)


def _open_new(slot: dict[str, Any], ref: GroupRef, now: datetime) -> dict[str, Any]:
    generation = int(slot.get("generation") or 0) + 1
    return {
        "generation": generation,
        "group_id": group_id(ref.slot, generation),
        "group_key": ref.key,
        "destination": ref.destination,
        "route": ref.route,
        "labels": dict(ref.labels),
        "settings": ref.settings.to_dict(),
        "opened_at": iso(now),
        "flushes": 0,
        "members": 0,
        "last_flush_at": None,
        "flush_job": None,
        "flush_at": None,
    }


def _flush_job(slot: dict[str, Any], ref: GroupRef, join: Join, now: datetime) -> NewJob:
    flushes = int(slot.get("flushes") or 0)
    last = _when(slot.get("last_flush_at"))
    if flushes == 0 or last is None:
        due = now + timedelta(seconds=ref.settings.group_wait)
    else:
        due = max(now, last + timedelta(seconds=ref.settings.group_interval))
    group = {
        "slot": ref.slot,
        "group_id": slot["group_id"],
        "group_key": ref.key,
        "labels": dict(ref.labels),
        "settings": ref.settings.to_dict(),
        "flush": flushes + 1,
    }
    stub = {"event_id": slot["group_id"], "event_type": GROUP_EVENT_TYPE}
    scheduled = int(slot.get("scheduled") or 0) + 1  # a new key even when a dead job had this flush's
    slot["scheduled"] = scheduled
    return NewJob(
        idempotency_key=f"group/{slot['group_id']}/{flushes + 1}/{scheduled}",
        kind=GROUP_DELIVERY,
        provider=ref.destination,
        payload={**(join.payload or {}), "event": stub, "route": ref.route, "group": group},
        run_after=due,
    )


def _join(tx: GroupAccess, join: Join, now: datetime) -> Joined:
    ref = join.ref
    slot = tx.lock_slot(ref.slot, ref.destination, ref.key)
    event_id = event_id_of(join.event)
    known = tx.member(ref.destination, event_id)
    if known is not None:
        pending = slot.get("flush_job") if slot.get("group_id") == known.group_id else None
        return Joined(known.group_id, ref.key, known.flush_job or pending, slot.get("flush_at"), False)
    if slot.get("flush_job") and tx.job_ended(str(slot["flush_job"])):
        # its flush job ended without taking the members (a dead letter before its first run, a purge):
        # the next flush takes them
        slot["flush_job"] = slot["flush_at"] = None
    if not is_open(slot, ref.settings, now):
        slot = _open_new(slot, ref, now)
    body = {"event": dict(join.event), "subject_kind": join.subject[0], "subject_id": join.subject[1]}
    tx.add_member(GroupMember(ref.destination, event_id, ref.slot, slot["group_id"], body, now))
    slot["members"] = int(slot.get("members") or 0) + 1
    slot["last_event_at"] = iso(now)
    if not slot.get("flush_job"):
        new = _flush_job(slot, ref, join, now)
        enqueued = tx.enqueue([new], now)[0]
        slot["flush_job"] = enqueued.job.id
        slot["flush_at"] = iso(enqueued.job.run_after)
    tx.put_slot(ref.slot, slot)
    return Joined(slot["group_id"], ref.key, slot["flush_job"], slot["flush_at"], True)


def join_groups(store: Store, joins: Sequence[Join], *, now: datetime) -> list[Joined]:
    """Join every event to its group, in one store transaction."""
    if not joins:
        return []
    return store.with_groups(lambda tx: [_join(tx, j, now) for j in joins])


def take_members(store: Store, job: Job, *, now: datetime) -> Taken:
    """The members the flush job ``job`` sends (see the module's docstring)."""
    group = job.payload.get("group") or {}
    slot_id, gid = str(group.get("slot")), str(group.get("group_id"))

    def work(tx: GroupAccess) -> Taken:
        slot = tx.lock_slot(slot_id, job.provider, str(group.get("group_key")))
        taken = tx.members_of(job.id)
        if taken:
            return Taken(slot, taken)
        taken = tx.take_pending(slot_id, gid, job.id)
        if slot.get("flush_job") == job.id:
            slot["flush_job"] = slot["flush_at"] = None
        if taken and slot.get("group_id") == gid:
            slot["flushes"] = int(slot.get("flushes") or 0) + 1
            slot["last_flush_at"] = iso(now)
        tx.put_slot(slot_id, slot)
        return Taken(slot, taken)

    return store.with_groups(work)
