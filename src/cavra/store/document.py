"""The stored delivery document and its provider index rows.

A stored delivery is the ``cavra.connector.delivery.v1`` record plus the store's fields (``id``,
``sequence``, ``metadata_kind``, ``created_at``, ``subject_kind``, ``subject_id``, ``integration_id``,
``previous_id``) and the two hash fields. Every backend builds documents and index rows here, so the
SQL tables, the JSON file and the chain verifier agree on one definition.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cavra.errors import InputError, UnstorableError
from cavra.events import canonical_json

#: Fields the store sets on every stored delivery (they override same-named record fields).
STORE_FIELDS = (
    "id",
    "sequence",
    "metadata_kind",
    "created_at",
    "subject_kind",
    "subject_id",
    "integration_id",
    "previous_id",
)
HASH_FIELDS = ("record_sha256", "previous_sha256")
#: Longest error text kept in the provider index (the full text stays in the document).
INDEX_ERROR_CHARS = 1000
#: Provider deliveries in one record.
MAX_PROVIDERS = 999


def new_delivery_id() -> str:
    """``dlv_`` + 12 hex digits of milliseconds since the epoch + 20 random hex digits (sortable by time)."""
    return f"dlv_{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def plain_json(record: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-native deep copy (what is hashed is exactly what is stored and read back)."""
    try:
        value = json.loads(canonical_json(dict(record)))
    except UnicodeEncodeError:  # a lone surrogate: no backend can keep it, and writing it again fails again
        raise UnstorableError(
            "delivery record: text that is not valid Unicode (a lone surrogate) cannot be stored"
        ) from None
    assert isinstance(value, dict)
    return value


def build_document(
    record: Mapping[str, Any],
    *,
    delivery_id: str,
    sequence: int,
    metadata_kind: str,
    created_at: str,
    subject_kind: str | None,
    subject_id: str | None,
    integration_id: str | None,
    previous_id: str | None,
    previous_sha256: str,
) -> dict[str, Any]:
    """The document to store, without ``record_sha256`` (see :func:`cavra.store.chain.record_hash`)."""
    if not isinstance(record, Mapping):
        raise InputError(f"delivery record must be a JSON object, got {type(record).__name__}")
    doc = plain_json({k: v for k, v in record.items() if k not in HASH_FIELDS})
    items = doc.get("deliveries", [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InputError("delivery record: deliveries must be a list of objects")
    if len(items) > MAX_PROVIDERS:
        raise InputError(f"delivery record: more than {MAX_PROVIDERS} provider deliveries")
    for n, item in enumerate(items):
        if not isinstance(item.get("provider"), str) or not item["provider"]:
            raise InputError(f"delivery record: deliveries[{n}].provider must be a non-empty string")
    doc.update(
        id=delivery_id,
        sequence=sequence,
        metadata_kind=metadata_kind,
        created_at=created_at,
        subject_kind=subject_kind,
        subject_id=subject_id,
        integration_id=integration_id if integration_id is not None else _str(record.get("integration_id")),
        previous_id=previous_id,
        previous_sha256=previous_sha256,
    )
    return doc


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text[:INDEX_ERROR_CHARS]


def delivery_columns(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The ``deliveries`` columns a document implies (besides id, sequence and the hashes)."""
    return {
        "metadata_kind": doc.get("metadata_kind"),
        "created_at": doc.get("created_at"),
        "event_type": _str(doc.get("event_type")),
        "event_id": _str(doc.get("event_id")),
        "subject_kind": _str(doc.get("subject_kind")),
        "subject_id": _str(doc.get("subject_id")),
        "integration_id": _str(doc.get("integration_id")),
    }


def index_rows(doc: Mapping[str, Any], created_at: datetime) -> list[dict[str, Any]]:
    """One row per provider delivery (``deliveries[]``, then config ``errors[]`` of destinations not tried).

    A destination named only in ``errors[]`` (its connector could not be loaded) is indexed as a failed
    delivery with no attempts: it did not deliver, and dashboards must say so. A row's ``destination`` is
    the item's (records written before destinations have none: the provider's name).
    """
    common = {
        "delivery_id": doc.get("id"),
        "event_type": _str(doc.get("event_type")),
        "event_id": _str(doc.get("event_id")),
        "metadata_kind": doc.get("metadata_kind"),
        "subject_kind": doc.get("subject_kind"),
        "subject_id": doc.get("subject_id"),
        "created_at": created_at,
    }
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    items = doc.get("deliveries")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        success = item.get("success") is True
        status = _str(item.get("status")) or ("delivered" if success else "failed")
        attempts = item.get("attempts")
        attempt_count = _int(item.get("attempt_count"))
        if attempt_count is None:
            attempt_count = len(attempts) if isinstance(attempts, list) else 0
        provider = str(item.get("provider"))
        destination = _str(item.get("destination")) or provider
        seen.add(destination)
        rows.append(
            common
            | {
                "position": len(rows),
                "provider": provider,
                "destination": destination,
                "integration_id": _str(item.get("integration_id")) or _str(doc.get("integration_id")),
                "success": success,
                "status": status,
                "status_code": _int(item.get("status_code")),
                "attempt_count": attempt_count,
                "error": _error(item.get("error")),
            }
        )
    errors = doc.get("errors")
    for err in errors if isinstance(errors, list) else []:
        if not isinstance(err, dict) or not isinstance(err.get("provider"), str):
            continue
        destination = _str(err.get("destination")) or err["provider"]
        if destination in seen:
            continue
        seen.add(destination)
        rows.append(
            common
            | {
                "position": len(rows),
                "provider": err["provider"],
                "destination": destination,
                "integration_id": _str(doc.get("integration_id")),
                "success": False,
                "status": "failed",
                "status_code": None,
                "attempt_count": 0,
                "error": _error(err.get("error")),
            }
        )
    return rows[: MAX_PROVIDERS + 1]
