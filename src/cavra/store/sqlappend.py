"""Appending delivery records to the SQL chain, many per transaction.

:func:`append_batch` runs inside the caller's write transaction: it locks and reads the chain head once,
builds every document and its hash in order (each links to the one before it), and writes them with one
``executemany`` per table: the documents, their provider index rows (ids returned in order), the
aggregates those rows change (:mod:`cavra.store.aggregates`), and the head, once. A single
``append_delivery`` is a batch of one; a worker's group of completions is one batch. With a checkpoint
key, the new head is signed once per batch and written to ``chain_checkpoints`` in the same transaction
(:mod:`cavra.store.checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cavra.events import canonical_json
from cavra.store import hourly, rawsql
from cavra.store.aggregates import Aggregates
from cavra.store.base import StoredDelivery, iso, utc
from cavra.store.chain import record_hash
from cavra.store.checkpoint import Checkpoint
from cavra.store.checkpoint_signer import Head, HeadSigner
from cavra.store.document import build_document, delivery_columns, index_rows, new_delivery_id
from cavra.store.schema import CHAIN_NAME, chain_checkpoints, chain_head, deliveries, provider_deliveries

_HEAD_TYPES = [chain_head.c.count.type, chain_head.c.last_id.type, chain_head.c.last_sha256.type]
#: the chain head, locked (PostgreSQL); on SQLite (which holds the database lock) with the greatest index
#: row id, the rowid the next index row gets after
_HEAD = {
    "postgresql": rawsql.Raw(
        'SELECT "count", "last_id", "last_sha256" FROM chain_head WHERE "name" = ? FOR UPDATE',
        [chain_head.c.name.type],
        result=_HEAD_TYPES,
    ),
    "sqlite": rawsql.Raw(
        'SELECT "count", "last_id", "last_sha256", (SELECT max("id") FROM provider_deliveries) '
        'FROM chain_head WHERE "name" = ?',
        [chain_head.c.name.type],
        result=[*_HEAD_TYPES, provider_deliveries.c.id.type],
    ),
}
_SET_HEAD = rawsql.Raw(
    'UPDATE chain_head SET "count" = ?, "last_id" = ?, "last_sha256" = ? WHERE "name" = ?',
    [*_HEAD_TYPES, chain_head.c.name.type],
)
#: the chain's newest signed checkpoint, created or replaced (the same SQL on SQLite and PostgreSQL)
_PUT_CHECKPOINT = rawsql.insert(
    chain_checkpoints,
    ["name", "count", "body"],
    ' ON CONFLICT ("name") DO UPDATE SET "count" = excluded."count", "body" = excluded."body"',
)
_CHECKPOINT_BODY = rawsql.Raw(
    'SELECT "body" FROM chain_checkpoints WHERE "name" = ?', [chain_checkpoints.c.name.type]
)
#: the chain head, its row locked (PostgreSQL; SQLite's write transaction holds the database lock)
_HEAD_LOCKED = rawsql.Raw(
    'SELECT "count", "last_id", "last_sha256" FROM chain_head WHERE "name" = ?',
    [chain_head.c.name.type],
)
_HEAD_LOCKED_PG = rawsql.Raw(_HEAD_LOCKED.sql + " FOR UPDATE", [chain_head.c.name.type])
_DELIVERY_COLUMNS = [c.name for c in deliveries.c]
assert _DELIVERY_COLUMNS == [
    "sequence",
    "id",
    "metadata_kind",
    "created_at",
    "event_type",
    "event_id",
    "subject_kind",
    "subject_id",
    "integration_id",
    "record",
    "record_sha256",
    "previous_sha256",
]
_INDEX_COLUMNS = [c.name for c in provider_deliveries.c]
_INSERT_DELIVERIES = rawsql.insert(deliveries, _DELIVERY_COLUMNS)
_INSERT_INDEX_ROWS = rawsql.insert(provider_deliveries, _INDEX_COLUMNS)
_INSERT_INDEX_PLAIN = sa.insert(provider_deliveries)
_PG_NEXT_IDS = rawsql.Raw(
    "SELECT nextval(pg_get_serial_sequence('provider_deliveries', 'id')) FROM generate_series(1, ?)",
    [sa.Integer()],
)
#: the one top-level field of a hashed document that its stored ``record`` text leaves out
_PREVIOUS = "previous_sha256"


@dataclass(frozen=True)
class Append:
    """One delivery record to append, with the store's fields for it."""

    record: Mapping[str, Any]
    metadata_kind: str
    subject_kind: str | None = None
    subject_id: str | None = None
    integration_id: str | None = None
    created_at: datetime | None = None
    delivery_id: str | None = None


