"""``cavra serve`` runs on uvloop + httptools when installed (``uvicorn[standard]``), and the request
dependencies no longer hop through the thread pool."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cavra.api import deps
from cavra.cli import serve as serve_cli

CAVRA = shutil.which("cavra", path=str(Path(sys.executable).parent)) or "cavra"


def test_uvloop_and_httptools_are_chosen_when_installed() -> None:
    # both come with the uvicorn[standard] dependency
    assert serve_cli.event_loop_and_parser() == ("uvloop", "httptools")


def test_the_pure_python_pair_is_chosen_when_they_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_cli, "find_spec", lambda name: None)
    assert serve_cli.event_loop_and_parser() == ("asyncio", "h11")


def test_request_dependencies_run_on_the_event_loop() -> None:
    # a plain `def` dependency is run by FastAPI in its thread pool, once per request
    for dependency in (deps.runtime_dependency, deps.get_store, deps.get_config):
        assert inspect.iscoroutinefunction(dependency), dependency.__name__


def test_serve_process_answers_on_uvloop_and_httptools(tmp_path: Path) -> None:
    store = tmp_path / "metadata.db"
    proc = subprocess.Popen(
        [CAVRA, "serve", "--port", "0", "--store", f"sqlite:///{store}", "--no-worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    url = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not url:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"listening on (http://\S+) \(.*; uvloop, httptools\)", line)
            if m:
                url = m.group(1)
        assert url, "no 'listening on … (uvloop, httptools)' line: " + "".join(lines)
        # the port was 0: the bound one is in the line
        assert not url.endswith(":0")
        for _ in range(3):  # keep-alive not needed: a few fresh connections through httptools
            with urllib.request.urlopen(url + "/healthz", timeout=10) as resp:
                assert resp.status == 200
                assert json.loads(resp.read())["status"] == "ok"
                assert resp.headers["x-request-id"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
