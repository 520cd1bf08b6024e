"""Emulators served from a background thread (their own event loop), for CLI tests that call asyncio.run.

Also lays out a project directory as the seed's release commands expect (``.cavra/connectors.json`` and the
example records under ``.cavra/release``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from cavra.emulators.framework import Fault, ReceivedRequest
from cavra.emulators.server import EmulatorServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROMOTION = ".cavra/release/rollout-promotion-execution/rollout-promotion-execution.json"
ROLLBACK = ".cavra/release/rollout-rollback-execution/rollout-rollback-execution.json"
MANIFEST = ".cavra/release/endpoint-management-export/endpoint-management-export-manifest.json"
METADATA = ".cavra/evidence/metadata.json"

T = TypeVar("T")


class ThreadedEmulators:
    """An :class:`EmulatorServer` running on a loop in a daemon thread; call its hub through ``call``."""

    def __init__(self, providers: list[str], overrides: dict[str, dict[str, Any]] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="emulators", daemon=True)
        self.server = EmulatorServer(providers=providers, overrides=overrides)

    def _run(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout=30)

    def start(self) -> ThreadedEmulators:
        self.thread.start()
        self._run(self.server.start())
        return self

    def stop(self) -> None:
        self._run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def _on_loop(self, fn: Any, *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return self._run(call())

    def fault(self, provider: str, **fault: Any) -> None:
        self._on_loop(self.server.hub.add_fault, provider, Fault(**fault))

    def received(self, provider: str) -> list[ReceivedRequest]:
        return list(self._on_loop(self.server.hub.received, provider))

    def reset(self) -> None:
        self._on_loop(self.server.hub.reset)

    def environment(self) -> tuple[dict[str, Any], dict[str, str]]:
        return self.server.demo_environment()


def make_project(root: Path, emulators: ThreadedEmulators) -> dict[str, str]:
    """Write ``.cavra/connectors.json`` and copy the example release records; return the connector env."""
    config, env = emulators.environment()
    (root / ".cavra/evidence").mkdir(parents=True, exist_ok=True)
    (root / ".cavra/connectors.json").write_text(json.dumps(config, indent=2))
    shutil.copytree(EXAMPLES / "release", root / ".cavra/release", dirs_exist_ok=True)
    return env


def secret_values(env: dict[str, str]) -> list[str]:
    """The credential values of the emulator environment (URLs are not secrets here, their paths are)."""
    return [v for k, v in env.items() if not k.endswith("_URL")]
