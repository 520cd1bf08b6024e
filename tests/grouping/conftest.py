"""Fixtures for the grouping suite: the store backends of tests/store, the emulators on loopback, a
controlled clock (an explicit ``now`` an hour in the past, so every flush job is due for the real queue
while the windows are measured by the test's clock, never by sleeping)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cavra.config import LoadedConfig, config_from_data
from cavra.delivery.worker import Worker
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.governance.notes import delivery_runtime
from cavra.store import Store

from ..store.conftest import json_store, pg_url, pg_user, sql_store, sql_target, store, target  # noqa: F401

GROUPED = {
    "name": "rollbacks",
    "event_type": "cavra.release.*",
    "to": ["slack", "jira"],
    "group_by": ["labels.env"],
    "group_wait": "30s",
    "group_interval": "1m",
    "repeat_interval": "5m",
}


def rollback(n: int, env: str = "prod", **extra: Any) -> dict[str, Any]:
    return {
        "event_type": "cavra.release.rollback_execution",
        "event_id": f"evt-rb-{n}",
        "execution_id": f"rre_{env}_{n}",
        "severity": "critical" if n % 2 else "high",
        "labels": {"env": env},
        **extra,
    }


def grouped_config(srv: EmulatorServer, routes: list[dict[str, Any]] | None = None) -> LoadedConfig:
    data, env = demo_environment(srv.base_url, srv.settings)
    data["routes"] = routes if routes is not None else [GROUPED]
    return config_from_data(data, "grouped.json", env)


class Clock:
    """The test's clock: starts an hour ago, moves only when told."""

    def __init__(self) -> None:
        self.t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.t

    def at(self, seconds: float) -> datetime:
        return self.start + timedelta(seconds=seconds)

    def set(self, seconds: float) -> datetime:
        self.t = self.at(seconds)
        return self.t

    @property
    def start(self) -> datetime:
        return getattr(self, "_start", None) or self._first()

    def _first(self) -> datetime:
        self._start = self.t
        return self._start


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c._first()
    return c


@pytest.fixture
async def emulators() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(providers=["slack", "jira", "teams", "splunk", "webhook"]) as srv:
        yield srv


async def flush(db: Store, config: LoadedConfig, clock: Clock) -> Worker:
    """Run the due jobs once, the grouping windows measured by ``clock``."""
    worker = Worker(
        db, config, poll_interval=0.02, retry_base_delay=0.01, concurrency=2, runtime=delivery_runtime()
    )
    worker.now = clock  # type: ignore[method-assign]
    await worker.run(once=True)
    return worker


def slack_messages(srv: EmulatorServer) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in srv.hub.received("slack") if r.method == "POST"]


def documents(db: Store) -> list[dict[str, Any]]:
    return [e.document for e in db.chain().entries if e.document is not None]
