"""Fixtures for the outbox suite: the store backends of tests/store, the webhook emulator, a config for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cavra.config import LoadedConfig, config_from_data
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.store.jobs import NewJob

from ..store.conftest import json_store, pg_url, pg_user, sql_store, sql_target, store, target  # noqa: F401

KIND = "integration-delivery"


def event(n: int | str, **extra: Any) -> dict[str, Any]:
    return {"event_type": "cavra.evidence_bundle", "event_id": f"evt-{n}", "session_id": "s-1", **extra}


def new_job(n: int | str, provider: str = "webhook", **kw: Any) -> NewJob:
    from cavra.delivery.queue import delivery_job

    return delivery_job(event(n), provider, kind=KIND, retries=kw.pop("retries", 0), **kw)


def emulator_config(srv: EmulatorServer, providers: list[str] | None = None) -> LoadedConfig:
    data, env = demo_environment(srv.base_url, srv.settings)
    connectors = data["connectors"]
    if providers is not None:
        connectors = {k: v for k, v in connectors.items() if k in providers}
    return config_from_data({"connectors": connectors}, "emulators", env)


@pytest.fixture
async def webhook_srv() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(providers=["webhook"]) as srv:
        yield srv
