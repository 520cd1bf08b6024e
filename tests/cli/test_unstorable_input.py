"""Input the store cannot keep (a NUL character, a lone surrogate) is refused by every command that reads a
file: one ``error: ...`` line naming the file and the field, exit 2, nothing sent, nothing stored.

Before: ``cavra integration deliver`` sent such an event and its record then could not be stored on
PostgreSQL (the job was sent again and again); a lone surrogate or a NUL in an artifact path was a
traceback.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import read_env_file, run_cavra

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _requests(base_url: str, provider: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/_emulator/requests?provider={provider}", timeout=5) as resp:
        return len(json.loads(resp.read()))


def _with(path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    """The JSON text of ``path`` after ``change`` (``json.dumps`` writes NUL as ``\\u0000``, and a lone
    surrogate as ``\\ud800``: valid JSON text, as an attacker would send it)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    return json.dumps(data)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


PROMOTION = EXAMPLES / "release/rollout-promotion-execution/rollout-promotion-execution.json"
ROLLBACK = EXAMPLES / "release/rollout-rollback-execution/rollout-rollback-execution.json"
MANIFEST = EXAMPLES / "release/endpoint-management-export/endpoint-management-export-manifest.json"
SESSION = EXAMPLES / "evidence/session-decisions.json"
EVENT = EXAMPLES / "evidence/siem-event.json"

CASES = [
    pytest.param(
        ["integration", "deliver"],
        "event.json",
        lambda: _with(EVENT, _set("event_type", "cavra.evidence_bundle\x00")),
        "event.json: field event_type: contains a NUL character",
        id="deliver-nul-event-type",
    ),
    pytest.param(
        ["integration", "deliver"],
        "event.json",
        lambda: _with(EVENT, _set("labels", {"team": {"na\ud800me": "x"}})),
        "event.json: field labels.team: has a key that contains a lone surrogate (U+D800)",
        id="deliver-surrogate-nested-key",
    ),
    pytest.param(
        ["integration", "deliver"],
        "events.jsonl",
        lambda: (
            json.dumps({"event_type": "a", "event_id": "e1"})
            + "\n"
            + json.dumps({"event_type": "a", "event_id": "e\x002"})
        ),
        "events.jsonl: line 2: field event_id: contains a NUL character",
        id="deliver-jsonl-nul-event-id",
    ),
    pytest.param(
        ["release", "deliver-promotion-audit"],
        "promotion.json",
        lambda: _with(PROMOTION, _set("release", "2025.11\x00")),
        "promotion.json: field release: contains a NUL character",
        id="promotion-nul",
    ),
    pytest.param(
        ["release", "deliver-rollback-execution"],
        "rollback.json",
        lambda: _with(ROLLBACK, _set("reason", "bad \ud800 build")),
        "rollback.json: field reason: contains a lone surrogate",
        id="rollback-surrogate",
    ),
    pytest.param(
        ["release", "deliver-endpoint-export"],
        "endpoint-management-export/manifest.json",
        lambda: _with(MANIFEST, _set("artifacts.0.path", "artifacts/a\x00.pkg")),
        "field artifacts[0].path: contains a NUL character",
        id="export-nul-artifact-path",
    ),
]


@pytest.mark.parametrize(("command", "name", "text", "message"), CASES)
def test_unstorable_file_input_is_one_line_exit_2_and_sends_nothing(
    tmp_path: Path,
    emulate_process: tuple[str, Path],
    command: list[str],
    name: str,
    text: Callable[[], str],
    message: str,
) -> None:
    base_url, cfg_dir = emulate_process
    env = read_env_file(cfg_dir / "emulators.env")
    shutil.copy(cfg_dir / "connectors.json", tmp_path / "connectors.json")
    if name.startswith("endpoint-management-export/"):
        shutil.copytree(MANIFEST.parent, tmp_path / "endpoint-management-export")
    (tmp_path / name).write_text(text(), encoding="utf-8")
    provider = "jamf" if "export" in command[-1] else "splunk,webhook"
    sent = {p: _requests(base_url, p) for p in ("splunk", "webhook", "jamf")}
    stored = ["--output", "out"] if command[0] == "integration" else ["--metadata-json", "metadata.json"]
    result = run_cavra(
        *command, name, "--config", "connectors.json", "--provider", provider, *stored, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "\x00" not in result.stderr
    assert {p: _requests(base_url, p) for p in ("splunk", "webhook", "jamf")} == sent
    assert not (tmp_path / "metadata.json").exists() and not (tmp_path / "out").exists()


def test_evidence_build_refuses_a_nul_in_a_decision(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["decisions"][0]["action"] = "shell\x00rm"

    (tmp_path / "session.json").write_text(_with(SESSION, change), encoding="utf-8")
    result = run_cavra(
        "evidence", "build-siem-event", "session.json", "--output", "siem-event.json", cwd=tmp_path
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "error: session.json: field decisions[0].action: contains a NUL character (U+0000), "
        "which the store cannot keep"
    )
    assert not (tmp_path / "siem-event.json").exists()
