"""A second ``make demo`` must not break the first: it refuses before writing or starting anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN_VARS = (
    "CAVRA_API_TOKENS_FILE",
    "CAVRA_API_TOKEN_ADMIN",
    "CAVRA_API_TOKEN_OPERATOR",
    "CAVRA_API_TOKEN_AUDITOR",
)

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo(port: int, workdir: Path, *, emulator_port: int = 0) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cavra.demo",
        "--port",
        str(port),
        "--emulator-port",
        str(emulator_port),
        "--dir",
        str(workdir),
    ]


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS and not k.startswith("CAVRA_STORE")}
    e["PYTHONUNBUFFERED"] = "1"
    return e


def wait_for_banner(proc: subprocess.Popen[str], timeout: float = 90) -> str:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            assert proc.poll() is None, f"the first demo exited: {''.join(seen)}"
            continue
        seen.append(line)
        if "Try the seed's commands" in line:
            return "".join(seen)
    raise AssertionError(f"no banner: {''.join(seen)}")


def test_second_demo_refuses_and_leaves_the_first_alone(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    port = free_port()
    first = subprocess.Popen(
        demo(port, workdir), cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_banner(first)
        config = workdir / "connectors.json"
        emulators_env = workdir / "emulators.env"
        before = (config.read_bytes(), emulators_env.read_bytes(), config.stat().st_mtime_ns)

        # same port, same directory: the port is refused first, naming the server that holds it
        second = subprocess.run(
            demo(port, workdir), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"127.0.0.1:{port} is in use by pid " in second.stderr
        assert "serve" in second.stderr  # the holder's command line names the demo's server
        assert "Try the seed's commands" not in second.stdout
        assert "Traceback" not in second.stderr

        # another port, same directory: the running demo's files are never rewritten
        third = subprocess.run(
            demo(free_port(), workdir), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60
        )
        assert third.returncode == 2, third.stdout + third.stderr
        assert "another demo is running from" in third.stderr
        assert (config.read_bytes(), emulators_env.read_bytes(), config.stat().st_mtime_ns) == before
    finally:
        first.terminate()
        try:
            first.wait(60)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()
    assert first.returncode == 0


def test_bad_port_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        demo(70000, tmp_path / "d"), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --port: must be between 1 and 65535, got 70000"
    assert not (tmp_path / "d").exists()
