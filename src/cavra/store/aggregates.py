"""Aggregates of the provider index, kept in the same transaction as every append (revision 0005).

Dashboards summarise all of history; recomputing that from ``provider_deliveries`` grows with it (1.9 s at
1,000,000 records). The SQL store therefore keeps, beside the index:

``pd_totals`` per (metadata kind, provider)
    counts (total, succeeded, failed, pending), attempts, the latest success and failure times, the first
    failure time, and the current failure streak: the failed rows after the group's latest success
    (``last_ok_id``; pending rows neither count nor reset), with their count, first and last row ids,
    first and last times and greatest event type;
``pd_event_type_totals`` per (metadata kind, event type)
    total, succeeded, failed;
``pd_event_streaks`` per (metadata kind, provider, event id), rows of rollback events only
    (event type containing :data:`ROLLBACK`), the same streak per event.
``pd_destination_totals`` per (metadata kind, destination) (revision 0008)
    what ``pd_totals`` keeps, per destination, with the provider of the destination's latest row.

The definitions are exactly those of the SQL in :mod:`cavra.store.sqlquery` (``test_aggregates`` checks
that both give the same answers). An appender reads the rows its batch touches, applies the batch's
index rows in id order (:class:`Aggregates`), and writes them back, while it holds the chain head, so
appenders never interleave. Revision 0005 builds them from the existing rows with the same code
(:func:`rebuild`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cavra.store import rawsql
from cavra.store.base import utc
from cavra.store.schema import pd_destination_totals, pd_event_streaks, pd_event_type_totals, pd_totals
from cavra.store.schema import provider_deliveries as pd

#: the event types whose per-event failure streaks are kept (the dashboard's rollback alerts)
ROLLBACK = "rollback"
_READ_CHUNK = 400


def event_key(value: str | None) -> str:
    """A NOT NULL key for a nullable text column: ``""`` for NULL, ``"=" + value`` otherwise."""
    return "" if value is None else "=" + value


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def _time(value: Any) -> datetime | None:
    return None if value is None else utc(value)


@dataclass
class Streak:
    """The failed rows after a group's latest success."""

    last_ok_id: int = 0
    streak_count: int = 0
    streak_first_id: int | None = None
    streak_since: datetime | None = None
    streak_last_at: datetime | None = None
    streak_last_id: int | None = None
    streak_event_type: str | None = None

    def add(
        self, row_id: int, created: datetime, success: bool, failed: bool, event_type: str | None
    ) -> None:
        if success:
            self.last_ok_id = max(self.last_ok_id, row_id)
            self.streak_count = 0
            self.streak_first_id = self.streak_since = self.streak_last_at = None
            self.streak_last_id = None
            self.streak_event_type = None
        elif failed and row_id > self.last_ok_id:
            self.streak_count += 1
            self.streak_first_id = row_id if self.streak_first_id is None else self.streak_first_id
            self.streak_since = _min(self.streak_since, created)
            self.streak_last_at = _max(self.streak_last_at, created)
            self.streak_last_id = _max(self.streak_last_id, row_id)
            self.streak_event_type = _max(self.streak_event_type, event_type)


@dataclass
class Totals(Streak):
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    attempts: int = 0
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    first_failure_at: datetime | None = None


@dataclass
class DestinationTotals(Totals):
    provider: str = ""


@dataclass
class TypeTotals:
    event_type: str | None = None
    total: int = 0
    succeeded: int = 0
    failed: int = 0


@dataclass
class EventStreak(Streak):
    event_id: str | None = None


_TOTALS = [f.name for f in fields(Totals)]
_DEST = [f.name for f in fields(DestinationTotals)]
_TYPE = [f.name for f in fields(TypeTotals)]
_EVENT = [f.name for f in fields(EventStreak)]
_TIMES = {"streak_since", "streak_last_at", "last_success_at", "last_failure_at", "first_failure_at"}


def _load(cls: type[Any], m: Any, names: Sequence[str]) -> Any:
    return cls(**{n: (_time(m[n]) if n in _TIMES else m[n]) for n in names})


TotalsKey = tuple[str, str]
TypeKey = tuple[str, str]
EventKey = tuple[str, str, str]


