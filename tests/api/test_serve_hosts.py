"""``cavra serve`` as a real process: the Host check (DNS rebinding) is on whenever it listens on loopback,
with or without tokens, ``--allowed-host`` adds names, and HEAD works through uvicorn. ``cavra emulate``
warns when it listens off loopback."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cavra.cli.emulate import exposure_warning

CAVRA = shutil.which("cavra", path=str(Path(sys.executable).parent)) or "cavra"
ADMIN = "tok-admin-serve-hosts-0123456789"
TOKEN_VARS = (
    "CAVRA_API_TOKENS_FILE",
    "CAVRA_API_TOKEN_ADMIN",
    "CAVRA_API_TOKEN_OPERATOR",
    "CAVRA_API_TOKEN_AUDITOR",
)

pytestmark = pytest.mark.slow


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS and not k.startswith("CAVRA_")}
    return {**env, **extra, "PYTHONUNBUFFERED": "1"}


@contextmanager
def serving(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[int]:
    argv = [CAVRA, "serve", "--port", "0", "--store", f"sqlite:///{tmp / 'm.db'}", "--no-worker", *args]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp, env=_env(env or {})
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        port = 0
        while time.monotonic() < deadline and not port:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        assert port, "".join(lines)
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ask(
    port: int, method: str, path: str, host: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_protected_serve_refuses_a_rebound_host_and_answers_allowed_ones(tmp_path: Path) -> None:
    with serving(tmp_path, "--allowed-host", "cavra.test", "--allowed-host", "10.9.8.7") as port:
        rebound = {"Origin": "http://rebind.attacker.example:8100", "Content-Type": "application/json"}
        status, body = ask(port, "POST", "/connectors/reload", "rebind.attacker.example:8100", rebound)
        assert status == 421 and b"misdirected_request" in body
        assert ask(port, "GET", "/console", "rebind.attacker.example:8100")[0] == 421
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "cavra.test", "cavra.test:443", "10.9.8.7:1"):
            assert ask(port, "GET", "/healthz", host)[0] == 200, host
        status, body = ask(port, "HEAD", "/healthz", f"127.0.0.1:{port}")
        assert status == 200 and body == b""
        status, _ = ask(
            port,
            "POST",
            "/connectors/reload",
            f"127.0.0.1:{port}",
            {"Content-Type": "text/plain", "Content-Length": "2"},
        )
        assert status in (415, 400)


def test_token_serve_on_loopback_checks_the_host_too(tmp_path: Path) -> None:
    with serving(
        tmp_path, env={"CAVRA_API_TOKEN_ADMIN": ADMIN, "CAVRA_ALLOWED_HOSTS": "api.cavra.test"}
    ) as port:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        assert ask(port, "GET", "/connectors", "rebind.attacker.example", auth)[0] == 421
        assert ask(port, "GET", "/connectors", "api.cavra.test", auth)[0] == 200
        assert ask(port, "GET", "/connectors", f"[::1]:{port}", auth)[0] == 200


def test_a_bad_allowed_host_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [CAVRA, "serve", "--port", "0", "--allowed-host", "https://cavra.test/"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env({}),
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--allowed-host" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_emulate_warning_names_non_loopback_addresses_only() -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        assert exposure_warning(host) is None
    warning = exposure_warning("0.0.0.0")
    assert warning is not None and "/_emulator/requests" in warning and "\n" not in warning


def test_emulate_warns_on_stderr_when_bound_off_loopback(tmp_path: Path) -> None:
    for host, warned in (("0.0.0.0", True), ("127.0.0.1", False)):
        argv = [CAVRA, "emulate", "--host", host, "--port", "0", "--providers", "webhook"]
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env({})
        )
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline()
            assert "emulators listening" in line, line
        finally:
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
        lines = [x for x in err.splitlines() if x.strip()]
        if warned:
            assert (
                len(lines) == 1 and lines[0].startswith("warning:") and "/_emulator/requests" in lines[0]
            ), err
        else:
            assert lines == [], err