def _next_index_ids(conn: sa.Connection, n: int, max_id: int | None) -> list[int]:
    """Ids for ``n`` new index rows, increasing in append order (the caller holds the chain head, so no
    other appender takes ids meanwhile): SQLite's next rowids (after ``max_id``, read with the head);
    PostgreSQL's sequence, advanced by ``n``."""
    if conn.dialect.name == "postgresql":
        return sorted(int(r[0]) for r in _PG_NEXT_IDS.rows(conn, [n]))
    start = int(max_id or 0)
    return list(range(start + 1, start + n + 1))


def _object(items: dict[str, Any]) -> bytes:
    """The canonical JSON members of ``items`` without the enclosing braces."""
    return canonical_json(items)[1:-1]


def hashed_and_stored(doc: Mapping[str, Any]) -> tuple[str, str]:
    """``(record_sha256, stored record text)`` of a document without ``record_sha256``: the hash of its
    canonical JSON (:func:`cavra.store.chain.record_hash`) and the canonical JSON without
    ``previous_sha256``, from one encoding of its other fields (canonical JSON sorts the keys, so the
    hashed text is the stored text with the previous hash's member put in its place)."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for key, value in doc.items():
        if not isinstance(key, str):  # not canonical-JSON-sortable with the others: the plain way
            body = {k: v for k, v in doc.items() if k != _PREVIOUS}
            return record_hash(doc), canonical_json(body).decode()
        if key < _PREVIOUS:
            before[key] = value
        elif key > _PREVIOUS:
            after[key] = value
    head, tail = _object(before), _object(after)
    stored = b",".join(part for part in (head, tail) if part)
    if _PREVIOUS not in doc:
        return hashlib.sha256(b"{" + stored + b"}").hexdigest(), "{" + stored.decode() + "}"
    member = canonical_json({_PREVIOUS: doc[_PREVIOUS]})[1:-1]
    hashed = b",".join(part for part in (head, member, tail) if part)
    return hashlib.sha256(b"{" + hashed + b"}").hexdigest(), "{" + stored.decode() + "}"


def put_checkpoint(conn: sa.Connection, checkpoint: Checkpoint) -> None:
    """Keep ``checkpoint`` as the chain's newest, inside the caller's write transaction."""
    body = canonical_json(checkpoint.to_dict()).decode()
    _PUT_CHECKPOINT.run(conn, [CHAIN_NAME, checkpoint.count, body])


def read_checkpoint(conn: sa.Connection) -> dict[str, Any] | None:
    """The chain's newest signed checkpoint (its JSON object), or ``None``."""
    found = _CHECKPOINT_BODY.rows(conn, [CHAIN_NAME])
    if not found:
        return None
    try:
        value = json.loads(found[0][0])
    except ValueError:
        return {"unreadable": "the stored checkpoint is not valid JSON"}
    return value if isinstance(value, dict) else {"unreadable": "the stored checkpoint is not an object"}


def replace_checkpoint(conn: sa.Connection, checkpoint: Checkpoint) -> bool:
    """Keep ``checkpoint`` if it signs the current head (read locked, in the caller's write transaction)."""
    stmt = _HEAD_LOCKED_PG if conn.dialect.name == "postgresql" else _HEAD_LOCKED
    count, last_id, last_sha = stmt.rows(conn, [CHAIN_NAME])[0]
    if (int(count), last_id, last_sha) != (checkpoint.count, checkpoint.last_id, checkpoint.head_sha256):
        return False
    put_checkpoint(conn, checkpoint)
    return True