def _count(t: Totals, row: Any, row_id: int) -> None:
    """Count one index row in a totals row (provider or destination)."""
    success = bool(row["success"])
    pending = not success and row["status"] == "pending"
    failed = not success and not pending
    created = utc(row["created_at"])
    t.total += 1
    t.attempts += int(row["attempt_count"])
    if success:
        t.succeeded += 1
        t.last_success_at = _max(t.last_success_at, created)
    elif pending:
        t.pending += 1
    else:
        t.failed += 1
        t.last_failure_at = _max(t.last_failure_at, created)
        t.first_failure_at = _min(t.first_failure_at, created)
    t.add(row_id, created, success, failed, row["event_type"])


class Aggregates:
    """The aggregate rows one batch touches: read, updated row by row, written back.

    ``destinations``: keep ``pd_destination_totals`` too (every revision from 0008)."""

    def __init__(self, *, destinations: bool = True) -> None:
        self.totals: dict[TotalsKey, Totals] = {}
        self.dests: dict[TotalsKey, DestinationTotals] = {}
        self.types: dict[TypeKey, TypeTotals] = {}
        self.events: dict[EventKey, EventStreak] = {}
        self.destinations = destinations
        self._stored: set[tuple[str, tuple[str, ...]]] = set()

    @staticmethod
    def keys(
        rows: Iterable[Mapping[str, Any]],
    ) -> tuple[set[TotalsKey], set[TypeKey], set[EventKey], set[TotalsKey]]:
        totals, types, events, dests = set(), set(), set(), set()
        for r in rows:
            kind, provider, event_type = r["metadata_kind"], r["provider"], r["event_type"]
            totals.add((kind, provider))
            dests.add((kind, r.get("destination") or provider))
            types.add((kind, event_key(event_type)))
            if event_type is not None and ROLLBACK in event_type:
                events.add((kind, provider, event_key(r["event_id"])))
        return totals, types, events, dests

    def read(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Read the stored aggregate rows that ``rows`` (index rows about to be added) will change."""
        totals, types, events, dests = self.keys(rows)
        if not self.destinations:
            dests = set()
        for table, keys, cols, cls, names, into in (
            (pd_totals, totals, ("metadata_kind", "provider"), Totals, _TOTALS, self.totals),
            (
                pd_destination_totals,
                dests,
                ("metadata_kind", "destination"),
                DestinationTotals,
                _DEST,
                self.dests,
            ),
            (pd_event_type_totals, types, ("metadata_kind", "event_key"), TypeTotals, _TYPE, self.types),
            (
                pd_event_streaks,
                events,
                ("metadata_kind", "provider", "event_key"),
                EventStreak,
                _EVENT,
                self.events,
            ),
        ):
            wanted = keys - set(into)
            if not wanted:
                continue
            # one statement per table: each key column IN the values wanted (a superset of the wanted
            # keys, which the loop below picks out)
            stmt, columns = _READS[table.name]
            values = [sorted({k[i] for k in wanted}) for i in range(len(cols))]
            last = values[-1]
            for start in range(0, len(last), _READ_CHUNK):
                for row in stmt.rows(conn, [*values[:-1], last[start : start + _READ_CHUNK]]):
                    m = dict(zip(columns, row, strict=True))
                    key = tuple(m[c] for c in cols)
                    if key not in wanted:
                        continue
                    into[key] = _load(cls, m, names)
                    self._stored.add((table.name, key))

    def add(self, row: Any, row_id: int) -> None:
        """Count one index row (rows must be added in id order)."""
        kind, provider, event_type = row["metadata_kind"], row["provider"], row["event_type"]
        success = bool(row["success"])
        pending = not success and row["status"] == "pending"
        failed = not success and not pending
        created = utc(row["created_at"])
        t = self.totals.get((kind, provider))
        if t is None:
            t = self.totals[(kind, provider)] = Totals()
        _count(t, row, row_id)
        if self.destinations:
            dkey = (kind, row["destination"] or provider)
            d = self.dests.get(dkey)
            if d is None:
                d = self.dests[dkey] = DestinationTotals()
            d.provider = max(d.provider, provider)
            _count(d, row, row_id)
        ek = event_key(event_type)
        tt = self.types.get((kind, ek))
        if tt is None:
            tt = self.types[(kind, ek)] = TypeTotals(event_type)
        tt.total += 1
        tt.succeeded += success
        tt.failed += failed
        if event_type is not None and ROLLBACK in event_type:
            key = (kind, provider, event_key(row["event_id"]))
            es = self.events.get(key)
            if es is None:
                es = self.events[key] = EventStreak(event_id=row["event_id"])
            es.add(row_id, created, success, failed, event_type)

    def write(self, conn: sa.Connection) -> None:
        """Write every row held back: UPDATE the ones read, INSERT the new ones (each as one executemany)."""
        tables: list[tuple[sa.Table, tuple[str, ...], list[str], Mapping[Any, Any]]] = [
            (pd_totals, ("metadata_kind", "provider"), _TOTALS, self.totals),
            (pd_destination_totals, ("metadata_kind", "destination"), _DEST, self.dests),
            (pd_event_type_totals, ("metadata_kind", "event_key"), _TYPE, self.types),
            (pd_event_streaks, ("metadata_kind", "provider", "event_key"), _EVENT, self.events),
        ]
        for table, _cols, names, items in tables:
            if not items:
                continue
            updates: list[tuple[Any, ...]] = []
            inserts: list[tuple[Any, ...]] = []
            for key, value in items.items():
                row = tuple(getattr(value, n) for n in names)
                if (table.name, key) in self._stored:
                    updates.append(row + key)
                else:
                    inserts.append(row + key)
            insert, update = _WRITES[table.name]
            insert.executemany(conn, inserts)
            update.executemany(conn, updates)
            self._stored.update((table.name, key) for key in items)


def _writes(table: sa.Table, cols: Sequence[str], names: Sequence[str]) -> tuple[rawsql.Raw, rawsql.Raw]:
    """The INSERT and the UPDATE of an aggregate row (parameters: ``names``' values, then the key's)."""
    insert = rawsql.insert(table, [*names, *cols])
    sets = ", ".join(f'"{n}" = ?' for n in names)
    where = " AND ".join(f'"{c}" = ?' for c in cols)
    update = rawsql.Raw(
        f'UPDATE "{table.name}" SET {sets} WHERE {where}',  # noqa: S608 - names from schema.py
        [table.c[c].type for c in (*names, *cols)],
    )
    return insert, update


def _reads(table: sa.Table, cols: Sequence[str]) -> tuple[rawsql.Raw, list[str]]:
    """Every column of the aggregate rows whose key columns are each IN a list of values."""
    where = " AND ".join(f'"{c}" IN (?*)' for c in cols)
    stmt = rawsql.Raw(
        f'SELECT {rawsql.columns(table)} FROM "{table.name}" WHERE {where}',  # noqa: S608 - from schema.py
        [rawsql.many(table.c[c].type) for c in cols],
        result=[c.type for c in table.c],
    )
    return stmt, [c.name for c in table.c]


_KEYS = (
    (pd_totals, ("metadata_kind", "provider"), _TOTALS),
    (pd_destination_totals, ("metadata_kind", "destination"), _DEST),
    (pd_event_type_totals, ("metadata_kind", "event_key"), _TYPE),
    (pd_event_streaks, ("metadata_kind", "provider", "event_key"), _EVENT),
)
_WRITES = {table.name: _writes(table, cols, names) for table, cols, names in _KEYS}
_READS = {table.name: _reads(table, cols) for table, cols, _names in _KEYS}

_INDEX_READ = sa.select(
    pd.c.id,
    pd.c.metadata_kind,
    pd.c.provider,
    pd.c.event_type,
    pd.c.event_id,
    pd.c.success,
    pd.c.status,
    pd.c.attempt_count,
    pd.c.created_at,
)


def rebuild(conn: sa.Connection, *, batch: int = 20_000, destinations: bool = True) -> int:
    """Recompute every aggregate from ``provider_deliveries`` (in id order); return the rows counted.

    ``destinations=False``: before revision 0008 (no destination column nor table yet)."""
    for table in (pd_totals, pd_event_type_totals, pd_event_streaks):
        conn.execute(sa.delete(table))
    if destinations:
        conn.execute(sa.delete(pd_destination_totals))
    agg = Aggregates(destinations=destinations)
    read = _INDEX_READ.add_columns(pd.c.destination) if destinations else _INDEX_READ
    last = 0
    counted = 0
    while True:
        rows = conn.execute(read.where(pd.c.id > last).order_by(pd.c.id).limit(batch)).mappings().all()
        if not rows:
            break
        for m in rows:
            agg.add(m, int(m["id"]))
        last = int(rows[-1]["id"])
        counted += len(rows)
    agg.write(conn)
    return counted
