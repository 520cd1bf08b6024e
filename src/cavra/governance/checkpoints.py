"""The evidence chain's façade: verify it (order, and authenticity against signed checkpoints), export and
deliver signed checkpoints. ``cavra evidence verify|checkpoint`` and the worker's schedule call these.

Without a checkpoint key the chain proves order only; with one, the store's own checkpoint, exported
checkpoint files and checkpoints a SIEM witnessed are each checked against the chain (docs/store.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cavra.config import LoadedConfig
from cavra.errors import ConfigError, InputError, StoreError
from cavra.service import deliver_event
from cavra.store import Store
from cavra.store.chain import REWRITTEN, ChainReport, ClaimResult, HeadClaim, verify_entries
from cavra.store.checkpoint import (
    Checkpoint,
    checkpoint_event,
    find_checkpoints,
    parse_checkpoint,
    sign_head,
    signature_problem,
)
from cavra.store.checkpoint_keys import ENV_KEY, ENV_PUBLIC_KEY_FILE, CheckpointKeys, load_keys

ORDER_ONLY = "order-only"
SIGNED = "signed"
STORED = "the store's checkpoint"
ORDER_ONLY_STATEMENT = (
    "order only: no checkpoint key is configured, so this proves the stored records form one unbroken "
    "chain, not that they are authentic: whoever can write the store can delete its tail or rewrite "
    "records (recomputing every hash and the chain head) and the chain still verifies. Configure "
    f"{ENV_KEY} (or {ENV_PUBLIC_KEY_FILE} to verify) and check exported checkpoints with --checkpoint "
    "and --witness (docs/store.md)"
)

__all__ = [
    "ORDER_ONLY",
    "REWRITTEN",
    "SIGNED",
    "Verification",
    "checkpoint_keys",
    "current_checkpoint",
    "deliver_checkpoint",
    "export_checkpoint",
    "verify_evidence",
]


def checkpoint_keys(
    key_file: str | None = None, public_key_files: Sequence[str] = (), old_key_files: Sequence[str] = ()
) -> CheckpointKeys:
    """The configured checkpoint keys (the environment, or ``--key-file`` / ``--public-key-file`` /
    ``--old-key-file``)."""
    return load_keys(key_file=key_file, public_key_files=public_key_files, old_key_files=old_key_files)


@dataclass(frozen=True)
class Verification:
    """A verified chain: the walk's report, the checkpoints checked and the ones rejected."""

    location: str
    report: ChainReport
    keys: tuple[str, ...]
    rejected: tuple[ClaimResult, ...]  # checkpoints whose signature failed, or a missing/unsigned one

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.rejected

    @property
    def mode(self) -> str:
        return SIGNED if self.keys else ORDER_ONLY

    @property
    def checkpoints(self) -> tuple[ClaimResult, ...]:
        return self.rejected + self.report.claims

    def statement(self) -> str:
        if not self.keys:
            return ORDER_ONLY_STATEMENT
        held = [c for c in self.report.claims if c.ok]
        if not self.ok:
            return (
                f"signed checkpoints checked with key(s) {', '.join(self.keys)}: the chain is not authentic"
            )
        newest = max((c.count for c in held), default=0)
        if newest == 0:
            return f"signed: the chain is empty, nothing to check yet (key(s) {', '.join(self.keys)})"
        return (
            f"signed: {len(held)} signed checkpoint(s) hold (key(s) {', '.join(self.keys)}); records "
            f"#1…#{newest} are exactly what was signed"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.report.to_dict(),
            "ok": self.ok,
            "store": self.location,
            "mode": self.mode,
            "authenticity": self.statement(),
            "keys": list(self.keys),
            "checkpoints": [c.to_dict() for c in self.checkpoints],
        }


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a checkpoint file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None


def _external(checkpoint_files: Sequence[str], witness_files: Sequence[str]) -> list[tuple[str, Checkpoint]]:
    out: list[tuple[str, Checkpoint]] = []
    for option, files in (("--checkpoint", checkpoint_files), ("--witness", witness_files)):
        for path in files:
            found = find_checkpoints(_read(path), source=f"{option} {path}")
            for n, cp in enumerate(found, start=1):
                which = f" #{n} of {len(found)}" if len(found) > 1 else ""
                out.append((f"the checkpoint{which} in {path} (#{cp.count}, {cp.created_at})", cp))
    return out


def _stored_claim(
    stored: dict[str, Any] | None, head_count: int, keys: CheckpointKeys
) -> tuple[HeadClaim | None, ClaimResult | None]:
    """The store's own checkpoint as a claim, or why it is rejected (missing, malformed, forged, or
    behind the head: records appended without the key)."""
    if stored is None:
        if head_count == 0:
            return None, None
        return None, ClaimResult(
            STORED,
            0,
            False,
            f"the store holds no signed checkpoint: records #1…#{head_count} are not covered by a signature "
            "(appended without the checkpoint key, or its checkpoint was removed); `cavra evidence "
            "checkpoint` signs the current head after verifying the chain",
        )
    try:
        cp = parse_checkpoint(stored, source=STORED)
    except InputError as exc:
        return None, ClaimResult(STORED, 0, False, str(exc))
    why = signature_problem(cp, keys)
    if why is not None:
        return None, ClaimResult(STORED, cp.count, False, f"{STORED} is rejected: {why}")
    if cp.count < head_count:
        return cp.claim(STORED), ClaimResult(
            STORED,
            cp.count,
            False,
            f"records #{cp.count + 1}…#{head_count} are not covered by the store's signed checkpoint "
            f"(#{cp.count}): appended by a process without the checkpoint key, or added by someone "
            "without it",
        )
    return cp.claim(STORED), None


