"""The README's runnable shell blocks (marked ``<!-- readme-test: run -->``), run as written in a fresh
directory: every command must exit 0. Only the emulators' port is changed, to a free one (the README's
8900 may be taken on this machine)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cavra.ports import port_holder

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- readme-test: run -->"

pytestmark = pytest.mark.slow


def runnable_blocks(text: str) -> list[str]:
    blocks = re.findall(re.escape(MARK) + r"\s*```sh\n(.*?)```", text, flags=re.S)
    return [b.strip() for b in blocks]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_marks_its_runnable_blocks() -> None:
    blocks = runnable_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 4
    assert any("cavra init" in b for b in blocks)


def test_readme_blocks_run_as_written(tmp_path: Path) -> None:
    port = free_port()
    script = "\n".join(runnable_blocks((ROOT / "README.md").read_text()))
    script = script.replace("cavra emulate", f"cavra emulate --port {port}")
    script = script.replace("cavra init", f"cavra init --emulators http://127.0.0.1:{port}")
    script = script.replace("8900", str(port))
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAVRA_")}
    env["COLUMNS"] = "200"
    try:
        done = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr
        assert list((tmp_path / ".cavra" / "integrations" / "deliveries").glob("*-connector-delivery.json"))
        assert not (tmp_path / "siem-event.json").exists()  # nothing left outside .cavra/
    finally:
        holder = port_holder(port)
        match = re.match(r"pid (\d+) ", holder or "")
        if match:
            os.kill(int(match.group(1)), 15)
