"""Appending delivery records to the SQL chain, many per transaction.

:func:`append_batch` runs inside the caller's write transaction: it locks and reads the chain head once,
builds every document and its hash in order (each links to the one before it), and writes them with one
``executemany`` per table: the documents, their provider index rows (ids returned in order), the
aggregates those rows change (:mod:`cavra.store.aggregates`), and the head, once. A single
``append_delivery`` is a batch of one; a worker's group of completions is one batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cavra.events import canonical_json
from cavra.store import rawsql
from cavra.store.aggregates import Aggregates
from cavra.store.base import StoredDelivery, iso, utc
from cavra.store.chain import record_hash
from cavra.store.document import build_document, delivery_columns, index_rows, new_delivery_id
from cavra.store.schema import CHAIN_NAME, chain_head, deliveries, provider_deliveries

_HEAD = sa.select(chain_head.c.count, chain_head.c.last_id, chain_head.c.last_sha256).where(
    chain_head.c.name == CHAIN_NAME
)
_HEAD_LOCKED = _HEAD.with_for_update()
_SET_HEAD = (
    sa.update(chain_head)
    .where(chain_head.c.name == CHAIN_NAME)
    .values(
        count=sa.bindparam("h_count"), last_id=sa.bindparam("h_last_id"), last_sha256=sa.bindparam("h_sha")
    )
)
_DELIVERY_COLUMNS = [c.name for c in deliveries.c]
_INDEX_COLUMNS = [c.name for c in provider_deliveries.c]
_INSERT_DELIVERIES = rawsql.insert(deliveries, _DELIVERY_COLUMNS)
_INSERT_INDEX_ROWS = rawsql.insert(provider_deliveries, _INDEX_COLUMNS)
_INSERT_INDEX_PLAIN = sa.insert(provider_deliveries)
_MAX_INDEX_ID = sa.select(sa.func.max(provider_deliveries.c.id))
_PG_NEXT_IDS = sa.text(
    "SELECT nextval(pg_get_serial_sequence('provider_deliveries', 'id')) FROM generate_series(1, :n)"
)


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


def _next_index_ids(conn: sa.Connection, n: int) -> list[int]:
    """Ids for ``n`` new index rows, increasing in append order (the caller holds the chain head, so no
    other appender takes ids meanwhile): SQLite's next rowids; PostgreSQL's sequence, advanced by ``n``."""
    if conn.dialect.name == "postgresql":
        return sorted(int(i) for i in conn.execute(_PG_NEXT_IDS, {"n": n}).scalars())
    start = int(conn.execute(_MAX_INDEX_ID).scalar() or 0)
    return list(range(start + 1, start + n + 1))


def append_batch(
    conn: sa.Connection, items: Sequence[Append], *, aggregates: bool = True
) -> list[StoredDelivery]:
    """Append ``items`` to the chain, in order, inside the caller's write transaction.

    ``aggregates=False`` only for a schema older than revision 0005 (which has no aggregate tables, and
    builds them from the index rows when it is upgraded)."""
    if not items:
        return []
    count, last_id, last_sha = conn.execute(_HEAD_LOCKED).one()
    count = int(count)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
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
        sha = record_hash(doc)
        body = {k: v for k, v in doc.items() if k != "previous_sha256"}
        rows.append(
            {
                "sequence": count,
                "id": delivery_id,
                **(delivery_columns(doc) | {"created_at": created}),
                "record": canonical_json(body).decode(),
                "record_sha256": sha,
                "previous_sha256": last_sha,
            }
        )
        index.extend(index_rows(doc, created))
        doc["record_sha256"] = sha
        out.append(StoredDelivery(delivery_id, count, item.metadata_kind, created, sha, last_sha, doc))
        last_id, last_sha = delivery_id, sha
    _INSERT_DELIVERIES.executemany(conn, [tuple(r[c] for c in _DELIVERY_COLUMNS) for r in rows])
    if index and not aggregates:
        conn.execute(_INSERT_INDEX_PLAIN, index)
    elif index:
        agg = Aggregates()
        agg.read(conn, index)
        for row, row_id in zip(index, _next_index_ids(conn, len(index)), strict=True):
            row["id"] = row_id
            agg.add(row, row_id)
        _INSERT_INDEX_ROWS.executemany(conn, [tuple(r[c] for c in _INDEX_COLUMNS) for r in index])
        agg.write(conn)
    conn.execute(_SET_HEAD, {"h_count": count, "h_last_id": last_id, "h_sha": last_sha})
    return out
