"""``cavra destinations list`` and ``cavra destinations test``, and ``--provider`` with a destination's name,
run as real processes against a real ``cavra emulate --write-config`` process (which writes two Slack
destinations: ``slack`` and ``slack-release``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import read_env_file, run_cavra

EVENT = {"event_type": "cavra.evidence_bundle", "session_id": "demo-session", "max_severity": "high"}


@pytest.fixture
def workdir(tmp_path: Path, emulate_process: tuple[str, Path]) -> tuple[Path, dict[str, str]]:
    _base_url, cfg_dir = emulate_process
    shutil.copy(cfg_dir / "connectors.json", tmp_path / "connectors.json")
    (tmp_path / "event.json").write_text(json.dumps(EVENT))
    return tmp_path, read_env_file(cfg_dir / "emulators.env")


def test_the_demo_config_has_two_slack_destinations(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, _env = workdir
    connectors = json.loads((cwd / "connectors.json").read_text())["connectors"]
    assert "provider" not in connectors["slack"]
    assert connectors["slack-release"]["provider"] == "slack"


def test_list_test_and_deliver_by_destination(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    store = ["--store", str(cwd / "metadata.db")]
    tested = run_cavra(
        "destinations", "test", "slack-release", "--config", "connectors.json", *store, cwd=cwd, env=env
    )
    assert tested.returncode == 0, tested.stderr + tested.stdout
    assert "verdict: delivered" in tested.stdout and "slack-release (slack)" in tested.stdout
    assert env["SLACK_RELEASE_URL"] not in tested.stdout + tested.stderr  # the hook URL is the credential

    sent = run_cavra(
        "integration", "deliver", "event.json", "--config", "connectors.json", "--provider", "slack-release",
        "--json", cwd=cwd, env=env,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    (item,) = json.loads(sent.stdout)["deliveries"]
    assert (item["provider"], item["destination"]) == ("slack", "slack-release")

    listed = run_cavra(
        "destinations", "list", "--config", "connectors.json", *store, "--json", cwd=cwd, env=env
    )
    assert listed.returncode == 0, listed.stderr
    items = {d["name"]: d for d in json.loads(listed.stdout)["items"]}
    assert items["slack-release"]["provider"] == "slack"
    assert items["slack-release"]["health"]["deliveries"] == 0  # the test delivery does not count
    for value in env.values():
        if len(value) > 8:
            assert value not in listed.stdout
    table = run_cavra("destinations", "list", "--config", "connectors.json", *store, cwd=cwd, env=env)
    assert table.returncode == 0 and "slack-release" in table.stdout and "closed" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["destinations", "test", "slack-soc"], "destination 'slack-soc' is not in connectors.json"),
        (["integration", "deliver", "event.json", "--provider", "slack-soc"], "unknown provider 'slack-soc'"),
    ],
)
def test_an_unknown_destination_is_one_line_and_exit_2(
    workdir: tuple[Path, dict[str, str]], args: list[str], message: str
) -> None:
    cwd, env = workdir
    result = run_cavra(*args, "--config", "connectors.json", cwd=cwd, env=env)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_release_history_filters_by_destination(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    rollback = Path(__file__).parents[2] / "examples/release/rollout-rollback-execution"
    record = next(rollback.glob("*.json"))
    store = ["--store", str(cwd / "metadata.db")]
    sent = run_cavra(
        "release", "deliver-rollback-execution", str(record), "--provider", "slack,slack-release",
        "--config", "connectors.json", *store, cwd=cwd, env=env,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr + sent.stdout
    history = "release", "connector-delivery-history", *store, "--json"
    by_dest = run_cavra(*history, "--destination", "slack-release", cwd=cwd, env=env)
    assert by_dest.returncode == 0, by_dest.stderr
    items = json.loads(by_dest.stdout)["items"]
    assert [(i["provider"], i["destination"]) for i in items] == [("slack", "slack-release")]
    by_provider = run_cavra(*history, "--provider", "slack", cwd=cwd, env=env)
    assert sorted(i["destination"] for i in json.loads(by_provider.stdout)["items"]) == [
        "slack",
        "slack-release",
    ]
    board = run_cavra("release", "connector-delivery-dashboard", *store, cwd=cwd, env=env)
    assert board.returncode == 0 and "slack-release" in board.stdout
