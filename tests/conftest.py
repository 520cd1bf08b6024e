"""Shared fixtures: the emulators on a real loopback port, and the HTTP transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cavra.emulators.server import EmulatorServer


@pytest.fixture
def emulator_factory() -> Callable[..., EmulatorServer]:
    """``async with emulator_factory(providers=["splunk"], overrides={...}) as srv:``; ``srv.base_url``."""

    def make(
        providers: list[str] | None = None, overrides: dict[str, dict[str, Any]] | None = None
    ) -> EmulatorServer:
        return EmulatorServer(providers=providers, overrides=overrides)

    return make


@pytest.fixture
async def transport() -> AsyncIterator[Any]:
    from cavra.transport import AiohttpTransport

    t = AiohttpTransport()
    try:
        yield t
    finally:
        await t.close()
