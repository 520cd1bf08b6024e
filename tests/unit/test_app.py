"""The service object (:class:`cavra.app.Cavra`): where its store is, opening it once, the queue as faces
see it, and the worker settings checked before anything is opened."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cavra.app import SUCCEEDED, Cavra, JobFilter, check_purge_states, replay_states, worker_settings
from cavra.errors import ConfigError, InputError


def test_where_names_a_missing_store_file_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "evidence.db"
    service = Cavra(store_url=str(path))
    where = service.where()
    assert where.backend == "sqlite"
    assert where.missing == path
    assert not path.exists()


def test_the_store_opens_once_and_closes_with_the_context(tmp_path: Path) -> None:
    path = tmp_path / "evidence.db"
    with Cavra(store_url=str(path)) as service:
        first = service.store
        assert service.store is first
        service.probe_store()
        assert service.where().missing is None
        jobs, stats = service.list_jobs(JobFilter(), limit=10)
        assert jobs == []
        assert stats.count(SUCCEEDED) == 0
        assert service.get_job("job_nope") is None
        before = datetime.now(UTC)
        assert service.purge_jobs(check_purge_states([SUCCEEDED]), finished_before=before, dry_run=True) == 0
        assert service.replay(states=replay_states(failed=True, dead=False, include_succeeded=False)) == []
    assert service._store is None  # closed; the next use opens it again


def test_the_json_file_store_is_named_by_metadata_json(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    service = Cavra(metadata_json=str(path))
    where = service.where()
    assert (where.backend, where.missing) == ("json", path)


def test_no_config_named_is_no_config(tmp_path: Path) -> None:
    service = Cavra(store_url=str(tmp_path / "e.db"), env={})
    assert service.load_config() is None
    assert service.config is None


def test_a_bad_worker_setting_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="splunk=fast"):
        worker_settings(rate_limit="splunk=fast")
    settings = worker_settings(backoff_base=2.0, max_runs=3)
    assert settings.schedule.base_delay == 2.0
    assert settings.schedule.max_runs == 3


def test_purge_refuses_a_state_that_is_not_final() -> None:
    with pytest.raises(InputError, match="queued"):
        check_purge_states(["queued"])


def test_the_retry_policy_follows_the_base_delay() -> None:
    assert Cavra().policy(3) is None
    policy = Cavra(retry_base_delay=0.5).policy(3)
    assert policy is not None
    assert (policy.retries, policy.base_delay, policy.max_delay) == (3, 0.5, 4.0)
