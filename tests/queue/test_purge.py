"""Retention of outbox jobs (``Store.purge_jobs``, ``cavra deliveries purge``) on SQLite, the JSON file and
PostgreSQL: only old finished jobs of the asked states go; delivery records and the chain stay."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cavra.api.app import create_app
from cavra.api.settings import ApiSettings
from cavra.cli.main import app as cli
from cavra.delivery.replay import job_of_delivery
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.errors import ConflictError, InputError
from cavra.store import Store, open_store
from cavra.store import sqljobs as sj
from cavra.store.base import DeliveryFilter
from cavra.store.jobs import DEAD, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, JobFilter, JobOutcome
from cavra.store.schema import jobs as jobs_table
from cavra.store.sql import SqlStore

from ..api.conftest import bearer, running, token_set
from .conftest import new_job


def _finish(store: Store, ns: list[int], outcome: JobOutcome) -> list[Job]:
    """Enqueue jobs for events ``ns``, claim and complete them with ``outcome`` (one record each)."""
    ids = [e.job.id for e in store.enqueue_jobs([new_job(n) for n in ns])]
    claimed = store.claim_jobs("w", limit=len(ids), lease_seconds=60, job_ids=ids)
    assert sorted(j.id for j in claimed) == sorted(ids)
    items = [(j.id, {"event_id": j.event["event_id"], "deliveries": []}, outcome) for j in claimed]
    return [job for _stored, job, held in store.complete_jobs("w", items) if held]


def _pause() -> datetime:
    """A time strictly between what finished before the call and what finishes after it."""
    time.sleep(0.01)
    cut = datetime.now(UTC)
    time.sleep(0.01)
    return cut


def _ids(store: Store, **kw: Any) -> set[str]:
    return {j.id for j in store.list_jobs(JobFilter(**kw), limit=10_000)}


def test_purge_deletes_only_old_finished_jobs_of_the_given_states(store: Store) -> None:
    old_ok = _finish(store, [1, 2], JobOutcome(SUCCEEDED))
    old_failed = _finish(store, [3], JobOutcome(FAILED, "HTTP 400"))
    old_dead = _finish(store, [4], JobOutcome(DEAD, "dead letter"))
    (queued,) = [e.job for e in store.enqueue_jobs([new_job(5)])]
    (run,) = [e.job for e in store.enqueue_jobs([new_job(6)])]
    assert store.claim_jobs("w2", limit=1, lease_seconds=60, job_ids=[run.id])
    cut = _pause()
    new_ok = _finish(store, [7], JobOutcome(SUCCEEDED))
    records = store.count_provider_deliveries(DeliveryFilter())
    chain_before = [e.delivery_id for e in store.chain().entries]
    assert len(chain_before) == 5

    dry = store.purge_jobs(states=[SUCCEEDED], finished_before=cut, dry_run=True)
    assert dry == 2
    assert len(_ids(store)) == 7  # a dry run changes nothing
    assert store.purge_jobs(states=[SUCCEEDED], finished_before=cut) == 2
    left = _ids(store)
    assert not left & {j.id for j in old_ok}
    assert {queued.id, run.id, new_ok[0].id, old_failed[0].id, old_dead[0].id} == left
    assert store.purge_jobs(states=[SUCCEEDED], finished_before=cut) == 0  # nothing left to purge

    assert store.purge_jobs(states=[FAILED, DEAD], finished_before=cut, dry_run=True) == 2
    assert store.purge_jobs(states=[FAILED, DEAD, FAILED], finished_before=cut) == 2
    assert _ids(store) == {queued.id, run.id, new_ok[0].id}
    assert _ids(store, states=(QUEUED,)) == {queued.id} and _ids(store, states=(RUNNING,)) == {run.id}

    # the evidence is untouched: every record (of purged jobs too) is stored and the chain verifies
    assert store.count_provider_deliveries(DeliveryFilter()) == records
    assert [e.delivery_id for e in store.chain().entries] == chain_before
    assert store.verify_chain().ok
    for job in old_ok + old_failed + old_dead:
        assert job.delivery_id is not None and store.get_delivery(job.delivery_id) is not None
    stats = store.queue_stats()
    assert (stats.count(SUCCEEDED), stats.count(FAILED), stats.count(DEAD)) == (1, 0, 0)


def test_purge_refuses_unfinished_states(store: Store) -> None:
    (queued,) = [e.job for e in store.enqueue_jobs([new_job(1)])]
    later = datetime.now(UTC) + timedelta(hours=1)
    for state in (QUEUED, RUNNING, "lost"):
        with pytest.raises(InputError, match=repr(state)):
            store.purge_jobs(states=[SUCCEEDED, state], finished_before=later)
    with pytest.raises(InputError, match="no state"):
        store.purge_jobs(states=[], finished_before=later)
    assert _ids(store) == {queued.id}


def test_a_repeated_request_after_the_purge_delivers_again(store: Store) -> None:
    """A purged job's idempotency key is free: the retention is the idempotency window."""
    (done,) = _finish(store, [1], JobOutcome(SUCCEEDED))
    (again,) = store.enqueue_jobs([new_job(1)])
    assert not again.created and again.job.id == done.id  # within the window: the same job, no delivery
    assert store.purge_jobs(states=[SUCCEEDED], finished_before=_pause()) == 1
    assert store.get_job(done.id) is None and store.get_job_by_key(done.idempotency_key) is None
    (fresh,) = store.enqueue_jobs([new_job(1)])
    assert fresh.created and fresh.job.id != done.id and fresh.job.state == QUEUED
    assert fresh.job.idempotency_key == done.idempotency_key


