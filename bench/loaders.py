"""Loading the dataset into stores through the store's own write path, many records per transaction.

:func:`load_sql` appends through the store's own batch append (``cavra.store.sqlappend.append_batch``,
unchanged: per record ``build_document``, ``record_hash``, the canonical JSON stored, ``delivery_columns``,
``index_rows``; per batch the chain head read and written once, the documents and index rows inserted by
``executemany``, the aggregates read, updated and written back), 20,000 records per transaction on one
connection, with the cyclic garbage collector paused. Building the bench's throwaway SQLite file it also
turns the rollback journal and syncing off for that connection (see :func:`load_sql`).
:func:`copy_to_postgres` copies a loaded SQLite chain into PostgreSQL with COPY (the same documents and
hashes, so the same valid chain); :func:`load_json` appends to the JSON-file store in one atomic rewrite.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bench.dataset import Planned

if TYPE_CHECKING:
    from cavra.store.sqlappend import Append


#: records per transaction when building the dataset (the chain head is read and written once each)
BATCH = 20_000
#: SQLite page cache of the build connection (KiB): the indexes' hot pages stay in memory
BUILD_CACHE_KIB = 512 * 1024


def _chunks(planned: Iterator[Planned], size: int) -> Iterator[list[Append]]:
    """``planned`` as lists of ``size`` :class:`~cavra.store.sqlappend.Append` items."""
    from cavra.store.sqlappend import Append

    chunk: list[Append] = []
    for p in planned:
        chunk.append(
            Append(
                p.record,
                p.metadata_kind,
                subject_kind=p.subject_kind,
                subject_id=p.subject_id,
                integration_id=p.integration_id,
                created_at=p.created_at,
            )
        )
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the duration. The records and documents make no reference
    cycles (reference counting frees them), but the many objects each batch allocates kept triggering
    collections, which walked every live object, the generator's 20,000 templates included: ~30 % of the
    load's CPU time at 50,000 records."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_sql(store: Any, planned: Iterator[Planned], *, batch: int = BATCH, build: bool = False) -> int:
    """Append ``planned`` to a SQL store through ``append_batch`` (what ``append_delivery`` and worker
    completions run: documents, hashes, index rows, aggregates, chain head), ``batch`` records per
    transaction (``BEGIN IMMEDIATE``, as the store's appenders), on one connection, with the cyclic
    garbage collector paused (:func:`_gc_paused`).

    ``build=True`` is for a new SQLite file nothing else uses, copied into the bench's cache only once
    complete (``bench.store_scale``): the build connection then runs with ``journal_mode=OFF``,
    ``synchronous=OFF`` and a 512 MiB page cache (a crash mid-build can leave a broken file, which is
    never cached). Afterwards the file is put back in WAL mode, as the store keeps it, and the connection
    is closed rather than returned to the pool. What is written is the same either way."""
    from cavra.store.sqlappend import append_batch

    total = 0
    tune = build and store.engine.dialect.name == "sqlite"
    with _gc_paused(), store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        if tune:
            for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{BUILD_CACHE_KIB}"):
                raw.execute(f"PRAGMA {pragma}")
        try:
            conn.execution_options(cavra_immediate=True)
            for items in _chunks(planned, batch):
                with conn.begin():
                    total += len(append_batch(conn, items))
        finally:
            if tune:
                raw.execute("PRAGMA journal_mode=WAL")
                conn.invalidate()  # not back into the pool with the build settings
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
    total = 0
    with store._update():  # the store's own locked, atomic rewrite, once for all records (nested: no write)
        for item in planned:
            store.append_delivery(
                item.record,
                metadata_kind=item.metadata_kind,
                subject_kind=item.subject_kind,
                subject_id=item.subject_id,
                integration_id=item.integration_id,
                created_at=item.created_at,
            )
            total += 1
    return total
