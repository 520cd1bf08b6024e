"""Checkpoints on a schedule: ``cavra worker --checkpoint-every 1h --checkpoint-provider splunk``.

Every interval the signed checkpoint of the chain head is delivered as a ``cavra.evidence.checkpoint``
event (:func:`cavra.governance.checkpoints.deliver_checkpoint`), so the SIEM witnesses the chain; a head
that has not moved since the last delivered checkpoint is not sent again. A failed delivery is logged and
tried at the next tick (the checkpoint is not lost: the store keeps it, and the next one covers it).
Run the schedule on one worker (or use cron with ``cavra evidence checkpoint --deliver``); several
workers each send their own, which is harmless but noisy.
"""

from __future__ import annotations

import asyncio
import logging
import re

from cavra.config import LoadedConfig
from cavra.errors import CavraError, ConfigError, InputError
from cavra.governance.checkpoints import checkpoint_keys, deliver_checkpoint
from cavra.service import parse_providers, select_targets
from cavra.store import Store
from cavra.store.checkpoint_keys import ENV_KEY, CheckpointKeys

log = logging.getLogger("cavra.checkpoints")

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
MIN_INTERVAL = 1.0


def parse_interval(text: str, option: str = "--checkpoint-every") -> float:
    """Seconds of ``1h``, ``15m``, ``30s``, ``1d`` (at least one second)."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*([dhms])\s*", text)
    if m is None:
        raise InputError(f"{option}: {text!r} is not an interval like 1h, 15m, 30s or 1d")
    seconds = float(int(m.group(1)) * _UNITS[m.group(2)])
    if seconds < MIN_INTERVAL:
        raise InputError(f"{option}: must be at least 1s")
    return seconds


class CheckpointSchedule:
    """Deliver the signed head through ``providers`` every ``every`` seconds (when it moved)."""

    def __init__(
        self,
        store: Store,
        keys: CheckpointKeys,
        config: LoadedConfig,
        providers: list[str] | None,
        *,
        every: float,
        retries: int = 1,
    ) -> None:
        if not keys.configured:
            raise ConfigError(f"--checkpoint-every: no checkpoint key is configured (set {ENV_KEY})")
        select_targets(config, providers)  # an unknown or unconfigured provider fails at start
        self.store = store
        self.keys = keys
        self.config = config
        self.providers = providers
        self.every = every
        self.retries = retries
        self.sent: tuple[int, str] | None = None  # (count, head) of the last delivered checkpoint
        self.delivered = 0

    async def tick(self) -> bool:
        """Deliver the current checkpoint if the head moved; ``True`` when one was delivered."""
        head, _stored = await asyncio.to_thread(self.store.signed_head)
        if self.sent == (head.count, head.last_sha256):
            return False
        try:
            cp, record = await deliver_checkpoint(
                self.store, self.keys, self.config, self.providers, retries=self.retries
            )
        except CavraError as exc:
            log.warning("checkpoint not delivered: %s", exc)
            return False
        if not record.get("success"):
            failed = [d.get("provider") for d in record.get("deliveries", []) if not d.get("success")]
            log.warning("checkpoint #%d not delivered to %s; next try in %gs", cp.count, failed, self.every)
            return False
        self.sent = (cp.count, cp.head_sha256)
        self.delivered += 1
        log.info("checkpoint #%d delivered (%s)", cp.count, cp.key_id)
        return True

    async def run(self) -> None:
        """Tick now, then every interval, until cancelled."""
        while True:
            await self.tick()
            await asyncio.sleep(self.every)


def from_options(store: Store, config: LoadedConfig, every: str, providers: str) -> CheckpointSchedule:
    """The worker's ``--checkpoint-every`` / ``--checkpoint-provider``; bad options fail at start."""
    return CheckpointSchedule(
        store, checkpoint_keys(), config, parse_providers(providers), every=parse_interval(every)
    )