def append_batch(
    conn: sa.Connection,
    items: Sequence[Append],
    *,
    aggregates: bool = True,
    destinations: bool = True,
    hours: bool = True,
    signer: HeadSigner | None = None,
) -> list[StoredDelivery]:
    """Append ``items`` to the chain, in order, inside the caller's write transaction.

    ``aggregates=False`` only for a schema older than revision 0005 (which has no aggregate tables, and
    builds them from the index rows when it is upgraded); ``destinations=False`` for one older than
    revision 0008 (no destination column: revision 0008 fills it from the provider); ``hours=False`` for
    one older than revision 0010 (no ``pd_hourly``: revision 0010 counts the rows). ``signer``: sign the
    new head, if the head found extends the stored checkpoint (schema revision 0007 or later;
    :mod:`cavra.store.checkpoint_signer`)."""
    if not items:
        return []
    head = _HEAD["postgresql" if conn.dialect.name == "postgresql" else "sqlite"].rows(conn, [CHAIN_NAME])
    if not head:
        raise sa.exc.NoResultFound("No row was found when one was required")
    count, last_id, last_sha = head[0][:3]
    max_id = head[0][3] if len(head[0]) > 3 else None
    count = int(count)
    before = (count, last_id, last_sha)
    now = datetime.now(UTC)
    rows: list[tuple[Any, ...]] = []
    index: list[dict[str, Any]] = []
    out: list[StoredDelivery] = []
    for item in items:
        count += 1
        created = utc(item.created_at) if item.created_at is not None else now
        delivery_id = item.delivery_id or new_delivery_id()
        doc = build_document(
            item.record,
            delivery_id=delivery_id,
            sequence=count,
            metadata_kind=item.metadata_kind,
            created_at=str(iso(created)),
            subject_kind=item.subject_kind,
            subject_id=item.subject_id,
            integration_id=item.integration_id,
            previous_id=last_id,
            previous_sha256=last_sha,
        )
        sha, stored = hashed_and_stored(doc)
        cols = delivery_columns(doc)
        rows.append(
            (
                count,
                delivery_id,
                cols["metadata_kind"],
                created,
                cols["event_type"],
                cols["event_id"],
                cols["subject_kind"],
                cols["subject_id"],
                cols["integration_id"],
                stored,
                sha,
                last_sha,
            )
        )
        index.extend(index_rows(doc, created))
        doc["record_sha256"] = sha
        out.append(StoredDelivery(delivery_id, count, item.metadata_kind, created, sha, last_sha, doc))
        last_id, last_sha = delivery_id, sha
    write_rows(
        conn, rows, index, aggregates=aggregates, destinations=destinations, hours=hours, max_id=max_id
    )
    _SET_HEAD.run(conn, [count, last_id, last_sha, CHAIN_NAME])
    if signer is not None:
        _sign(conn, signer, before, (count, last_id, last_sha), now)
    return out


def write_rows(
    conn: sa.Connection,
    rows: Sequence[tuple[Any, ...]],
    index: list[dict[str, Any]],
    *,
    aggregates: bool = True,
    destinations: bool = True,
    hours: bool = True,
    max_id: int | None = None,
) -> None:
    """Insert ``deliveries`` rows (in column order) and their provider index rows, and add the index rows
    to the aggregates and the hourly counts (``hours``), inside the caller's write transaction (the caller
    holds the chain head).

    ``max_id``: on SQLite, the greatest index row id (the next rows get the ids after it). The appenders
    use it, and so does the JSON-file backend when it loads a file (:mod:`cavra.store.jsonload`)."""
    _INSERT_DELIVERIES.executemany(conn, rows)
    if index and not destinations:
        for row in index:
            del row["destination"]
    if index and not aggregates:
        conn.execute(_INSERT_INDEX_PLAIN, index)
    elif index:
        agg = Aggregates(destinations=destinations)
        agg.read(conn, index)
        for row, row_id in zip(index, _next_index_ids(conn, len(index), max_id), strict=True):
            row["id"] = row_id
            agg.add(row, row_id)
        if destinations:
            _INSERT_INDEX_ROWS.executemany(conn, [tuple(r[c] for c in _INDEX_COLUMNS) for r in index])
        else:
            conn.execute(_INSERT_INDEX_PLAIN, index)
        agg.write(conn)
        if hours and destinations:
            hourly.add(conn, index)


def _sign(conn: sa.Connection, signer: HeadSigner, before: Head, after: Head, now: datetime) -> None:
    """Sign the batch's new head if the head it found extends the stored checkpoint, and keep it."""
    found = _CHECKPOINT_BODY.rows(conn, [CHAIN_NAME])
    signed = signer.sign(found[0][0] if found else None, before, after, now)
    if signed is not None:
        _PUT_CHECKPOINT.run(conn, [CHAIN_NAME, *signed])
