"""Group state in the JSON-file store: :class:`cavra.store.groups.GroupAccess` on the document being
updated under the file lock (``groups``: ``{"slots": {slot: {...}}, "members": [...]}``), as
:mod:`cavra.store.memjobs` keeps the outbox's jobs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cavra.store import memjobs as mj
from cavra.store.base import iso
from cavra.store.groups import GroupMember
from cavra.store.jobs import Enqueued, NewJob


def _when(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def _member(item: dict[str, Any]) -> GroupMember:
    return GroupMember(
        destination=str(item["destination"]),
        event_id=str(item["event_id"]),
        slot=str(item["slot"]),
        group_id=str(item["group_id"]),
        body=dict(item.get("body") or {}),
        added_at=_when(item["added_at"]),
        flush_job=item.get("flush_job"),
        delivery_id=item.get("delivery_id"),
    )


class MemGroups:
    """Group state in the document ``data`` (the caller holds the file lock and writes it afterwards)."""

    def __init__(self, data: dict[str, Any]) -> None:
        state = data.setdefault("groups", {})
        self._slots: dict[str, Any] = state.setdefault("slots", {})
        self._members: list[dict[str, Any]] = state.setdefault("members", [])
        self._data = data

    def lock_slot(self, slot: str, destination: str, group_key: str) -> dict[str, Any]:
        row = self._slots.setdefault(slot, {"destination": destination, "group_key": group_key, "body": {}})
        return dict(row["body"])

    def put_slot(self, slot: str, body: dict[str, Any]) -> None:
        row = self._slots[slot]
        row["body"] = json.loads(json.dumps(body, default=str))
        row["updated_at"] = iso(datetime.now(UTC))

    def member(self, destination: str, event_id: str) -> GroupMember | None:
        for item in self._members:
            if item["destination"] == destination and item["event_id"] == event_id:
                return _member(item)
        return None

    def add_member(self, member: GroupMember) -> None:
        self._members.append(
            {
                "destination": member.destination,
                "event_id": member.event_id,
                "slot": member.slot,
                "group_id": member.group_id,
                "flush_job": member.flush_job,
                "body": json.loads(json.dumps(member.body, default=str)),
                "added_at": iso(member.added_at),
            }
        )

    def take_pending(self, slot: str, group_id: str, job_id: str) -> list[GroupMember]:
        for item in self._members:
            if item["slot"] == slot and item["group_id"] == group_id and item.get("flush_job") is None:
                item["flush_job"] = job_id
        return self.members_of(job_id)

    def members_of(self, job_id: str) -> list[GroupMember]:
        found = [_member(item) for item in self._members if item.get("flush_job") == job_id]
        return sorted(found, key=lambda m: m.added_at)

    def mark_recorded(self, destination: str, event_id: str, delivery_id: str) -> None:
        for item in self._members:
            if item["destination"] == destination and item["event_id"] == event_id:
                item["delivery_id"] = delivery_id

    def unrecorded(self, limit: int) -> list[GroupMember]:
        found = [_member(i) for i in self._members if i.get("flush_job") and not i.get("delivery_id")]
        return sorted(found, key=lambda m: m.added_at)[:limit]

    def job_ended(self, job_id: str) -> bool:
        item = mj.find(self._data, job_id)
        return item is None or mj.to_job(item).final

    def enqueue(self, jobs: Sequence[NewJob], now: datetime) -> list[Enqueued]:
        return mj.enqueue(self._data, jobs, now)
