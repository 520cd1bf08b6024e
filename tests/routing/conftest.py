"""Fixtures for the routing suite: the store backends of tests/store and the emulators on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cavra.config import LoadedConfig, config_from_data
from cavra.emulators.server import EmulatorServer, demo_environment

from ..store.conftest import json_store, pg_url, pg_user, sql_store, sql_target, store, target  # noqa: F401

ROLLBACK = {
    "event_type": "cavra.release.rollback_execution",
    "event_id": "evt-rollback-1",
    "execution_id": "rre_1",
    "severity": "critical",
    "release": "2025.11.2",
}
BUNDLE_HIGH = {
    "event_type": "cavra.evidence_bundle",
    "event_id": "evt-bundle-1",
    "session_id": "s1",
    "max_severity": "high",
}
OTHER = {"event_type": "acme.unknown", "event_id": "evt-other-1"}


def emulator_config(srv: EmulatorServer, routes: list[dict[str, Any]] | None = None) -> LoadedConfig:
    """The emulators' config with the demo routes (or ``routes``)."""
    data, env = demo_environment(srv.base_url, srv.settings)
    if routes is not None:
        data["routes"] = routes
    return config_from_data(data, "emulators.json", env)


@pytest.fixture
async def emulators() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(providers=["webhook", "slack", "splunk", "jira", "teams"]) as srv:
        yield srv
