"""The JSON file to and from the in-memory SQLite database of :mod:`cavra.store.jsonfile`.

:func:`load` puts a parsed ``cavra.evidence.metadata.v1`` document into the SQL schema (the tables of
:mod:`cavra.store.schema`, the ones every SQL store has), so the JSON-file backend answers everything with
the SQL store's own code. Delivery documents are inserted with the appenders' own writer
(:func:`cavra.store.sqlappend.write_rows`: documents, index rows, aggregates); a document that cannot be a
row (not an object, no id or a repeated one, no readable ``created_at``) is left out of the tables (and so
out of history), while the file keeps it and :meth:`~cavra.store.base.Store.verify_chain` reports it.
The ``sequence`` column numbers the documents that are rows in file order (in a file
this program wrote, that is each document's own ``sequence``).

:func:`read_back` reads what the file holds besides the delivery lines (records, jobs, destinations, the
head and the checkpoint) back out of the database, in the file's layout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cavra.events import canonical_json
from cavra.store.base import iso, parse_iso
from cavra.store.chain import ChainHead
from cavra.store.document import HASH_FIELDS, delivery_columns, index_rows
from cavra.store.jobs import Destination, payload_json
from cavra.store.schema import (
    CHAIN_NAME,
    UTCDateTime,
    chain_checkpoints,
    chain_head,
    deliveries,
    delivery_group_members,
    delivery_groups,
    destinations,
    jobs,
    metadata,
    pd_destination_totals,
    pd_event_streaks,
    pd_event_type_totals,
    pd_hourly,
    pd_totals,
    provider_deliveries,
    records,
)
from cavra.store.sqlappend import write_rows
from cavra.store.sqljobs import to_destination, to_job

EPOCH = datetime.fromtimestamp(0, UTC)
#: tables that hold the delivery documents or what is derived from them (kept on an incremental reload)
DELIVERY_TABLES = (
    deliveries,
    provider_deliveries,
    pd_totals,
    pd_destination_totals,
    pd_event_type_totals,
    pd_event_streaks,
    pd_hourly,
)
_JOB_TIMES = ("run_after", "lease_expires_at", "created_at", "updated_at")
_DEST_TIMES = ("opened_at", "probe_at", "paused_until", "tokens_at", "updated_at", "held_at", "held_until")
#: the grouping tables (revision 0009), kept in the file's ``groups`` member as lists of rows
GROUP_TABLES: dict[str, sa.Table] = {"slots": delivery_groups, "members": delivery_group_members}


def when(value: object, default: datetime | None = EPOCH) -> datetime | None:
    """A stored ISO timestamp as aware UTC (``default`` if it is missing or unreadable)."""
    if not isinstance(value, str):
        return default
    try:
        return parse_iso(value)
    except ValueError:
        return default


#: the file's members, the tables each fills, and what each is when the file has none
SECTIONS: dict[str, tuple[tuple[sa.Table, ...], Any]] = {
    "records": ((records,), {}),
    "jobs": ((jobs,), []),
    "destinations": ((destinations,), {}),
    "groups": (tuple(GROUP_TABLES.values()), {}),
}


def section(data: dict[str, Any], name: str) -> Any:
    """A member of :data:`SECTIONS` as the file holds it (its empty value when it has none)."""
    value = data.get(name)
    return SECTIONS[name][1] if value is None else value


def clear(conn: sa.Connection, *, keep_deliveries: bool, keep: set[str]) -> None:
    """Empty the tables, children first: all of them but the delivery tables (``keep_deliveries``) and the
    tables of the sections in ``keep``."""
    kept = {table for name in keep for table in SECTIONS[name][0]}
    for table in reversed(metadata.sorted_tables):
        if not (keep_deliveries and table in DELIVERY_TABLES) and table not in kept:
            conn.exec_driver_sql(f'DELETE FROM "{table.name}"')  # noqa: S608 - names from schema.py


def load(conn: sa.Connection, data: dict[str, Any], ids: set[str], *, start: int, keep: set[str]) -> None:
    """Insert ``data`` (tables emptied by :func:`clear`) but the sections in ``keep``; its deliveries from
    index ``start`` on (the ones before are already in; ``ids`` holds theirs and gets the new ones)."""
    if "records" not in keep:
        _load_records(conn, section(data, "records"))
    if "jobs" not in keep:
        _load_jobs(conn, section(data, "jobs"))
    if "destinations" not in keep:
        _load_destinations(conn, section(data, "destinations"))
    if "groups" not in keep:
        _load_groups(conn, section(data, "groups"))
    head = _head(data.get("chain"))
    conn.execute(
        sa.insert(chain_head).values(
            name=CHAIN_NAME, count=head.count, last_id=head.last_id, last_sha256=head.last_sha256
        )
    )
    checkpoint = data.get("checkpoint")
    if isinstance(checkpoint, dict):
        count = checkpoint.get("count")
        conn.execute(
            sa.insert(chain_checkpoints).values(
                name=CHAIN_NAME,
                count=count if isinstance(count, int) else 0,
                body=canonical_json(checkpoint).decode(),
            )
        )
    load_deliveries(conn, data.get("deliveries") or [], ids, start=start)


def _head(chain: object) -> ChainHead:
    from cavra.store.jsonformat import head

    return head({"chain": chain})


def load_deliveries(conn: sa.Connection, docs: Sequence[Any], ids: set[str], *, start: int) -> None:
    rows: list[tuple[Any, ...]] = []
    index: list[dict[str, Any]] = []
    sequence = int(conn.execute(sa.select(sa.func.max(deliveries.c.sequence))).scalar() or 0)
    for position in range(start, len(docs)):
        doc = docs[position]
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or doc["id"] in ids:
            continue
        created = when(doc.get("created_at"), None)
        cols = delivery_columns(doc)
        if created is None or not isinstance(cols["metadata_kind"], str):
            continue
        ids.add(doc["id"])
        sequence += 1
        body = canonical_json({k: v for k, v in doc.items() if k not in HASH_FIELDS}).decode()
        rows.append(
            (
                sequence,
                doc["id"],
                cols["metadata_kind"],
                created,
                cols["event_type"],
                cols["event_id"],
                cols["subject_kind"],
                cols["subject_id"],
                cols["integration_id"],
                body,
                _text(doc.get("record_sha256")),
                _text(doc.get("previous_sha256")),
            )
        )
        index.extend(index_rows(doc, created))
    if rows:
        max_id = conn.execute(sa.select(sa.func.max(provider_deliveries.c.id))).scalar()
        write_rows(conn, rows, index, max_id=max_id)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _load_records(conn: sa.Connection, by_kind: dict[str, Any]) -> None:
    rows = [
        {
            "kind": kind,
            "record_id": record_id,
            "body": canonical_json(entry["body"]).decode(),
            "created_at": when(entry.get("created_at")),
            "updated_at": when(entry.get("updated_at")),
        }
        for kind, by_id in by_kind.items()
        for record_id, entry in by_id.items()
    ]
    if rows:
        conn.execute(sa.insert(records), rows)


def _load_jobs(conn: sa.Connection, items: list[Any]) -> None:
    rows: list[dict[str, Any]] = []
    seen_ids: set[str] = set()
    seen_keys: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        job_id, key = str(item.get("id")), str(item.get("idempotency_key"))
        if job_id in seen_ids or key in seen_keys:
            continue
        seen_ids.add(job_id)
        seen_keys.add(key)
        payload = item.get("payload")
        row = {c.name: item.get(c.name) for c in jobs.c}
        row.update(
            id=job_id,
            idempotency_key=key,
            kind=str(item.get("kind")),
            provider=str(item.get("provider")),
            payload=payload_json(payload if isinstance(payload, dict) else {}),
            state=str(item.get("state")),
            attempts=int(item.get("attempts") or 0),
        )
        for name in _JOB_TIMES:
            row[name] = when(item.get(name), None if name == "lease_expires_at" else EPOCH)
        rows.append(row)
    if rows:
        conn.execute(sa.insert(jobs), rows)


def _load_destinations(conn: sa.Connection, table: dict[str, Any]) -> None:
    names = {f.name for f in fields(Destination)} - {"provider"}
    rows: list[dict[str, Any]] = []
    for provider, raw in table.items():
        values: dict[str, Any] = dict.fromkeys(names)
        values.update(breaker_state="closed", consecutive_failures=0, updated_at=EPOCH)
        for key, value in raw.items() if isinstance(raw, dict) else []:
            if key in names and value is not None:
                values[key] = when(value, None) if key in _DEST_TIMES else value
        values["updated_at"] = values["updated_at"] or EPOCH
        rows.append({"provider": provider, **values})
    if rows:
        conn.execute(sa.insert(destinations), rows)


def _load_groups(conn: sa.Connection, groups: object) -> None:
    """The ``groups`` member: ``{"slots": [row, ...], "members": [row, ...]}``, one object per table row
    (timestamps as ISO text); a row that lacks a key column is skipped (the file was edited by hand)."""
    for name, table in GROUP_TABLES.items():
        items = groups.get(name) if isinstance(groups, dict) else None
        rows: list[dict[str, Any]] = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or any(item.get(c.name) is None for c in table.primary_key):
                continue
            row = {c.name: item.get(c.name) for c in table.c}
            for c in table.c:
                if isinstance(c.type, UTCDateTime):
                    row[c.name] = when(row[c.name], None if c.nullable else EPOCH)
            rows.append(row)
        if rows:
            conn.execute(sa.insert(table), rows)


def _read_groups(conn: sa.Connection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, table in GROUP_TABLES.items():
        order = [c for c in table.primary_key]
        rows = [
            {c.name: iso(m[c.name]) if isinstance(c.type, UTCDateTime) else m[c.name] for c in table.c}
            for m in conn.execute(sa.select(table).order_by(*order)).mappings()
        ]
        if rows:
            out[name] = rows
    return out


def read_back(conn: sa.Connection) -> dict[str, Any]:
    """``chain`` (a :class:`ChainHead`), ``checkpoint``, ``records``, ``jobs``, ``destinations`` and
    ``groups`` as the file holds them."""
    head = read_head(conn)
    body = conn.execute(
        sa.select(chain_checkpoints.c.body).where(chain_checkpoints.c.name == CHAIN_NAME)
    ).scalar()
    by_kind: dict[str, dict[str, Any]] = {}
    for m in conn.execute(sa.select(records)).mappings():
        by_kind.setdefault(m["kind"], {})[m["record_id"]] = {
            "body": json.loads(m["body"]),
            "created_at": iso(m["created_at"]),
            "updated_at": iso(m["updated_at"]),
        }
    job_items = [
        job_item(to_job(m)) for m in conn.execute(sa.select(jobs).order_by(sa.text("rowid"))).mappings()
    ]
    dests = {
        m["provider"]: destination_item(to_destination(m))
        for m in conn.execute(sa.select(destinations).order_by(destinations.c.provider)).mappings()
    }
    return {
        "chain": head,
        "checkpoint": None if body is None else json.loads(body),
        "records": by_kind,
        "jobs": job_items,
        "destinations": dests,
        "groups": _read_groups(conn),
    }


def read_head(conn: sa.Connection) -> ChainHead:
    h = chain_head.c
    count, last_id, last_sha = conn.execute(
        sa.select(h.count, h.last_id, h.last_sha256).where(h.name == CHAIN_NAME)
    ).one()
    return ChainHead(int(count), last_id, last_sha)


def job_item(job: Any) -> dict[str, Any]:
    """A job as the file keeps it (one JSON object per line, ISO timestamps)."""
    out = {c.name: getattr(job, c.name) for c in jobs.c}
    for name in _JOB_TIMES:
        out[name] = iso(out[name])
    return out


def destination_item(dest: Destination) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(Destination):
        if f.name != "provider":
            value = getattr(dest, f.name)
            out[f.name] = iso(value) if f.name in _DEST_TIMES else value
    return out
