"""A real ``cavra emulate`` process for CLI tests."""

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

CAVRA = shutil.which("cavra", path=str(Path(sys.executable).parent)) or "cavra"


@pytest.fixture(scope="session")
def emulate_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``cavra emulate --port 0 --write-config DIR`` running; yields (base_url, DIR)."""
    cfg_dir = tmp_path_factory.mktemp("emulators")
    proc = subprocess.Popen(
        [CAVRA, "emulate", "--port", "0", "--write-config", str(cfg_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    base_url = ""
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            base_url = m.group(1)
        if "wrote" in line:
            break
    if not base_url:
        proc.kill()
        pytest.fail("cavra emulate did not start: " + "".join(lines))
    try:
        yield base_url, cfg_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_cavra(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAVRA, *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        m = re.match(r"export (\w+)='(.*)'$", line)
        if m:
            env[m.group(1)] = m.group(2)
    return env
