"""Signed checkpoints of the delivery chain head (``cavra.evidence.checkpoint.v1``).

A checkpoint says "the chain had ``count`` records, the last one ``last_id`` with ``record_sha256`` =
``head_sha256``" at ``created_at``, signed with a key (:mod:`cavra.store.checkpoint_keys`). The signature
covers the canonical JSON (:func:`cavra.events.canonical_json`) of every field but ``signature``. Because
each record's hash covers the one before it, a checkpoint that still holds proves that records 1 … count
are exactly what was stored when it was signed: nobody can delete the tail or rewrite records (and
recompute every hash and the chain head) without the key.

The store signs its head at every append batch (when a signing key is configured) and keeps the newest
checkpoint beside the head (the ``chain_checkpoints`` table, the JSON file's ``checkpoint`` member).
Copies kept elsewhere (``cavra evidence checkpoint --output``, events delivered to a SIEM) are what make a
rewrite that happened before a later honest append visible: :func:`find_checkpoints` reads them back from
a file of bare checkpoints or from a SIEM's export of the events.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cavra.errors import InputError
from cavra.events import canonical_json
from cavra.store.base import iso
from cavra.store.chain import GENESIS_SHA256, HeadClaim
from cavra.store.checkpoint_keys import ALGORITHMS, CheckpointKey, CheckpointKeys

CHECKPOINT_SCHEMA = "cavra.evidence.checkpoint.v1"
#: the event type of a checkpoint delivered through a connector
CHECKPOINT_EVENT = "cavra.evidence.checkpoint"
CHAIN = "deliveries"
_SHA = frozenset("0123456789abcdef")
#: how deep :func:`find_checkpoints` looks inside one exported SIEM event
_MAX_DEPTH = 8


@dataclass(frozen=True)
class Checkpoint:
    """A signed chain head."""

    count: int
    last_id: str | None
    head_sha256: str
    created_at: str
    algorithm: str
    key_id: str
    signature: str  # base64 (standard alphabet, padded)

    def signed_fields(self) -> dict[str, Any]:
        return {
            "schema_version": CHECKPOINT_SCHEMA,
            "chain": CHAIN,
            "count": self.count,
            "last_id": self.last_id,
            "head_sha256": self.head_sha256,
            "created_at": self.created_at,
            "algorithm": self.algorithm,
            "key_id": self.key_id,
        }

    def payload(self) -> bytes:
        return canonical_json(self.signed_fields())

    def to_dict(self) -> dict[str, Any]:
        return {**self.signed_fields(), "signature": self.signature}

    def describe(self) -> str:
        return f"the checkpoint of #{self.count} ({self.created_at}, key {self.key_id})"

    def claim(self, label: str) -> HeadClaim:
        return HeadClaim(self.count, self.last_id, self.head_sha256, label)


def sign_head(
    key: CheckpointKey, count: int, last_id: str | None, head_sha256: str, at: datetime | None = None
) -> Checkpoint:
    """Sign the chain head ``(count, last_id, head_sha256)`` now (or at ``at``). On the append path: one
    canonical encoding and one signature (HMAC ~10 µs, Ed25519 ~60 µs; docs/store.md)."""
    created = str(iso(at or datetime.now(UTC)))
    cp = Checkpoint(count, last_id, head_sha256, created, key.algorithm, key.key_id, "")
    signature = base64.b64encode(key.sign(cp.payload())).decode()
    return replace(cp, signature=signature)


def _problem(data: dict[str, Any]) -> str | None:
    if data.get("schema_version") != CHECKPOINT_SCHEMA:
        return f"schema_version must be {CHECKPOINT_SCHEMA!r}"
    if data.get("chain", CHAIN) != CHAIN:
        return f"chain must be {CHAIN!r}"
    count = data.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return "count must be a non-negative integer"
    last_id = data.get("last_id")
    if not (last_id is None if count == 0 else isinstance(last_id, str) and last_id):
        return "last_id must be the id of record #count (null for an empty chain)"
    sha = data.get("head_sha256")
    if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _SHA:
        return "head_sha256 must be 64 lowercase hex digits"
    if count == 0 and sha != GENESIS_SHA256:
        return "head_sha256 of an empty chain must be the genesis hash"
    for name in ("created_at", "key_id", "signature"):
        if not isinstance(data.get(name), str) or not data[name]:
            return f"{name} must be a non-empty string"
    if data.get("algorithm") not in ALGORITHMS:
        return f"algorithm must be one of {', '.join(ALGORITHMS)}"
    return None


def parse_checkpoint(data: object, *, source: str) -> Checkpoint:
    """A checkpoint from its JSON object; :class:`InputError` naming ``source`` and the field if not one."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: a checkpoint must be a JSON object, got {type(data).__name__}")
    problem = _problem(data)
    if problem is not None:
        raise InputError(f"{source}: not a valid {CHECKPOINT_SCHEMA} checkpoint: {problem}")
    return Checkpoint(
        count=data["count"],
        last_id=data["last_id"],
        head_sha256=data["head_sha256"],
        created_at=data["created_at"],
        algorithm=data["algorithm"],
        key_id=data["key_id"],
        signature=data["signature"],
    )