def test_redelivering_a_record_whose_job_was_purged_is_a_conflict(store: Store) -> None:
    (done,) = _finish(store, [1], JobOutcome(DEAD, "dead letter"))
    assert done.delivery_id is not None
    assert job_of_delivery(store, done.delivery_id).id == done.id
    store.purge_jobs(states=[DEAD], finished_before=_pause())
    with pytest.raises(ConflictError, match="purged under the outbox retention") as err:
        job_of_delivery(store, done.delivery_id)
    assert "not made through the outbox" not in str(err.value)


def test_sqlite_purges_in_chunks_each_in_its_own_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12,000 old jobs: three write transactions of at most PURGE_CHUNK deletes (the write lock is given
    back between them); the finished jobs kept and every queued job stay."""
    db = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
    assert isinstance(db, SqlStore)
    with db:
        for start in range(0, 12_500, 2500):
            db.enqueue_jobs([new_job(n) for n in range(start, start + 2500)])
        old = datetime.now(UTC) - timedelta(days=40)
        with db.engine.begin() as conn:  # finish them directly, 40 days ago (claiming 12,000 is slow)
            ids = list(conn.execute(sa.select(jobs_table.c.id).order_by(jobs_table.c.id)).scalars())
            kept = ids[12_000:]
            conn.execute(
                sa.update(jobs_table)
                .where(jobs_table.c.id.in_(ids[:12_000]))
                .values(state=SUCCEEDED, updated_at=old, run_after=old)
            )
            conn.execute(sa.update(jobs_table).where(jobs_table.c.id.in_(kept[:250])).values(state=SUCCEEDED))
        writes = 0
        write = db._write

        @contextlib.contextmanager
        def counted() -> Iterator[sa.Connection]:
            nonlocal writes
            writes += 1
            with write() as conn:
                yield conn

        monkeypatch.setattr(db, "_write", counted)
        chunks: list[int] = []
        chunk = sj.purge_chunk

        def spy(*args: Any) -> int:
            chunks.append(chunk(*args))
            return chunks[-1]

        cut = datetime.now(UTC) - timedelta(days=30)
        assert db.purge_jobs(states=[SUCCEEDED], finished_before=cut, dry_run=True) == 12_000
        assert writes == 0  # a dry run only reads
        monkeypatch.setattr(sj, "purge_chunk", spy)
        assert db.purge_jobs(states=[SUCCEEDED], finished_before=cut) == 12_000
        assert chunks == [sj.PURGE_CHUNK, sj.PURGE_CHUNK, 12_000 - 2 * sj.PURGE_CHUNK]
        assert writes == 3
        assert _ids(db) == set(kept)
        assert len(_ids(db, states=(SUCCEEDED,))) == 250


def test_the_chunks_use_the_state_run_after_index(tmp_path: Path) -> None:
    db = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
    assert isinstance(db, SqlStore)
    with db, db.engine.connect() as conn:
        sql = sj._PURGE_CHUNKS["sqlite"].sql
        plan = " | ".join(str(r[3]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", ("s",) * 4))
    assert "ix_jobs_state_run_after (state=? AND run_after<?)" in plan, plan
    assert "SCAN jobs" not in plan, plan


# --- the command line -------------------------------------------------------------------------------------
def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, ["deliveries", "purge", *args])


def test_cli_purge(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    db = open_store(url)
    with db:
        done = _finish(db, [1, 2], JobOutcome(SUCCEEDED)) + _finish(db, [3], JobOutcome(DEAD, "x"))
        (queued,) = [e.job for e in db.enqueue_jobs([new_job(4)])]
        time.sleep(1.1)  # finished more than 1 s ago

        recent = _cli("--older-than", "1h", "--store", url, "--json")
        assert recent.exit_code == 0, recent.output
        assert json.loads(recent.output)["purged"] == 0

        dry = _cli("--older-than", "1s", "--store", url, "--dry-run", "--json")
        assert dry.exit_code == 0, dry.output
        body = json.loads(dry.output)
        assert body["dry_run"] is True and body["states"] == [SUCCEEDED] and body["purged"] == 2
        cut = datetime.fromisoformat(body["finished_before"].replace("Z", "+00:00"))
        assert timedelta(0) < datetime.now(UTC) - cut < timedelta(seconds=30)
        assert len(_ids(db)) == 4  # the dry run changed nothing

        text = _cli("--older-than", "1s", "--store", url)
        assert text.exit_code == 0, text.output
        assert "purged 2 jobs (succeeded) finished before" in text.output
        assert _ids(db) == {done[2].id, queued.id}  # the dead letter is kept unless asked for

        both = _cli("--older-than", "1s", "--state", "failed", "--state", "dead", "--store", url, "--json")
        assert both.exit_code == 0, both.output
        assert json.loads(both.output) | {"finished_before": None} == {
            "dry_run": False,
            "states": [FAILED, DEAD],
            "finished_before": None,
            "purged": 1,
        }
        assert _ids(db) == {queued.id}
        assert db.verify_chain().ok and len(list(db.chain().entries)) == 3


def test_cli_purge_on_the_json_file(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    db = open_store(metadata_json=str(path))
    with db:
        _finish(db, [1], JobOutcome(SUCCEEDED))
        time.sleep(1.1)
        out = _cli("--older-than", "1s", "--metadata-json", str(path))
        assert out.exit_code == 0, out.output
        assert "purged 1 job (succeeded)" in out.output
        assert _ids(db) == set() and db.verify_chain().ok


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--older-than", "30"], ["--older-than", "'30'"]),
        (["--older-than", "3w"], ["--older-than", "'3w'"]),
        (["--older-than", "-1d"], ["--older-than"]),
        (["--older-than", "999999999d"], ["--older-than"]),
        (["--older-than", "30d", "--state", "queued"], ["--state", "'queued'"]),
        (["--older-than", "30d", "--state", "running"], ["--state", "'running'"]),
    ],
)
def test_cli_purge_bad_input_is_one_line(tmp_path: Path, args: list[str], words: list[str]) -> None:
    db_path = tmp_path / "metadata.db"
    url = f"sqlite:///{db_path}"
    out = _cli(*args, "--store", url)
    assert out.exit_code == 2, out.output
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out.output
    for word in words:
        assert word in lines[0]


def test_cli_purge_needs_older_than(tmp_path: Path) -> None:
    out = _cli("--store", f"sqlite:///{tmp_path / 'metadata.db'}")
    assert out.exit_code == 2 and "--older-than" in out.output


# --- the API ----------------------------------------------------------------------------------------------
async def test_api_redeliver_of_a_purged_job_is_409(tmp_path: Path, webhook_srv: EmulatorServer) -> None:
    db_path = tmp_path / "metadata.db"
    db = open_store(f"sqlite:///{db_path}")
    (done,) = _finish(db, [1], JobOutcome(FAILED, "HTTP 400"))
    db.purge_jobs(states=[FAILED], finished_before=_pause())
    data, env = demo_environment(webhook_srv.base_url, webhook_srv.settings)
    config = tmp_path / "connectors.json"
    config.write_text(json.dumps(data), encoding="utf-8")
    settings = ApiSettings(config_path=str(config), store_url=str(db_path), environ=env, tokens=token_set())
    async with running(create_app(settings)) as client:
        r = await client.post(f"/deliveries/{done.delivery_id}/redeliver", headers=bearer("operator"))
    assert r.status_code == 409, r.text
    assert "purged under the outbox retention" in r.text and "not made through the outbox" not in r.text
    db.close()
