"""Event identity, severity order and the schema ids the project emits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cavra.errors import InputError, not_found
from cavra.storable import check_storable

DELIVERY_SCHEMA = "cavra.connector.delivery.v1"
#: ``cavra integration deliver --json`` for a file of many events: ``{schema_version, events, success, …}``
DELIVERY_BATCH_SCHEMA = "cavra.connector.delivery.batch.v1"
WEBHOOK_SCHEMA = "cavra.webhook.evidence.v1"
EVIDENCE_BUNDLE = "cavra.evidence_bundle"

#: Severity order, lowest first. ``max_severity`` is chosen by this order, never alphabetically.
SEVERITIES = ("info", "low", "medium", "high", "critical")
_RANK = {name: i for i, name in enumerate(SEVERITIES)}

#: the event endpoint-management providers (Jamf, Intune, Linux fleet) take: an export's publication
ENDPOINT_PUBLICATION = "cavra.endpoint_management.publication"


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
    """Validate an event object and give it an ``event_id``; names the source on error.

    Every face validates events here, so an event the store could not keep (a NUL character or a lone
    surrogate in any key or value, see :mod:`cavra.storable`) is refused before anything is queued or sent.
    """
    if not isinstance(raw, dict):
        raise InputError(f"{source}: must be a JSON object, got {type(raw).__name__}")
    check_storable(raw, source)
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
        raise InputError(not_found(path)) from None
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


#: file suffixes always read as JSON Lines (one event per line)
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise InputError(not_found(path)) from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSON file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None


def _json_lines(path: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {n}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON (column {exc.colno}: {exc.msg})") from None
        events.append((f"line {n}", normalize_event(raw, source=where)))
    return events


def _array(path: str, raw: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    if raw and not isinstance(raw[0], dict):
        raise InputError(
            f"{path}: must be a JSON object or an array of JSON objects (index 0 is {type(raw[0]).__name__})"
        )
    return [(f"index {i}", normalize_event(item, source=f"{path}: index {i}")) for i, item in enumerate(raw)]


def load_events_file(path: str) -> tuple[list[dict[str, Any]], bool]:
    """Read an event file that may hold many events; return ``(events, many)``.

    ``many`` is false for a file holding one JSON object (read exactly as :func:`load_event_file` does)
    and true for a JSON array of objects or JSON Lines (a ``.jsonl``/``.ndjson`` file, or any file whose
    content is several JSON values one per line). Every event is validated before this returns; errors
    name the file and the line (JSON Lines) or index (array). Duplicate event ids are refused.
    """
    text = _read_text(path)
    if path.lower().endswith(JSONL_SUFFIXES):
        located = _json_lines(path, text)
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise InputError(
                    f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
                ) from None
            located = _json_lines(path, text)  # several JSON values: JSON Lines
        else:
            if not isinstance(raw, list):
                return [normalize_event(raw, source=path)], False
            located = _array(path, raw)
    if not located:
        raise InputError(f"{path}: holds no events")
    seen: dict[str, str] = {}
    for where, event in located:
        first = seen.setdefault(event["event_id"], where)
        if first != where:
            raise InputError(
                f"{path}: {where}: duplicate event_id {event['event_id']!r} (first at {first}); "
                "every event in a file needs its own event_id"
            )
    return [event for _, event in located], True
