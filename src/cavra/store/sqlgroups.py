"""Group state in SQL (SQLite and PostgreSQL): :class:`cavra.store.groups.GroupAccess` on one connection
inside a write transaction of :class:`cavra.store.sql.SqlStore` (see :mod:`cavra.store.groups`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cavra.events import canonical_json
from cavra.store import sqljobs as sj
from cavra.store.groups import GroupMember
from cavra.store.jobs import Enqueued, NewJob
from cavra.store.schema import delivery_group_members as members
from cavra.store.schema import delivery_groups as groups


def _insert(backend: str, table: sa.Table) -> Any:
    return (postgresql.insert if backend == "postgresql" else sqlite.insert)(table)


def _member(m: sa.RowMapping) -> GroupMember:
    return GroupMember(
        destination=m["destination"],
        event_id=m["event_id"],
        slot=m["slot"],
        group_id=m["group_id"],
        body=dict(json.loads(m["body"])),
        added_at=m["added_at"],
        flush_job=m["flush_job"],
        delivery_id=m["delivery_id"],
    )


class SqlGroups:
    """Group state on ``conn`` (a write transaction: on PostgreSQL the slot row is locked ``FOR UPDATE``;
    SQLite's ``BEGIN IMMEDIATE`` already holds the database)."""

    def __init__(self, conn: sa.Connection, backend: str) -> None:
        self._conn = conn
        self._backend = backend

    def lock_slot(self, slot: str, destination: str, group_key: str) -> dict[str, Any]:
        def locked() -> sa.RowMapping | None:
            stmt = sa.select(groups.c.body).where(groups.c.slot == slot).with_for_update()
            return self._conn.execute(stmt).mappings().first()

        row = locked()
        if row is None:
            self._conn.execute(
                _insert(self._backend, groups)
                .values(
                    slot=slot,
                    destination=destination,
                    group_key=group_key,
                    body="{}",
                    updated_at=datetime.now(UTC),
                )
                .on_conflict_do_nothing(index_elements=[groups.c.slot])
            )
            row = locked()
            assert row is not None
        return dict(json.loads(row["body"]))

    def put_slot(self, slot: str, body: dict[str, Any]) -> None:
        self._conn.execute(
            sa.update(groups)
            .where(groups.c.slot == slot)
            .values(body=canonical_json(body).decode(), updated_at=datetime.now(UTC))
        )

    def member(self, destination: str, event_id: str) -> GroupMember | None:
        stmt = sa.select(members).where(members.c.destination == destination, members.c.event_id == event_id)
        row = self._conn.execute(stmt).mappings().first()
        return None if row is None else _member(row)

    def add_member(self, member: GroupMember) -> None:
        self._conn.execute(
            sa.insert(members).values(
                destination=member.destination,
                event_id=member.event_id,
                slot=member.slot,
                group_id=member.group_id,
                flush_job=member.flush_job,
                body=canonical_json(member.body).decode(),
                added_at=member.added_at,
            )
        )

    def take_pending(self, slot: str, group_id: str, job_id: str) -> list[GroupMember]:
        self._conn.execute(
            sa.update(members)
            .where(members.c.slot == slot, members.c.group_id == group_id, members.c.flush_job.is_(None))
            .values(flush_job=job_id)
        )
        return self.members_of(job_id)

    def members_of(self, job_id: str) -> list[GroupMember]:
        stmt = sa.select(members).where(members.c.flush_job == job_id).order_by(members.c.added_at)
        return [_member(m) for m in self._conn.execute(stmt).mappings()]

    def mark_recorded(self, destination: str, event_id: str, delivery_id: str) -> None:
        self._conn.execute(
            sa.update(members)
            .where(members.c.destination == destination, members.c.event_id == event_id)
            .values(delivery_id=delivery_id)
        )

    def unrecorded(self, limit: int) -> list[GroupMember]:
        stmt = (
            sa.select(members)
            .where(members.c.delivery_id.is_(None), members.c.flush_job.is_not(None))
            .order_by(members.c.added_at)
            .limit(limit)
        )
        return [_member(m) for m in self._conn.execute(stmt).mappings()]

    def job_ended(self, job_id: str) -> bool:
        job = sj.get(self._conn, job_id)
        return job is None or job.final

    def enqueue(self, jobs: Sequence[NewJob], now: datetime) -> list[Enqueued]:
        return sj.enqueue(self._conn, self._backend, jobs, now)
