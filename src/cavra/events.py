"""Event identity, severity order and the schema ids the project emits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cavra.errors import InputError

DELIVERY_SCHEMA = "cavra.connector.delivery.v1"
WEBHOOK_SCHEMA = "cavra.webhook.evidence.v1"
EVIDENCE_BUNDLE = "cavra.evidence_bundle"

#: Severity order, lowest first. ``max_severity`` is chosen by this order, never alphabetically.
SEVERITIES = ("info", "low", "medium", "high", "critical")
_RANK = {name: i for i, name in enumerate(SEVERITIES)}


def severity_rank(value: object) -> int:
    """Rank of a severity name (unknown names rank as ``info``)."""
    return _RANK.get(str(value).lower(), 0) if value is not None else 0


def max_severity(values: Iterable[object]) -> str:
    best = "info"
    for v in values:
        if severity_rank(v) > severity_rank(best):
            best = str(v).lower()
    return best


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces): the basis of every hash in the project."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def event_id_of(event: Mapping[str, Any]) -> str:
    """The event's stable identity: its own ``event_id`` or a hash of its canonical content."""
    given = event.get("event_id")
    if isinstance(given, str) and given.strip():
        return given.strip()
    digest = hashlib.sha256(canonical_json(dict(event))).hexdigest()
    return f"evt_{digest[:24]}"


def normalize_event(raw: object, *, source: str = "event") -> dict[str, Any]:
    """Validate an event object and give it an ``event_id``; names the source on error."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: must be a JSON object, got {type(raw).__name__}")
    event_type = raw.get("event_type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise InputError(f"{source}: field event_type is required and must be a non-empty string")
    event = dict(raw)
    event["event_id"] = event_id_of(raw)
    return event


def load_event_file(path: str) -> dict[str, Any]:
    """Read an event file; errors name the file and what is wrong."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSON file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    return normalize_event(raw, source=path)