def verify_evidence(
    store: Store,
    keys: CheckpointKeys,
    *,
    checkpoint_files: Sequence[str] = (),
    witness_files: Sequence[str] = (),
    allow_unsigned_tail: bool = False,
) -> Verification:
    """Walk the chain, checking the store's signed checkpoint and every checkpoint in the files.

    A checkpoint whose signature does not hold under the configured keys (forged, altered, another key)
    is rejected and fails the verification; checkpoints need a key to be checked at all."""
    if (checkpoint_files or witness_files) and not keys.configured:
        option = "--checkpoint" if checkpoint_files else "--witness"
        raise ConfigError(
            f"{option}: no checkpoint key is configured to check the checkpoints' signatures (set "
            f"{ENV_PUBLIC_KEY_FILE} for Ed25519 or {ENV_KEY} for HMAC, or give --public-key-file/--key-file)"
        )
    claims: list[HeadClaim] = []
    rejected: list[ClaimResult] = []
    for label, cp in _external(checkpoint_files, witness_files):
        why = signature_problem(cp, keys)
        if why is None:
            claims.append(cp.claim(label))
        else:
            rejected.append(ClaimResult(label, cp.count, False, f"{label} is rejected: {why}"))
    walk = store.chain()
    if keys.configured:
        claim, problem = _stored_claim(walk.checkpoint, walk.head.count, keys)
        if claim is not None:
            claims.insert(0, claim)
        unsigned = walk.checkpoint is None or claim is not None  # none yet, or behind the head
        if problem is not None and not (allow_unsigned_tail and unsigned):
            rejected.insert(0, problem)
    report = verify_entries(walk, claims)
    return Verification(store.location, report, tuple(keys.verifiers), tuple(rejected))


def current_checkpoint(store: Store, keys: CheckpointKeys) -> Checkpoint:
    """A signed checkpoint of the current head: the store's own when it signs the head (checked against
    the configured keys), else, with a signing key, a new one signed after the chain verifies."""
    head, stored = store.signed_head()
    if stored is not None:
        cp = parse_checkpoint(stored, source=STORED) if "unreadable" not in stored else None
        current = cp is not None and (cp.count, cp.last_id, cp.head_sha256) == (
            head.count,
            head.last_id,
            head.last_sha256,
        )
        if cp is not None and current and (not keys.configured or signature_problem(cp, keys) is None):
            return cp
    if keys.signer is None:
        raise ConfigError(
            f"no signed checkpoint of the current head (#{head.count}) in {store.location} and no signing "
            f"key configured: set {ENV_KEY} (or CAVRA_CHECKPOINT_KEY_FILE, or --key-file)"
        )
    checked = verify_evidence(store, keys, allow_unsigned_tail=True)
    if not checked.ok:
        bad = checked.report.first_bad
        why = bad.detail if bad is not None else checked.rejected[0].detail
        raise StoreError(f"{store.location}: the chain does not verify, so its head is not signed: {why}")
    cp = sign_head(keys.signer, head.count, head.last_id, head.last_sha256)
    if (checked.report.count, checked.report.head_sha256) != (head.count, head.last_sha256):
        raise StoreError(f"{store.location}: the chain moved while it was verified; run the command again")
    if not store.store_checkpoint(cp):
        raise StoreError(f"{store.location}: the chain moved while it was signed; run the command again")
    return cp


def write_new_file(path: Path, data: object, *, force: bool = False, option: str = "--output") -> None:
    """Write JSON to ``path`` atomically (a temporary file in its directory, fsynced, then linked or
    renamed into place); an existing file is refused unless ``force``. Never a half-written file."""
    if not force and path.exists():
        raise InputError(f"{option} {path}: already exists (give another file, or --force to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file appeared meanwhile: never overwritten silently
    except FileExistsError:
        raise InputError(
            f"{option} {path}: already exists (give another file, or --force to replace it)"
        ) from None
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot write ({exc.strerror})") from None
    finally:
        with suppress(OSError):
            os.unlink(tmp)


def export_checkpoint(store: Store, keys: CheckpointKeys, output: str, *, force: bool = False) -> Checkpoint:
    """Write the current signed checkpoint to ``output`` (a new file unless ``force``)."""
    path = Path(output)
    if not force and path.exists():
        raise InputError(f"--output {path}: already exists (give another file, or --force to replace it)")
    cp = current_checkpoint(store, keys)
    write_new_file(path, cp.to_dict(), force=force)
    return cp


async def deliver_checkpoint(
    store: Store, keys: CheckpointKeys, config: LoadedConfig, providers: list[str] | None, *, retries: int = 1
) -> tuple[Checkpoint, dict[str, Any]]:
    """Deliver the current signed checkpoint as a ``cavra.evidence.checkpoint`` event through the
    configured connectors (so the SIEM witnesses the chain); the delivery record is returned."""
    cp = await asyncio.to_thread(current_checkpoint, store, keys)  # store IO off the event loop
    record = await deliver_event(checkpoint_event(cp), config, providers, retries=retries)
    return cp, record