def signature_problem(cp: Checkpoint, keys: CheckpointKeys) -> str | None:
    """Why ``cp``'s signature does not hold under the configured keys, or ``None`` when it does."""
    key = keys.verifiers.get(cp.key_id)
    if key is None:
        return (
            f"it is signed with key {cp.key_id}, which is not a configured checkpoint key "
            f"(configured: {keys.describe()})"
        )
    if key.algorithm != cp.algorithm:
        return f"its algorithm {cp.algorithm} is not the algorithm of key {cp.key_id}"
    try:
        signature = base64.b64decode(cp.signature, validate=True)
    except (binascii.Error, ValueError):
        return "its signature is not base64"
    if not key.verify(cp.payload(), signature):
        return f"its signature does not verify with key {cp.key_id} (forged or altered)"
    return None


# --- checkpoints read back from files: exported ones, and a SIEM's export of the events ------------------
def _walk(value: Any, depth: int) -> Iterator[dict[str, Any]]:
    """Every checkpoint object inside ``value``: itself, its members and items, and JSON text members
    (a Splunk export's ``result._raw``, a Log Analytics column holding the event as text)."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{") and CHECKPOINT_SCHEMA in text:
            try:
                value = json.loads(text)
            except ValueError:
                return
        else:
            return
    if isinstance(value, dict):
        if value.get("schema_version") == CHECKPOINT_SCHEMA:
            yield value
            return
        for member in value.values():
            yield from _walk(member, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, depth + 1)


def find_checkpoints(text: str, *, source: str) -> list[Checkpoint]:
    """The checkpoints in a file's text, in order of appearance, each once.

    Accepted: one checkpoint (``--output`` of ``cavra evidence checkpoint``), a JSON array, or JSON Lines
    of bare checkpoints or of exported SIEM events that carry one, however wrapped (Splunk's
    ``{"event": {...}}``, a search export's ``{"result": {"_raw": "<JSON text>"}}``, Datadog's
    ``attributes``, a webhook body, ...). A malformed checkpoint is an error naming its line."""
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{source}: empty file, expected checkpoints")
    documents: list[tuple[str, Any]]
    try:
        documents = [(source, json.loads(stripped))]
    except ValueError:
        documents = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                documents.append((f"{source}: line {n}", json.loads(line)))
            except ValueError as exc:
                raise InputError(f"{source}: line {n}: not valid JSON ({exc})") from None
    found: list[Checkpoint] = []
    seen: set[str] = set()
    for where, doc in documents:
        for raw in _walk(doc, 0):
            cp = parse_checkpoint(raw, source=where)
            if cp.signature not in seen:
                seen.add(cp.signature)
                found.append(cp)
    if not found:
        raise InputError(f"{source}: no {CHECKPOINT_SCHEMA} checkpoint found")
    return found


def checkpoint_event(cp: Checkpoint) -> dict[str, Any]:
    """The event that delivers ``cp`` through a connector, so the SIEM witnesses the chain."""
    return {
        "event_type": CHECKPOINT_EVENT,
        "event_id": f"ckp_{cp.count}_{cp.head_sha256[:24]}",
        "severity": "info",
        "summary": f"CAVRA evidence chain checkpoint: {cp.count} delivery records, "
        f"head {cp.head_sha256[:16]}…",
        "checkpoint": cp.to_dict(),
    }
