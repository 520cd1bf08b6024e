"""``cavra integration deliver``, run as a real process against a real ``cavra emulate`` process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from cavra.emulators.framework import Fault  # noqa: F401  (documents the fault API used over HTTP below)
from tests.cli.conftest import read_env_file, run_cavra

SCHEMA = json.loads((Path(__file__).parents[2] / "src/cavra/schemas/connector-delivery.v1.json").read_text())

EVENT_PATH = ".cavra/evidence/latest/siem-event.json"
SIEM_EVENT = {
    "event_type": "cavra.evidence_bundle",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "high",
}


@pytest.fixture
def workdir(tmp_path: Path, emulate_process: tuple[str, Path]) -> tuple[Path, dict[str, str]]:
    """A project directory laid out as the seed's commands expect, and the emulators' environment."""
    _base_url, cfg_dir = emulate_process
    (tmp_path / ".cavra/evidence/latest").mkdir(parents=True)
    (tmp_path / ".cavra/evidence/latest/siem-event.json").write_text(json.dumps(SIEM_EVENT))
    shutil.copy(cfg_dir / "connectors.json", tmp_path / ".cavra/connectors.json")
    return tmp_path, read_env_file(cfg_dir / "emulators.env")


def _fault(base_url: str, **fault: object) -> None:
    import urllib.request

    req = urllib.request.Request(
        base_url + "/_emulator/faults",
        data=json.dumps(fault).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=5).read()


def test_seed_command_works_as_written(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    splunk_only = {"SPLUNK_HEC_URL": env["SPLUNK_HEC_URL"], "SPLUNK_HEC_TOKEN": env["SPLUNK_HEC_TOKEN"]}
    result = run_cavra(
        "integration", "deliver", ".cavra/evidence/latest/siem-event.json",
        "--config", ".cavra/connectors.json",
        "--provider", "splunk",
        "--output", ".cavra/integrations/deliveries",
        cwd=cwd, env=splunk_only,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    files = list((cwd / ".cavra/integrations/deliveries").glob("*-connector-delivery.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    jsonschema.validate(record, SCHEMA)
    assert record["success"] is True
    assert record["deliveries"][0]["provider"] == "splunk"
    assert record["deliveries"][0]["status_code"] == 200
    assert record["deliveries"][0]["request"]["headers"]["Authorization"] == "Splunk **REDACTED**"
    for text in (files[0].read_text(), result.stdout, result.stderr):
        assert env["SPLUNK_HEC_TOKEN"] not in text
    assert "splunk" in result.stdout and "delivered" in result.stdout

    # a second delivery of the same event never overwrites the first one's evidence
    again = run_cavra(
        "integration", "deliver", EVENT_PATH, "--config", ".cavra/connectors.json",
        "--provider", "splunk", "--output", ".cavra/integrations/deliveries", cwd=cwd, env=splunk_only,
    )  # fmt: skip
    assert again.returncode == 0
    assert len(list((cwd / ".cavra/integrations/deliveries").glob("*-connector-delivery*.json"))) == 2


def test_all_providers_json_output(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    result = run_cavra(
        "integration", "deliver", EVENT_PATH, "--config", ".cavra/connectors.json",
        "--provider", "splunk,datadog,webhook,slack,teams,sentinel", "--json", cwd=cwd, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(result.stdout)
    jsonschema.validate(record, SCHEMA)
    assert sorted(d["provider"] for d in record["deliveries"]) == [
        "datadog", "sentinel", "slack", "splunk", "teams", "webhook",
    ]  # fmt: skip
    for name, value in env.items():
        if name.endswith("_URL") and "SLACK" not in name and "TEAMS" not in name:
            continue
        assert value not in result.stdout, name


def test_failed_delivery_exits_1_with_a_record(
    workdir: tuple[Path, dict[str, str]], emulate_process: tuple[str, Path]
) -> None:
    cwd, env = workdir
    base_url, _ = emulate_process
    _fault(base_url, provider="splunk", status=403, count=1, body='{"text":"Invalid token","code":4}')
    result = run_cavra(
        "integration", "deliver", EVENT_PATH, "--config", ".cavra/connectors.json",
        "--provider", "splunk", "--retries", "3", "--json", cwd=cwd, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    record = json.loads(result.stdout)
    assert record["success"] is False
    assert record["deliveries"][0]["attempt_count"] == 1
    assert record["deliveries"][0]["status_code"] == 403


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["missing.json"], "missing.json: file not found"),
        ("not json", ["event.json"], "event.json: not valid JSON"),
        ("[1, 2]", ["event.json"], "event.json: must be a JSON object"),
        ('{"session_id": "x"}', ["event.json"], "event_type is required"),
        (json.dumps(SIEM_EVENT), ["event.json", "--provider", "pagerduty"], "unknown provider 'pagerduty'"),
        (json.dumps(SIEM_EVENT), ["event.json", "--retries", "99"], "--retries: must be between 0 and 10"),
        (json.dumps(SIEM_EVENT), ["event.json", "--config", "nope.json"], "nope.json: config file not found"),
        (json.dumps(SIEM_EVENT), ["event.json", "--provider", "jira"], "provider 'jira' is not configured"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    workdir: tuple[Path, dict[str, str]], setup: str | None, args: list[str], message: str
) -> None:
    cwd, env = workdir
    if setup is not None:
        (cwd / "event.json").write_text(setup)
    if "--config" not in args:
        args = [*args, "--config", str(cwd / ".cavra/connectors.json")]
    connectors = json.loads((cwd / ".cavra/connectors.json").read_text())
    connectors["connectors"].pop("jira", None)
    (cwd / ".cavra/connectors.json").write_text(json.dumps(connectors))
    result = run_cavra("integration", "deliver", *args, cwd=cwd, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_unset_variable_names_it(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    partial = {k: v for k, v in env.items() if k != "SPLUNK_HEC_TOKEN"}
    result = run_cavra(
        "integration", "deliver", EVENT_PATH, "--config", ".cavra/connectors.json",
        "--provider", "splunk", cwd=cwd, env={**partial, "SPLUNK_HEC_TOKEN": ""},
    )  # fmt: skip
    assert result.returncode == 2
    assert "SPLUNK_HEC_TOKEN" in result.stderr and "splunk" in result.stderr
