"""``cavra integration deliver --store``: through the outbox, every delivery recorded (history, replay)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import read_env_file, run_cavra

EVENT = {
    "event_type": "cavra.evidence_bundle",
    "session_id": "s-1",
    "decision_count": 2,
    "max_severity": "low",
}


@pytest.fixture
def workdir(tmp_path: Path, emulate_process: tuple[str, Path]) -> tuple[Path, dict[str, str]]:
    _base_url, cfg_dir = emulate_process
    shutil.copy(cfg_dir / "connectors.json", tmp_path / "connectors.json")
    lines = [json.dumps({**EVENT, "session_id": f"s-{n}"}) for n in range(4)]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "event.json").write_text(json.dumps(EVENT))
    return tmp_path, read_env_file(cfg_dir / "emulators.env")


def test_a_file_of_events_is_recorded_per_event_and_destination(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    args = [
        "integration",
        "deliver",
        "events.jsonl",
        "--config",
        "connectors.json",
        "--provider",
        "splunk,slack",
    ]
    done = run_cavra(*args, "--store", "m.db", "--output", "out", cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "created new SQLite store at m.db" in done.stderr
    assert len(list((cwd / "out").glob("*-connector-delivery.json"))) == 4

    history = run_cavra("deliveries", "jobs", "--store", "m.db", "--json", cwd=cwd, env=env)
    jobs = json.loads(history.stdout)["items"]
    assert len(jobs) == 8 and {j["kind"] for j in jobs} == {"integration-delivery"}
    assert {j["state"] for j in jobs} == {"succeeded"}

    verify = run_cavra("evidence", "verify", "--store", "m.db", "--json", cwd=cwd, env=env)
    assert json.loads(verify.stdout)["count"] == 8

    # the same file again: the outbox answers the first records, nothing is sent or recorded twice
    again = run_cavra(*args, "--store", "m.db", cwd=cwd, env=env)
    assert again.returncode == 0, again.stderr
    verify = run_cavra("evidence", "verify", "--store", "m.db", "--json", cwd=cwd, env=env)
    assert json.loads(verify.stdout)["count"] == 8


def test_one_event_with_a_json_file_store(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    args = ["integration", "deliver", "event.json", "--config", "connectors.json", "--provider", "webhook"]
    done = run_cavra(*args, "--metadata-json", "meta.json", "--json", cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["success"] is True and record["metadata_kind"] == "integration-delivery"
    assert record["deliveries"][0]["provider"] == "webhook"


def test_a_config_error_creates_no_store(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    args = ["integration", "deliver", "event.json", "--config", "connectors.json", "--provider", "nosuch"]
    done = run_cavra(*args, "--store", "m.db", cwd=cwd, env=env)
    assert done.returncode == 2
    assert not (cwd / "m.db").exists()
