"""Loading the dataset into stores through the store's own write path, many records per transaction.

:func:`load_sql` appends through the store's own batch append (``cavra.store.sqlappend.append_batch``:
documents, hashes, index rows, aggregates, chain head), ``batch`` records per transaction;
:func:`copy_to_postgres` copies a loaded SQLite chain into PostgreSQL with COPY (the same documents and
hashes, so the same valid chain); :func:`load_json` appends to the JSON-file store in one atomic rewrite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bench.dataset import Planned


def _chunks(planned: Iterator[Planned], size: int) -> Iterator[list[Planned]]:
    chunk: list[Planned] = []
    for item in planned:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load_sql(store: Any, planned: Iterator[Planned], *, batch: int = 2000) -> int:
    """Append ``planned`` to a SQL store through ``append_batch`` (what ``append_delivery`` and worker
    completions run: documents, hashes, index rows, aggregates, chain head), ``batch`` records per
    transaction."""
    from cavra.store.sqlappend import Append, append_batch

    total = 0
    for chunk in _chunks(planned, batch):
        items = [
            Append(
                p.record,
                p.metadata_kind,
                subject_kind=p.subject_kind,
                subject_id=p.subject_id,
                integration_id=p.integration_id,
                created_at=p.created_at,
            )
            for p in chunk
        ]
        with store.engine.connect() as conn:
            conn.execution_options(cavra_immediate=True)
            with conn.begin():
                total += len(append_batch(conn, items))
    return total


def copy_to_postgres(src: Any, dst: Any, *, batch: int = 5000) -> int:
    """Copy a loaded SQLite store's chain into an empty PostgreSQL store (COPY), byte for byte.

    The same documents, hashes and index rows (so the same valid chain); the head and the index's id
    sequence are set as appends would have left them, and the tables analysed as autovacuum would.
    Rows are read with the SQLite driver and written as text, which PostgreSQL parses into its types.
    """
    import sqlalchemy as sa

    from cavra.store.schema import (
        CHAIN_NAME,
        chain_head,
        deliveries,
        pd_event_streaks,
        pd_event_type_totals,
        pd_totals,
        provider_deliveries,
    )

    tables = (
        (deliveries, "sequence"),
        (provider_deliveries, "id"),
        (pd_totals, "metadata_kind, provider"),
        (pd_event_type_totals, "metadata_kind, event_key"),
        (pd_event_streaks, "metadata_kind, provider, event_key"),
    )
    copied = 0
    raw_src = src.engine.raw_connection()
    try:
        with dst.engine.connect() as dconn:
            raw = dconn.connection.driver_connection
            with dconn.begin():
                for table, order in tables:
                    names = ", ".join(c.name for c in table.c)
                    cur = raw_src.cursor()
                    cur.execute(f"SELECT {names} FROM {table.name} ORDER BY {order}")
                    with raw.cursor() as out, out.copy(f"COPY {table.name} ({names}) FROM STDIN") as cp:
                        while rows := cur.fetchmany(batch):
                            for row in rows:
                                cp.write_row(row)
                            if table is deliveries:
                                copied += len(rows)
                    cur.close()
                head = raw_src.cursor()
                head.execute(
                    "SELECT count, last_id, last_sha256 FROM chain_head WHERE name = ?", (CHAIN_NAME,)
                )
                count, last_id, last_sha = head.fetchone()
                head.close()
                dconn.execute(
                    sa.update(chain_head)
                    .where(chain_head.c.name == CHAIN_NAME)
                    .values(count=count, last_id=last_id, last_sha256=last_sha)
                )
                dconn.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('provider_deliveries', 'id'), "
                    "(SELECT COALESCE(MAX(id), 1) FROM provider_deliveries))"
                )
    finally:
        raw_src.close()
    with dst.engine.connect() as dconn:
        auto = dconn.execution_options(isolation_level="AUTOCOMMIT")
        for name in ("deliveries", "provider_deliveries", "records", "pd_totals", "pd_event_streaks"):
            auto.exec_driver_sql(f"ANALYZE {name}")
    return copied


def load_json(store: Any, planned: Iterator[Planned]) -> int:
    """Append ``planned`` to the JSON-file store as ``append_delivery`` would, in one atomic write."""
    from cavra.store import jsonformat as fmt
    from cavra.store.base import iso, utc
    from cavra.store.chain import record_hash
    from cavra.store.document import build_document, new_delivery_id

    total = 0
    with store._update() as data:  # the store's own locked, atomic rewrite, once for all records
        for item in planned:
            head = fmt.head(data)
            sequence = head.count + 1
            delivery_id = new_delivery_id()
            doc = build_document(
                item.record,
                delivery_id=delivery_id,
                sequence=sequence,
                metadata_kind=item.metadata_kind,
                created_at=str(iso(utc(item.created_at))),
                subject_kind=item.subject_kind,
                subject_id=item.subject_id,
                integration_id=item.integration_id,
                previous_id=head.last_id,
                previous_sha256=head.last_sha256,
            )
            doc["record_sha256"] = sha = record_hash(doc)
            data["deliveries"].append(doc)
            data["chain"] = {"count": sequence, "last_id": delivery_id, "last_sha256": sha}
            total += 1
    return total
