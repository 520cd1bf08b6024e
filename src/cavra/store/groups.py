"""Group state as the store keeps it (cavra.grouping): one slot per group key, one member per event.

``delivery_groups`` (revision r0009) holds one row per (destination, group key): the *slot*. Its JSON
``body`` says which generation of the group is open (``group_id``), when its next message is due and by
which outbox job (``flush_job``), and when the last one went out. ``delivery_group_members`` holds one row
per (destination, event id): the group it joined and, once a flush job took it, that job's id
(``flush_job``). A flush takes the pending members with one conditional update (``flush_job IS NULL``),
inside a transaction that holds the slot's row lock (``FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` locks the database; the JSON file its file lock), so no member goes out in two
messages and a job run again after a crash sends the members it took, no others.

:class:`GroupAccess` is what a backend offers inside one write transaction
(:meth:`cavra.store.Store.with_groups`); the rules live in :mod:`cavra.grouping.state`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cavra.store.jobs import Enqueued, NewJob


@dataclass(frozen=True)
class GroupMember:
    """One event's place in a group. ``body``: the event and what the message needs of it."""

    destination: str
    event_id: str
    slot: str
    group_id: str
    body: dict[str, Any]
    added_at: datetime
    flush_job: str | None = None
    #: the member's own record, once written
    delivery_id: str | None = None


class GroupAccess(Protocol):
    """Group state inside one store write transaction."""

    def lock_slot(self, slot: str, destination: str, group_key: str) -> dict[str, Any]:
        """The slot's body (``{}`` for a key never seen), its row created if need be and locked."""

    def put_slot(self, slot: str, body: dict[str, Any]) -> None:
        """Write the (locked) slot's body."""

    def member(self, destination: str, event_id: str) -> GroupMember | None:
        """The event's membership at this destination, if it ever joined a group there."""

    def add_member(self, member: GroupMember) -> None:
        """Insert a member (its (destination, event id) is new: :meth:`member` said so)."""

    def take_pending(self, slot: str, group_id: str, job_id: str) -> list[GroupMember]:
        """Give the group's members that no flush took yet to ``job_id``; return them (oldest first)."""

    def members_of(self, job_id: str) -> list[GroupMember]:
        """The members a flush job took (oldest first)."""

    def mark_recorded(self, destination: str, event_id: str, delivery_id: str) -> None:
        """The member's own record is ``delivery_id``."""

    def unrecorded(self, limit: int) -> list[GroupMember]:
        """Members taken by a flush job and still without their own record (oldest first)."""

    def job_ended(self, job_id: str) -> bool:
        """The outbox job has ended (succeeded, failed, dead) or is gone (purged)."""

    def enqueue(self, jobs: Sequence[NewJob], now: datetime) -> list[Enqueued]:
        """:meth:`cavra.store.Store.enqueue_jobs` inside this transaction."""
