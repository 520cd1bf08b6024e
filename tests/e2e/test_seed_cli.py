"""The seed's CLI block, verbatim, on a fresh directory: ``cavra init`` lays out its ``.cavra/`` paths,
the emulators serve the providers, and every command exits 0."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SEED_FILES = (
    ROOT.parent / "shared" / "seed" / "connector-execution-hooks.txt",
    Path("/work/shared/seed/connector-execution-hooks.txt"),
)

#: The seed's CLI commands exactly as written there (checked against the seed file when it is present).
SEED_CLI = (
    "cavra integration deliver .cavra/evidence/latest/siem-event.json \\\n"
    "--config .cavra/connectors.json \\\n"
    "--provider splunk \\\n"
    "--output .cavra/integrations/deliveries",
    "cavra release deliver-promotion-audit .cavra/release/rollout-promotion-execution/"
    "rollout-promotion-execution.json \\\n"
    "--config .cavra/connectors.json \\\n"
    "--provider webhook \\\n"
    "--retries 1 \\\n"
    "--metadata-json .cavra/evidence/metadata.json",
    "cavra release deliver-rollback-execution .cavra/release/rollout-rollback-execution/"
    "rollout-rollback-execution.json \\\n"
    "--config .cavra/connectors.json \\\n"
    "--provider webhook \\\n"
    "--retries 1 \\\n"
    "--metadata-json .cavra/evidence/metadata.json",
    "cavra release deliver-endpoint-export .cavra/release/endpoint-management-export/"
    "endpoint-management-export-manifest.json \\\n"
    "--config .cavra/connectors.json \\\n"
    "--provider jamf \\\n"
    "--retries 1 \\\n"
    "--metadata-json .cavra/evidence/metadata.json",
    "cavra release connector-delivery-history --metadata-json .cavra/evidence/metadata.json "
    "--provider webhook --no-success",
    "cavra release connector-delivery-dashboard --metadata-json .cavra/evidence/metadata.json",
    "cavra release endpoint-publication-history --metadata-json .cavra/evidence/metadata.json "
    "--provider jamf --no-success",
    "cavra release endpoint-publication-dashboard --metadata-json .cavra/evidence/metadata.json",
)

pytestmark = pytest.mark.slow


def test_the_commands_are_the_seeds() -> None:
    seed = next((p for p in SEED_FILES if p.is_file()), None)
    if seed is None:
        pytest.skip("the seed file (shared/seed) is not beside this checkout")
    text = seed.read_text()
    for command in SEED_CLI:
        assert command in text, command


@pytest.fixture
def emulators() -> Iterator[str]:
    proc = subprocess.Popen(
        [str(BIN / "cavra"), "emulate", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = re.search(r"listening on (http://\S+)", proc.stdout.readline())
            if match:
                yield match.group(1)
                break
        else:
            pytest.fail("cavra emulate did not start")
    finally:
        proc.terminate()
        proc.wait(10)


def env_file(path: Path) -> dict[str, str]:
    import shlex

    pairs = (line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines() if line)
    return {k: shlex.split(v)[0] for k, v in pairs}


def test_seed_cli_block_on_a_fresh_directory(tmp_path: Path, emulators: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAVRA_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"

    # before init: the seed's first command fails with one line that says how to create the file
    before = subprocess.run(
        ["bash", "-c", SEED_CLI[0]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert before.returncode == 2
    assert before.stderr.strip() == (
        "error: .cavra/evidence/latest/siem-event.json: file not found "
        "(run `cavra init` to lay out the seed's .cavra/ files)"
    )

    init = subprocess.run(
        ["cavra", "init", "--emulators", emulators], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert init.returncode == 0, init.stderr
    env.update(env_file(tmp_path / ".cavra" / "emulators.env"))
    for command in SEED_CLI:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr
    evidence = list((tmp_path / ".cavra" / "integrations" / "deliveries").glob("*-connector-delivery.json"))
    assert len(evidence) == 1
    assert shutil.which("cavra", path=env["PATH"])


def test_init_keeps_what_exists(tmp_path: Path) -> None:
    config = tmp_path / ".cavra" / "connectors.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"connectors": {}}\n')
    done = subprocess.run([str(BIN / "cavra"), "init"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert config.read_text() == '{"connectors": {}}\n'
    assert ".cavra/connectors.json\tkept (exists)" in done.stdout
    assert (
        tmp_path / ".cavra" / "release" / "rollout-rollback-execution" / "rollout-rollback-execution.json"
    ).is_file()
    bad = subprocess.run(
        [str(BIN / "cavra"), "init", "--for", "prod"], cwd=tmp_path, capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr == "error: --for: expected emulators or real, got 'prod'\n"


def test_provider_all_means_the_providers_that_take_the_event(tmp_path: Path, emulators: str) -> None:
    """The emulator's own hint, --provider all, delivers an evidence event everywhere it can go and says
    which endpoint providers were skipped and why (exit 0), instead of failing at Jamf, Intune and Linux."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAVRA_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    init = subprocess.run(
        ["cavra", "init", "--emulators", emulators], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert init.returncode == 0, init.stderr
    env.update(env_file(tmp_path / ".cavra" / "emulators.env"))
    args = ["cavra", "integration", "deliver", ".cavra/evidence/latest/siem-event.json"]
    args += ["--config", ".cavra/connectors.json", "--provider", "all", "--json"]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("jamf", "intune", "linux"):
        assert f"skipped {name}: endpoint-management providers take endpoint exports" in done.stderr
    import json

    record = json.loads(done.stdout)
    sent = {d["provider"] for d in record["deliveries"]}
    assert {"splunk", "slack", "jira", "servicenow"} <= sent
    assert not sent & {"jamf", "intune", "linux"}
