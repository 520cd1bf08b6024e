"""The appender's side of checkpoints: sign the new head at every append batch, but only a head that
extends the signed checkpoint the store holds.

Before signing, the appender checks that the head it found (count and hash, under the append lock) is
the one the stored checkpoint signed, and that the checkpoint's signature holds (skipped when it is the
body this process wrote last, for the same head). If not — the tail was deleted or rewritten, the
checkpoint was removed or replaced, a process without the key appended, the key was rotated without the
old public key — it does not sign: the stored checkpoint stays where it was, so ``cavra evidence verify``
fails on it instead of a later append laundering the change. ``cavra evidence checkpoint`` adopts the
head after verifying the whole chain (also how a store that had records before its key gets its first
checkpoint). An empty chain is always signed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime

from cavra.errors import InputError
from cavra.events import canonical_json
from cavra.store.checkpoint import parse_checkpoint, sign_head, signature_problem
from cavra.store.checkpoint_keys import CheckpointKey, CheckpointKeys

log = logging.getLogger("cavra.store")

Head = tuple[int, str | None, str]  # count, last id, last sha256


class HeadSigner:
    """Signs chain heads for one store (kept by the store: it remembers what it wrote last)."""

    def __init__(self, key: CheckpointKey, verifiers: Mapping[str, CheckpointKey] | None = None) -> None:
        self.key = key
        self.keys = CheckpointKeys(key, {**(verifiers or {}), key.key_id: key})
        self._ours: tuple[str, Head] | None = None  # the body this process wrote last, and its head
        self._refused: tuple[str | None] | None = None  # the prior last refused (logged once each)

    def sign(self, prior: str | None, before: Head, after: Head, at: datetime) -> tuple[int, str] | None:
        """``(count, body)`` of the checkpoint to store for ``after``, or ``None`` when ``before`` (the
        head the batch found) does not extend the stored checkpoint ``prior`` (its canonical JSON)."""
        problem = self._problem(prior, before)
        if problem is not None:
            if self._refused != (prior,):
                self._refused = (prior,)
                log.error(
                    "not signing the chain head: %s; the store's checkpoint is left as it was, so `cavra "
                    "evidence verify` reports it. Verify, then `cavra evidence checkpoint` adopts the head",
                    problem,
                )
            return None
        cp = sign_head(self.key, *after, at)
        body = canonical_json(cp.to_dict()).decode()
        self._ours = (body, after)
        return cp.count, body

    def _problem(self, prior: str | None, before: Head) -> str | None:
        count, last_id, sha = before
        if prior is None:
            if count == 0:
                return None
            return f"the store holds no signed checkpoint but {count} records (none yet, or it was removed)"
        if self._ours is not None and self._ours == (prior, before):
            return None
        try:
            cp = parse_checkpoint(json.loads(prior), source="the store's checkpoint")
        except (ValueError, InputError) as exc:
            return f"the store's checkpoint is not readable ({exc})"
        if (cp.count, cp.last_id, cp.head_sha256) != (count, last_id, sha):
            return (
                f"the chain head (#{count}, {sha[:16]}…) is not the one the store's checkpoint signed "
                f"(#{cp.count}, {cp.head_sha256[:16]}…): records were changed outside CAVRA, or appended "
                "without the checkpoint key"
            )
        why = signature_problem(cp, self.keys)
        return None if why is None else f"the store's checkpoint is rejected: {why}"
