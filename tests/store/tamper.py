"""An attacker with write access to the store but not the checkpoint key: they can delete the tail and
rewrite the chain head, or rewrite records and recompute every hash after them (and the head), so the
unkeyed chain still verifies. These helpers do exactly that on SQLite, PostgreSQL and the JSON file."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from cavra.store import Store, record_hash
from cavra.store.chain import GENESIS_SHA256
from cavra.store.jsonfile import JsonFileStore
from cavra.store.sql import SqlStore

Doc = dict[str, Any]


def _json(store: JsonFileStore) -> Doc:
    data = json.loads(store.path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _json_save(store: JsonFileStore, data: Doc) -> None:
    store.path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def delete_tail(store: Store, keep: int) -> None:
    """Remove every record after #keep and rewrite the chain head to end at #keep."""
    if isinstance(store, JsonFileStore):
        data = _json(store)
        data["deliveries"] = data["deliveries"][:keep]
        last = data["deliveries"][-1] if keep else None
        data["chain"] = {
            "count": keep,
            "last_id": last["id"] if last else None,
            "last_sha256": last["record_sha256"] if last else GENESIS_SHA256,
        }
        _json_save(store, data)
        return
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "DELETE FROM provider_deliveries WHERE delivery_id IN "
                "(SELECT id FROM deliveries WHERE sequence > :k)"
            ),
            {"k": keep},
        )
        conn.execute(sa.text("DELETE FROM deliveries WHERE sequence > :k"), {"k": keep})
        row = conn.execute(
            sa.text("SELECT id, record_sha256 FROM deliveries WHERE sequence = :k"), {"k": keep}
        ).first()
        conn.execute(
            sa.text("UPDATE chain_head SET count = :k, last_id = :i, last_sha256 = :h"),
            {"k": keep, "i": row[0] if row else None, "h": row[1] if row else GENESIS_SHA256},
        )


def rewrite_from(store: Store, sequence: int, change: Callable[[Doc], None]) -> None:
    """Change record #sequence with ``change`` (fields outside the SQL columns and index, so only the
    hashes give it away), then recompute its hash, every later record's links and hashes, and the head."""
    if isinstance(store, JsonFileStore):
        data = _json(store)
        docs: list[Doc] = data["deliveries"]
    else:
        assert isinstance(store, SqlStore)
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT record, previous_sha256, record_sha256 FROM deliveries ORDER BY sequence")
            ).all()
        docs = [json.loads(r[0]) | {"previous_sha256": r[1], "record_sha256": r[2]} for r in rows]
    prev = docs[sequence - 2]["record_sha256"] if sequence > 1 else GENESIS_SHA256
    for doc in docs[sequence - 1 :]:
        if doc["sequence"] == sequence:
            change(doc)
        doc["previous_sha256"] = prev
        doc.pop("record_sha256")
        doc["record_sha256"] = prev = record_hash(doc)
    if isinstance(store, JsonFileStore):
        data["chain"]["last_sha256"] = prev
        _json_save(store, data)
        return
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        for doc in docs[sequence - 1 :]:
            body = {k: v for k, v in doc.items() if k not in ("previous_sha256", "record_sha256")}
            conn.execute(
                sa.text(
                    "UPDATE deliveries SET record = :r, record_sha256 = :h, previous_sha256 = :p "
                    "WHERE sequence = :s"
                ),
                {
                    "r": json.dumps(body),
                    "h": doc["record_sha256"],
                    "p": doc["previous_sha256"],
                    "s": doc["sequence"],
                },
            )
        conn.execute(sa.text("UPDATE chain_head SET last_sha256 = :h"), {"h": prev})


def forge_session(doc: Doc) -> None:
    """What an attacker might change: who the evidence is about."""
    doc["session_id"] = "someone-else"


def drop_stored_checkpoint(store: Store) -> None:
    if isinstance(store, JsonFileStore):
        data = _json(store)
        data.pop("checkpoint", None)
        _json_save(store, data)
        return
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM chain_checkpoints"))


def put_stored_checkpoint(store: Store, checkpoint: Doc) -> None:
    """Replace the store's checkpoint (an attacker replaying an older, genuinely signed one)."""
    if isinstance(store, JsonFileStore):
        data = _json(store)
        data["checkpoint"] = checkpoint
        _json_save(store, data)
        return
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE chain_checkpoints SET count = :c, body = :b"),
            {"c": checkpoint["count"], "b": json.dumps(checkpoint)},
        )
