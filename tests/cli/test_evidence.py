"""``cavra evidence build-siem-event`` / ``verify`` and ``cavra db upgrade``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cavra.cli.main import app
from tests.cli.release_helpers import EXAMPLES, METADATA, PROMOTION, ROLLBACK, ThreadedEmulators, make_project

SESSION = EXAMPLES / "evidence/session-decisions.json"


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


# --- build-siem-event -----------------------------------------------------------------------------------
def test_build_siem_event_writes_the_example(tmp_path: Path) -> None:
    out = tmp_path / ".cavra/evidence/latest/siem-event.json"
    result = cli("evidence", "build-siem-event", str(SESSION), "--output", str(out))
    assert result.exit_code == 0, result.output
    event = json.loads(out.read_text())
    assert event == json.loads((EXAMPLES / "evidence/siem-event.json").read_text())
    assert event["event_type"] == "cavra.evidence_bundle" and event["session_id"] == "demo-session"
    assert (event["decision_count"], event["blocked_count"], event["approval_required_count"]) == (7, 4, 1)
    assert event["max_severity"] == "high"
    assert "max_severity" in result.stdout and str(out) in result.stdout


def test_build_siem_event_json_and_severity_order(tmp_path: Path) -> None:
    session = {
        "session_id": "s-order",
        "decisions": [
            {"decision": "allow", "severity": "medium", "action": "a"},
            {"decision": "block", "severity": "Critical", "action": "b"},
            {"decision": "approval_required", "severity": "low", "action": "c"},
        ],
    }
    path = tmp_path / "session.json"
    path.write_text(json.dumps(session))
    result = cli("evidence", "build-siem-event", str(path), "--json")
    assert result.exit_code == 0, result.output
    event = json.loads(result.stdout)
    assert event["max_severity"] == "critical"  # alphabetically "medium" would win
    assert event["blocked_actions"] == ["b"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"decisions": [{"decision": "deny", "severity": "high", "action": "x"}]}, "decisions[0].decision"),
        (
            {"decisions": [{"decision": "block", "severity": "urgent", "action": "x"}]},
            "decisions[0].severity",
        ),
        ({"decisions": [{"decision": "block", "severity": "low"}]}, "decisions[0].action: Field required"),
        ({"session_id": ""}, "field session_id"),
    ],
)
def test_build_siem_event_names_the_bad_field(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    path = tmp_path / "session.json"
    path.write_text(json.dumps({"session_id": "s1", "decisions": []} | change))
    out = tmp_path / "event.json"
    result = cli("evidence", "build-siem-event", str(path), "--output", str(out))
    assert result.exit_code == 2
    assert f"{path}: " in result.stderr and expected in result.stderr
    assert not out.exists()


def test_build_siem_event_refuses_a_release_record(tmp_path: Path) -> None:
    path = EXAMPLES / "release/rollout-promotion-execution/rollout-promotion-execution.json"
    result = cli("evidence", "build-siem-event", str(path))
    assert result.exit_code == 2 and "expected a evidence bundle" in result.stderr


# --- verify ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def webhook() -> Iterator[ThreadedEmulators]:
    emu = ThreadedEmulators(["webhook"]).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def delivered(tmp_path: Path, webhook: ThreadedEmulators, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with two delivered release records in the JSON store and in a SQLite store."""
    env = make_project(tmp_path, webhook)
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for store_args in (("--metadata-json", METADATA), ("--store", "evidence.db")):
        for command, path in (
            ("deliver-promotion-audit", PROMOTION),
            ("deliver-rollback-execution", ROLLBACK),
        ):
            result = cli(
                "release",
                command,
                path,
                "--config",
                ".cavra/connectors.json",
                "--provider",
                "webhook",
                *store_args,
            )
            assert result.exit_code == 0, result.output
    return tmp_path


def test_verify_intact_chain(delivered: Path) -> None:
    for args in (("--metadata-json", METADATA), ("--store", "evidence.db")):
        result = cli("evidence", "verify", *args)
        assert result.exit_code == 0, result.output
        assert "chain intact" in result.stdout and "2 delivery records" in result.stdout
        report = json.loads(cli("evidence", "verify", *args, "--json").stdout)
        assert report["ok"] is True and report["count"] == 2 and report["first_bad"] is None


def test_editing_a_json_record_is_caught_and_named(delivered: Path) -> None:
    path = delivered / METADATA
    data = json.loads(path.read_text())
    victim = data["deliveries"][0]
    victim["deliveries"][0]["status_code"] = 201  # an auditor-visible fact, quietly changed
    path.write_text(json.dumps(data, indent=2))
    result = cli("evidence", "verify", "--metadata-json", METADATA)
    assert result.exit_code == 1
    assert f"chain broken: {victim['id']} is altered" in result.stderr
    report = json.loads(cli("evidence", "verify", "--metadata-json", METADATA, "--json").stdout)
    assert report["ok"] is False and report["first_bad"]["delivery_id"] == victim["id"]


def test_removing_a_json_record_is_caught(delivered: Path) -> None:
    path = delivered / METADATA
    data = json.loads(path.read_text())
    removed = data["deliveries"].pop(0)
    path.write_text(json.dumps(data, indent=2))
    result = cli("evidence", "verify", "--metadata-json", METADATA)
    assert result.exit_code == 1 and "chain broken" in result.stderr and removed["id"] in result.stderr


def test_editing_a_sqlite_record_is_caught_and_named(delivered: Path) -> None:
    db = sqlite3.connect(delivered / "evidence.db")
    try:
        delivery_id, text = db.execute("SELECT id, record FROM deliveries WHERE sequence = 2").fetchone()
        record = json.loads(text)
        record["success"] = False
        db.execute("UPDATE deliveries SET record = ? WHERE sequence = 2", (json.dumps(record),))
        db.commit()
    finally:
        db.close()
    result = cli("evidence", "verify", "--store", "evidence.db")
    assert result.exit_code == 1
    assert f"chain broken: {delivery_id} is altered" in result.stderr


def test_verify_bad_store_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("broken.json").write_text("{not json")
    result = cli("evidence", "verify", "--metadata-json", "broken.json")
    assert result.exit_code == 2 and "broken.json" in result.stderr
    both = cli("evidence", "verify", "--metadata-json", "a.json", "--store", "b.db")
    assert both.exit_code == 2


# --- db upgrade -----------------------------------------------------------------------------------------
def test_db_upgrade_creates_and_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "store/metadata.db"
    first = cli("db", "upgrade", "--store", str(db))
    assert first.exit_code == 0, first.output
    assert db.exists() and "revision" in first.stdout
    again = cli("db", "upgrade", "--store", f"sqlite:///{db}")
    assert again.exit_code == 0 and first.stdout.split()[-1] == again.stdout.split()[-1]


def test_db_upgrade_unreachable_postgres_exits_2_without_the_password() -> None:
    url = "postgresql://cavra:db-Secret-Pw-7@127.0.0.1:9/cavra?connect_timeout=2"
    result = cli("db", "upgrade", "--store", url)
    assert result.exit_code == 2
    assert "db-Secret-Pw-7" not in result.output + result.stderr
