"""The tamper-evident chain of stored delivery records.

Each stored delivery document carries ``previous_sha256`` (the ``record_sha256`` of the delivery stored
before it, ``"0" * 64`` for the first) and ``record_sha256``: the SHA-256 of the canonical JSON
(``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``) of the document without its
``record_sha256`` field. The previous hash is inside what is hashed, so altering any record means
rewriting every record after it; the store's chain head (count, last id, last hash) catches a truncated
tail. :func:`verify_entries` walks the chain and names the first altered or missing record.

That proves order, not authenticity: whoever can write the store can delete the tail and rewrite the head,
or rewrite the last records with fresh hashes. Signed checkpoints (:mod:`cavra.store.checkpoint`) close
that gap; :func:`verify_entries` checks their :class:`HeadClaim` s (record #count exists, is ``last_id``
and has ``record_sha256 == head_sha256``) on the same walk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cavra.events import canonical_json

GENESIS_SHA256 = "0" * 64
ALTERED = "altered"
MISSING = "missing/reordered"
#: a record up to a signed checkpoint differs from what was signed (hashes recomputed to hide it)
REWRITTEN = "rewritten"


def record_hash(document: Mapping[str, Any]) -> str:
    """``record_sha256`` of a stored document (its own ``record_sha256`` field is left out)."""
    body = {k: v for k, v in document.items() if k != "record_sha256"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    """What the store recorded as the end of the chain when it last appended."""

    count: int = 0
    last_id: str | None = None
    last_sha256: str = GENESIS_SHA256


@dataclass(frozen=True)
class ChainEntry:
    """One stored delivery as the verifier sees it.

    ``document`` is the parsed stored document (``None`` if it no longer parses); ``columns`` are the
    values a backend keeps outside the document (SQL columns) and ``index`` its provider index rows; both
    must equal what the document implies (``expected_columns``, ``expected_index``). The JSON backend
    derives everything from the document and passes ``None``.
    """

    delivery_id: str
    sequence: int
    document: dict[str, Any] | None
    columns: Mapping[str, Any] | None = None
    expected_columns: Mapping[str, Any] | None = None
    index: list[dict[str, Any]] | None = None
    expected_index: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class HeadClaim:
    """What a signed checkpoint says the chain held: record #``count`` is ``last_id`` with this hash."""

    count: int
    last_id: str | None
    head_sha256: str
    label: str  # names the checkpoint in messages ("the checkpoint in FILE", "witness line 3")


@dataclass(frozen=True)
class ClaimResult:
    """One checkpoint checked against the chain: ``ok``, or why not."""

    label: str
    count: int
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.label, "count": self.count, "ok": self.ok, "detail": self.detail}


@dataclass
class ChainIter:
    """A chain walk: the stored entries in order, and the head the store keeps beside them.

    ``head`` is read in the same snapshot as the entries; a backend may set it when iteration starts, so
    read it only after the entries are consumed.
    """

    entries: Iterator[ChainEntry] = field(default_factory=lambda: iter(()))
    head: ChainHead = field(default_factory=ChainHead)
    #: the newest signed checkpoint the store keeps beside the head (its JSON object), if any
    checkpoint: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChainBreak:
    delivery_id: str
    reason: str  # "altered" | "missing/reordered"
    sequence: int | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "reason": self.reason,
            "sequence": self.sequence,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ChainReport:
    """The verdict of a chain walk: ``ok``, how many records were checked, and the first break."""

    ok: bool
    count: int
    first_bad: ChainBreak | None
    head_sha256: str
    #: the signed checkpoints checked on the walk (not in :meth:`to_dict`: the caller reports them)
    claims: tuple[ClaimResult, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "first_bad": None if self.first_bad is None else self.first_bad.to_dict(),
            "head_sha256": self.head_sha256,
        }


def _check_content(entry: ChainEntry) -> str | None:
    """Why the entry's own content is not what was stored, or ``None``."""
    doc = entry.document
    if doc is None:
        return "the stored record is not valid JSON any more"
    stored = doc.get("record_sha256")
    if not isinstance(stored, str) or record_hash(doc) != stored:
        return "record_sha256 does not match the record's content"
    if doc.get("id") != entry.delivery_id or doc.get("sequence") != entry.sequence:
        return "the stored id or sequence differs from the hashed record"
    expected = entry.expected_columns or {}
    for name, value in (entry.columns or {}).items():
        if expected.get(name) != value:
            return f"the indexed column {name} differs from the hashed record"
    if entry.index is not None and entry.index != entry.expected_index:
        return "the provider index rows differ from the hashed record"
    return None


