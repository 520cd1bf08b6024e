"""What a worker does with a group's flush job (metadata kind ``group-delivery``).

Before the run: :func:`prepare` takes the group's pending members (:func:`cavra.grouping.state.take_members`;
a job run again after a crash gets the members its first run took, so no group goes out twice with
different members and no member goes out in two groups) and puts the group's message event in the job, so
the engine sends it like any event: the destination's guard, breaker, retries and long retry schedule
apply. The run's record gets a ``group`` section listing every member's event id (:func:`group_section`).

A redelivery of a group's record (``POST /deliveries/{id}/redeliver``, a replay) sends the members that
record's job took. After the job's final run (delivered, failed or dead), :func:`member_records` stores
one record per member (``event-delivery``, as an ungrouped event's) with the group's outcome and
``group.group_delivery_id``, the id of the group's record. Those are written after the group's record,
and each member row remembers its record: a worker that dies between the two leaves them owed, and the
next worker to start writes them (:func:`recover_member_records`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cavra.delivery.record import build_record
from cavra.grouping.message import group_event
from cavra.grouping.state import take_members
from cavra.store import EVENT_DELIVERY, Store, StoredDelivery
from cavra.store.groups import GroupMember
from cavra.store.jobs import Job

#: member event ids listed in full in a group's record (past it, the record keeps the count)
MAX_LISTED = 10_000


def prepare(store: Store, job: Job, *, now: datetime) -> Job:
    """The flush job with its members taken and its message as the job's event (``payload.members``:
    the members' event ids and subjects)."""
    taken = take_members(store, job, now=now).members
    source = job.id
    if not taken and job.replay_of:  # a redelivery of a group's record: the members that record sent
        source = _replayed_job(store, job.replay_of) or job.id
        taken = store.with_groups(lambda tx: tx.members_of(source))
    route = job.payload.get("route")
    group = dict(job.payload.get("group") or {})
    event = group_event(group, taken, route if isinstance(route, str) else None)
    members = [_member_view(m) for m in taken]
    payload = {**job.payload, "event": event, "members": members, "members_job": source}
    return dataclasses.replace(job, payload=payload)


def _replayed_job(store: Store, delivery_id: str) -> str | None:
    doc = store.get_delivery(delivery_id)
    section = doc.get("job") if doc is not None else None
    found = section.get("job_id") if isinstance(section, dict) else None
    return found if isinstance(found, str) else None


def _member_view(m: GroupMember) -> dict[str, Any]:
    event = m.body.get("event") or {}
    return {
        "event_id": m.event_id,
        "event_type": event.get("event_type") if isinstance(event, dict) else None,
        "subject_kind": m.body.get("subject_kind"),
        "subject_id": m.body.get("subject_id"),
        "joined_at": m.added_at.isoformat(),
    }


def has_members(job: Job) -> bool:
    return bool(job.payload.get("members"))


def group_section(job: Job) -> dict[str, Any]:
    """The group record's ``group`` section."""
    group = dict(job.payload.get("group") or {})
    members: Sequence[dict[str, Any]] = job.payload.get("members") or []
    return {
        "group_id": group.get("group_id"),
        "group_key": group.get("group_key"),
        "labels": group.get("labels") or {},
        "settings": group.get("settings") or {},
        "flush": group.get("flush"),
        "member_count": len(members),
        "member_event_ids": [m["event_id"] for m in members[:MAX_LISTED]],
        "members": list(members[:MAX_LISTED]),
    }


def _member_record(
    event: dict[str, Any], group_doc: dict[str, Any], section: dict[str, Any]
) -> dict[str, Any]:
    record = build_record(event, [])
    items = []
    for item in group_doc.get("deliveries") or []:
        # the group's outcome; its attempts (the request and the answer) are in the group's record
        items.append({**item, "attempt_count": 0, "attempts": [], "request": None})
    record.update(
        deliveries=items,
        errors=list(group_doc.get("errors") or []),
        success=bool(group_doc.get("success")),
        delivered_count=group_doc.get("delivered_count", 0),
        failed_count=group_doc.get("failed_count", 0),
        route=group_doc.get("route"),
        group=section,
    )
    return record


def member_records(store: Store, job: Job, group: StoredDelivery) -> list[StoredDelivery]:
    """Store one ``event-delivery`` record per member of the finished flush ``job`` (a member whose record
    was written already is skipped; a redelivery writes its members' records again, naming it)."""
    source = str(job.payload.get("members_job") or job.id)
    members = store.with_groups(lambda tx: tx.members_of(source))
    if source == job.id:
        members = [m for m in members if m.delivery_id is None]
    return _write_members(store, job, group, members, mark=source == job.id)


def _write_members(
    store: Store, job: Job, group: StoredDelivery, members: Sequence[GroupMember], *, mark: bool
) -> list[StoredDelivery]:
    info = dict(job.payload.get("group") or {})
    section = {
        "group_id": info.get("group_id"),
        "group_key": info.get("group_key"),
        "group_delivery_id": group.id,
        "group_job_id": job.id,
        "flush": info.get("flush"),
    }
    stored: list[StoredDelivery] = []
    for m in members:
        event = dict(m.body.get("event") or {})
        kind, sid = m.body.get("subject_kind"), m.body.get("subject_id")
        one = store.append_delivery(
            _member_record(event, group.document, section),
            metadata_kind=EVENT_DELIVERY,
            subject_kind=kind if isinstance(kind, str) else None,
            subject_id=sid if isinstance(sid, str) else None,
        )
        if mark:
            _mark(store, m, one.id)
        stored.append(one)
    return stored


def _mark(store: Store, member: GroupMember, delivery_id: str) -> None:
    store.with_groups(lambda tx: tx.mark_recorded(member.destination, member.event_id, delivery_id))


def recover_member_records(store: Store, *, limit: int = 1000) -> int:
    """Write the records owed to members whose flush job ended without writing them (its worker died
    between the group's record and theirs); run when a worker starts. Returns how many were written."""
    owed = store.with_groups(lambda tx: [m for m in tx.unrecorded(limit) if tx.job_ended(str(m.flush_job))])
    by_job: dict[str, list[GroupMember]] = {}
    for m in owed:
        by_job.setdefault(str(m.flush_job), []).append(m)
    written = 0
    for job_id, members in by_job.items():
        job = store.get_job(job_id)
        doc = store.get_delivery(job.delivery_id) if job is not None and job.delivery_id else None
        if job is None or doc is None:
            continue  # purged: the group's record is the evidence left
        group = StoredDelivery(
            id=str(doc["id"]),
            sequence=int(doc.get("sequence") or 0),
            metadata_kind=str(doc.get("metadata_kind")),
            created_at=job.updated_at,
            record_sha256=str(doc.get("record_sha256")),
            previous_sha256=str(doc.get("previous_sha256")),
            document=doc,
        )
        written += len(_write_members(store, job, group, members, mark=True))
    return written
