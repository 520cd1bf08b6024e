"""The ``--metadata-json`` file format: layout, validation and serialisation (see :mod:`jsonfile`)."""

from __future__ import annotations

import json
import re
from typing import Any

from cavra.store.chain import GENESIS_SHA256, ChainEntry, ChainHead

FORMAT = "cavra.evidence.metadata.v1"
VERSION = 1
#: top-level members written first, in this order (then any others, then records, deliveries and jobs)
FIRST = ("write_id", "format", "version", "chain")
LISTED = ("records", "deliveries", "jobs")

WRITE_ID_PATTERN = re.compile(rb'"write_id": "([0-9a-f]+)"')


def write_id(prefix: bytes) -> str | None:
    m = WRITE_ID_PATTERN.search(prefix)
    return m.group(1).decode() if m else None


def empty() -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "chain": {}, "records": {}, "deliveries": [], "jobs": []}


def shape_problem(data: object) -> str | None:
    if not isinstance(data, dict):
        return f"expected a JSON object, found {type(data).__name__}"
    if data.get("format", FORMAT) != FORMAT:
        return f"format is {data.get('format')!r}, expected {FORMAT!r}"
    version = data.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        return f"version {version!r} is newer than this program understands ({VERSION})"
    for name, kind in (
        ("records", dict),
        ("deliveries", list),
        ("chain", dict),
        ("checkpoint", dict),
        ("jobs", list),
        ("destinations", dict),
        ("groups", dict),
    ):
        if name in data and not isinstance(data[name], kind):
            return f"{name} must be a JSON {'object' if kind is dict else 'array'}"
    for kind_name, by_id in data.get("records", {}).items():
        if not isinstance(by_id, dict) or not all(
            isinstance(e, dict) and "body" in e for e in by_id.values()
        ):
            return f"records.{kind_name} must map ids to {{body, created_at, updated_at}} objects"
    return None


def complete(data: dict[str, Any]) -> dict[str, Any]:
    data.setdefault("format", FORMAT)
    data.setdefault("version", VERSION)
    for name, default in (("chain", {}), ("records", {}), ("deliveries", []), ("jobs", [])):
        data.setdefault(name, default)
    return data


def head(data: dict[str, Any]) -> ChainHead:
    chain = data.get("chain") or {}
    count = chain.get("count")
    last_id = chain.get("last_id")
    last_sha = chain.get("last_sha256")
    return ChainHead(
        count=count if isinstance(count, int) else 0,
        last_id=last_id if isinstance(last_id, str) else None,
        last_sha256=last_sha if isinstance(last_sha, str) else GENESIS_SHA256,
    )


def entry(doc: object) -> ChainEntry:
    if not isinstance(doc, dict):
        return ChainEntry(delivery_id="?", sequence=0, document=None)
    sequence = doc.get("sequence")
    return ChainEntry(
        delivery_id=str(doc.get("id")),
        sequence=sequence if isinstance(sequence, int) else 0,
        document=doc,
    )


_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def dump(value: Any) -> str:
    return _ENCODER.encode(value)


def line(doc: Any) -> str:
    """One delivery document's line in the file."""
    return f"    {dump(doc)}"


def serialize(
    members: list[tuple[str, Any]], records: dict[str, Any], lines: list[str], jobs: list[dict[str, Any]]
) -> str:
    """Top-level ``members`` one per line (``write_id``, ``format``, ``version``, ``chain``, then the
    others), records indented, one delivery document (:func:`line`) and one outbox job per line."""
    head = [f"  {dump(k)}: {dump(v)}" for k, v in members]
    listed = json.dumps(records, ensure_ascii=False, sort_keys=True, indent=2).replace("\n", "\n  ")
    deliveries = ",\n".join(lines)
    parts = [*head, f'  "records": {listed}', f'  "deliveries": [\n{deliveries}\n  ]']
    if jobs:
        items = ",\n".join(f"    {dump(j)}" for j in jobs)
        parts.append(f'  "jobs": [\n{items}\n  ]')
    body = ",\n".join(parts)
    return "{\n" + body + "\n}\n"