class _Claims:
    """Signed head claims checked on a chain walk, each at the record it names."""

    def __init__(self, claims: Sequence[HeadClaim]) -> None:
        self.order = list(claims)
        self.by_count: dict[int, list[HeadClaim]] = {}
        for claim in claims:
            if claim.count > 0:  # a checkpoint of the empty chain holds whatever was appended since
                self.by_count.setdefault(claim.count, []).append(claim)
        self.results: dict[HeadClaim, ClaimResult] = {
            c: ClaimResult(c.label, 0, True, "the empty chain") for c in claims if c.count == 0
        }
        self.held = 0  # the highest index a claim has proven intact so far

    def at(self, entry: ChainEntry, sha: str, note: Callable[[str, str, int | None, str], None]) -> None:
        below = self.held  # claims at lower indices that held (two at this index may disagree)
        for claim in self.by_count.pop(entry.sequence, []):
            if entry.delivery_id == claim.last_id and sha == claim.head_sha256:
                self.held = claim.count
                self.results[claim] = ClaimResult(claim.label, claim.count, True, "holds")
                continue
            span = f"#{below + 1}" if below + 1 == claim.count else f"#{below + 1}…#{claim.count}"
            detail = (
                f"record #{claim.count} ({entry.delivery_id}) is not the record {claim.label} signed "
                f"({claim.last_id}, sha256 {claim.head_sha256[:16]}…): a record in {span} was rewritten "
                "after it was signed (its hashes and the chain head recomputed to hide it)"
            )
            self.results[claim] = ClaimResult(claim.label, claim.count, False, detail)
            note(entry.delivery_id, REWRITTEN, below + 1, detail)

    def finish(
        self, last_seq: int, note: Callable[[str, str, int | None, str], None]
    ) -> tuple[ClaimResult, ...]:
        for count in sorted(self.by_count):
            for claim in self.by_count[count]:
                first = last_seq + 1 if count > last_seq else count
                detail = (
                    f"{claim.label} covers {claim.count} records ending at {claim.last_id}, but record "
                    f"#{first} is missing from the stored chain (it ends at #{last_seq}): records were "
                    "removed"
                )
                self.results[claim] = ClaimResult(claim.label, claim.count, False, detail)
                note(str(claim.last_id), MISSING, first, detail)
        return tuple(self.results[claim] for claim in self.order)


def verify_entries(walk: ChainIter, claims: Sequence[HeadClaim] = ()) -> ChainReport:
    """Walk entries in chain order; report the first altered, missing or reordered record, and check each
    signed head claim at the record it names."""
    checks = _Claims(claims)
    first_bad: ChainBreak | None = None
    count = 0
    prev_id: str | None = None
    prev_sha = GENESIS_SHA256
    prev_seq = 0

    def note(delivery_id: str, reason: str, sequence: int | None, detail: str) -> None:
        nonlocal first_bad
        if first_bad is None:
            first_bad = ChainBreak(delivery_id, reason, sequence, detail)

    for entry in walk.entries:
        count += 1
        doc = entry.document or {}
        problem = _check_content(entry)
        linked_id = doc.get("previous_id") == prev_id
        if entry.sequence == prev_seq + 1 and linked_id and doc.get("previous_sha256") != prev_sha:
            # this record is intact, so the one before it changed after this one was written
            if problem is None:
                note(
                    str(prev_id or entry.delivery_id),
                    ALTERED,
                    prev_seq or entry.sequence,
                    f"{prev_id}: its hash is not the previous_sha256 that {entry.delivery_id} recorded"
                    if prev_id
                    else f"{entry.delivery_id}: previous_sha256 of the first record is not the genesis hash",
                )
        elif entry.sequence != prev_seq + 1 or not linked_id:
            named = doc.get("previous_id")
            if isinstance(named, str) and named != prev_id and entry.sequence > prev_seq + 1:
                note(
                    named,
                    MISSING,
                    entry.sequence - 1,
                    f"record #{entry.sequence - 1} ({named}) is missing before {entry.delivery_id}",
                )
            elif problem is None:
                after = f"after {prev_id}" if prev_id else "at the start of the chain"
                note(
                    entry.delivery_id,
                    MISSING,
                    entry.sequence,
                    f"{entry.delivery_id} (#{entry.sequence}) does not follow the record {after}",
                )
        if problem is not None:
            note(entry.delivery_id, ALTERED, entry.sequence, f"{entry.delivery_id}: {problem}")
        prev_id = entry.delivery_id
        prev_sha = str(doc.get("record_sha256", ""))
        prev_seq = entry.sequence
        checks.at(entry, prev_sha, note)

    checked = checks.finish(prev_seq, note)

    head = walk.head
    if head.count > prev_seq:
        missing = head.last_id or "?"
        note(
            missing,
            MISSING,
            prev_seq + 1,
            f"the chain head records {head.count} deliveries ending at {missing}, "
            f"but the stored chain ends at #{prev_seq}",
        )
    elif head.count < prev_seq:
        note(str(prev_id), ALTERED, prev_seq, f"the stored chain runs past its head (#{head.count})")
    elif head.count and (head.last_id != prev_id or head.last_sha256 != prev_sha):
        note(str(prev_id), ALTERED, prev_seq, f"{prev_id}: the last record differs from the chain head")
    return ChainReport(
        ok=first_bad is None, count=count, first_bad=first_bad, head_sha256=prev_sha, claims=checked
    )
