"""Concurrent requests of one process share write transactions: their enqueues (Enqueuer) and their runs'
completions (one Completer for the inline runs), each request still answered exactly as if alone."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cavra.delivery.enqueuer import Enqueuer
from cavra.delivery.runtime import DeliveryRuntime
from cavra.delivery.submit import deliver_jobs
from cavra.emulators.server import EmulatorServer
from cavra.errors import InputError
from cavra.store import open_store
from cavra.store.jobs import SUCCEEDED, JobFilter, RecordPut
from cavra.store.sql import SqlStore

from .conftest import emulator_config, new_job


@pytest.fixture
def db(tmp_path: Path) -> SqlStore:
    s = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
    assert isinstance(s, SqlStore)
    return s


def _count_calls(monkeypatch: pytest.MonkeyPatch, store: SqlStore, name: str) -> list[int]:
    """Each call of ``store.name`` appends the number of items it was given."""
    calls: list[int] = []
    real = getattr(store, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[-1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(store, name, spy)
    return calls


async def test_concurrent_enqueues_share_transactions_and_keep_their_answers(
    db: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_calls(monkeypatch, db, "enqueue_jobs")
    enqueuer = Enqueuer(db)
    requests = [[new_job(n), new_job(n, provider="slack")] for n in range(30)]
    puts = [[RecordPut("integration", f"i{n}", {"integration_id": f"i{n}"})] for n in range(30)]
    pairs = zip(requests, puts, strict=True)
    answers = await asyncio.gather(*(enqueuer.enqueue(r, records=p) for r, p in pairs))
    assert sum(calls) == 60 and len(calls) < 30  # fewer transactions than requests
    for request, answer in zip(requests, answers, strict=True):
        got = [(e.job.idempotency_key, e.created) for e in answer]
        assert got == [(j.idempotency_key, True) for j in request]
    assert len(db.list_jobs(JobFilter())) == 60 and len(db.list_records("integration")) == 30

    # the same key asked twice in one transaction: created by the first request, found by the second
    twice = await asyncio.gather(enqueuer.enqueue([new_job("x")]), enqueuer.enqueue([new_job("x")]))
    assert [e.created for (e,) in twice] == [True, False] and twice[0][0].job.id == twice[1][0].job.id


async def test_one_bad_request_fails_alone(db: SqlStore) -> None:
    enqueuer = Enqueuer(db)
    bad = replace(new_job("bad"), kind="no-such-kind")
    good, wrong, other = await asyncio.gather(
        enqueuer.enqueue([new_job(1)]),
        enqueuer.enqueue([bad]),
        enqueuer.enqueue([new_job(2)]),
        return_exceptions=True,
    )
    assert isinstance(wrong, InputError)
    assert not isinstance(good, BaseException) and not isinstance(other, BaseException)
    assert good[0].created and other[0].created
    assert {j.event["event_id"] for j in db.list_jobs(JobFilter())} == {"evt-1", "evt-2"}


async def test_concurrent_inline_deliveries_share_completions(
    db: SqlStore, webhook_srv: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    completes = _count_calls(monkeypatch, db, "complete_jobs")
    enqueues = _count_calls(monkeypatch, db, "enqueue_jobs")
    config = emulator_config(webhook_srv)
    runtime = DeliveryRuntime()  # the server's: concurrent requests share its writers
    runs = (deliver_jobs(db, config, [new_job(n)], runtime=runtime) for n in range(24))
    subs = await asyncio.gather(*runs)
    assert all(s.done and s.jobs[0].state == SUCCEEDED and s.jobs[0].attempts == 1 for s in subs)
    ids = [s.documents[0]["event_id"] for s in subs if s.documents[0] is not None]
    assert ids == [f"evt-{n}" for n in range(24)]  # each request answered with its own record
    assert sum(completes) == 24 and len(completes) < 24
    assert sum(enqueues) == 24 and len(enqueues) < 24
    assert db.verify_chain().ok and len(webhook_srv.hub.received("webhook")) == 24


def test_the_shared_writers_do_not_keep_loops_or_stores_alive(tmp_path: Path) -> None:
    import gc
    import weakref

    runtime = DeliveryRuntime()
    gc.collect()
    stores: list[weakref.ref[Any]] = []
    for n in range(3):
        store = open_store(f"sqlite:///{tmp_path / f'm{n}.db'}")
        stores.append(weakref.ref(store))

        async def one(s: Any = store, k: int = n) -> None:
            await runtime.shared(s)[0].enqueue([new_job(k)])

        asyncio.run(one())
        store.close()
        del store, one
    gc.collect()
    assert runtime.shared_loops() == 0
    assert [r() for r in stores] == [None, None, None]
