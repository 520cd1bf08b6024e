"""An operator's pause with a real worker: the paused destination's jobs wait in the queue (nothing is
sent to it, other destinations deliver), a Retry-After or a delivery does not end the pause, and a resume
lets the worker deliver them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cavra.emulators.server import EmulatorServer
from cavra.governance.pause import pause_destination, paused_destinations, resume_destination
from cavra.store import open_store
from cavra.store.jobs import QUEUED, SUCCEEDED
from cavra.store.sql import SqlStore

from .conftest import emulator_config, new_job
from .test_worker import job, running, until


@pytest.fixture
def db(tmp_path: Path) -> SqlStore:
    s = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
    assert isinstance(s, SqlStore)
    return s


@pytest.fixture
async def srv() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(providers=["webhook", "slack"]) as server:
        yield server


async def test_a_paused_destinations_jobs_wait_and_resume_delivers_them(
    db: SqlStore, srv: EmulatorServer
) -> None:
    config = emulator_config(srv, ["webhook", "slack"])
    paused = pause_destination(db, "webhook", who="ops-token")
    assert paused["pause"]["by"] == "ops-token" and paused["pause"]["until"] is None
    held = [e.job.id for e in db.enqueue_jobs([new_job(1), new_job(2)])]
    [other] = [e.job.id for e in db.enqueue_jobs([new_job(3, provider="slack")])]
    async with running(db, config):
        # the worker runs: the other destination's job is delivered, the paused one's wait
        await until(lambda: job(db, other).state == SUCCEEDED)
        assert [job(db, j).state for j in held] == [QUEUED, QUEUED]
        assert srv.hub.received("webhook") == []
        assert [p["destination"] for p in paused_destinations(db)] == ["webhook"]
        assert resume_destination(db, "webhook")["was_paused"] is True
        await until(lambda: all(job(db, j).state == SUCCEEDED for j in held))
    assert len(srv.hub.received("webhook")) == 2
    assert paused_destinations(db) == []
    assert resume_destination(db, "webhook")["was_paused"] is False


def test_a_retry_after_does_not_end_an_operators_pause(db: SqlStore) -> None:
    from datetime import timedelta

    from cavra.delivery.guard import GuardSettings, admit

    pause_destination(db, "webhook", who="ops-token")

    def check(dest, now):  # type: ignore[no-untyped-def]
        dest.paused_until = now - timedelta(seconds=1)  # the provider's own wait is over
        first = admit(dest, now, "j1", GuardSettings())
        return first, dest.held(now)

    admission, still = db.update_destination("webhook", check)
    assert admission.defer is not None and "paused by ops-token" in str(admission.reason) and still
