"""End to end: ``cavra serve`` as a real process on a free port, the emulators on loopback, and the seed's
curl commands run with curl, as written. Also: graceful shutdown finishes an in-flight delivery, and
``python -m cavra.demo`` serves the seed's commands as printed."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cavra.demo import SEED_CURLS, seed_curls
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer, write_demo_config
from cavra.governance import service as governance
from cavra.store import open_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "release"
EXPORT_DIR = EXAMPLES / "endpoint-management-export"
RECORDS = (
    ("/promotion-executions", EXAMPLES / "rollout-promotion-execution" / "rollout-promotion-execution.json"),
    ("/rollback-executions", EXAMPLES / "rollout-rollback-execution" / "rollout-rollback-execution.json"),
    ("/endpoint-management-exports", EXPORT_DIR / "endpoint-management-export-manifest.json"),
)
TOKEN_VARS = (
    "CAVRA_API_TOKENS_FILE",
    "CAVRA_API_TOKEN_ADMIN",
    "CAVRA_API_TOKEN_OPERATOR",
    "CAVRA_API_TOKEN_AUDITOR",
)
SEED_FILES = (
    ROOT.parent / "shared" / "seed" / "connector-execution-hooks.txt",
    Path("/work/shared/seed/connector-execution-hooks.txt"),
)

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS and not k.startswith("CAVRA_STORE")}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def wait_ready(url: str, proc: asyncio.subprocess.Process, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.returncode is None, f"server exited early: {log.read_text()[-2000:]}"
            try:
                async with session.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"server not ready: {log.read_text()[-2000:]}")


async def curl(command: str) -> Any:
    """Run a curl command line exactly as written (backslash-newline continuations); return its JSON."""
    assert shutil.which("curl"), "curl must be installed for the end-to-end tests"
    argv = shlex.split(command.replace("\\\n", " "))
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"{command}\nexit {proc.returncode}: {err.decode()}"
    body = json.loads(out)
    assert not (isinstance(body, dict) and set(body) == {"error", "detail", "request_id"}), (
        f"{command}\n{body}"
    )
    return body


async def start_serve(
    tmp: Path, srv: EmulatorServer
) -> tuple[asyncio.subprocess.Process, str, Path, Path, dict[str, str]]:
    config, env_file = write_demo_config(tmp / "cfg", srv.base_url, srv.settings)
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in env_file.read_text().splitlines()
        if line.strip()
    )
    env = {k: shlex.split(v)[0] for k, v in env.items()}
    port = free_port()
    log = tmp / "server.log"
    store = tmp / "metadata.db"
    argv = [sys.executable, "-c", "from cavra.cli.main import main; main()", "serve", "--port", str(port)]
    argv += [
        "--config",
        str(config),
        "--store",
        str(store),
        "--exports-dir",
        str(EXPORT_DIR),
        "--log-format",
        "json",
    ]
    with open(log, "wb") as fh:
        proc = await asyncio.create_subprocess_exec(*argv, env=server_env(env), stdout=fh, stderr=fh)
    url = f"http://127.0.0.1:{port}"
    await wait_ready(url, proc, log)
    return proc, url, log, store, env


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> int:
    if proc.returncode is None:
        proc.send_signal(sig)
    return await asyncio.wait_for(proc.wait(), 90)


async def register_samples(url: str) -> None:
    for route, path in RECORDS:
        body = await curl(f"curl -sS -X POST {url}{route} -H 'content-type: application/json' -d @{path}")
        assert body["schema_version"].startswith("cavra.")


async def test_seed_curl_commands_against_cavra_serve(tmp_path: Path) -> None:
    async with EmulatorServer() as srv:
        proc, url, log, _, env = await start_serve(tmp_path, srv)
        try:
            await register_samples(url)
            answers = [await curl(cmd) for cmd in seed_curls(url)]
        finally:
            code = await stop(proc)
        registered, delivered, promo, rollback, publish, failed, board, pfailed, pboard = answers
        assert registered["integration_id"] == "splunk" and registered["status"] == "active"
        for record in (delivered, promo, rollback, publish):
            assert record["schema_version"] == "cavra.connector.delivery.v1"
            assert record["success"] is True, record
            assert record["deliveries"][0]["attempt_count"] >= 1
        assert delivered["metadata_kind"] == "integration-delivery"
        assert promo["metadata_kind"] == rollback["metadata_kind"] == "release-connector-delivery"
        assert failed["items"] == [] and pfailed["items"] == []
        assert board["totals"]["succeeded"] == 2 and pboard["totals"]["succeeded"] == 1
        assert len(srv.hub.received("splunk")) == 1
        assert len(srv.hub.received("webhook")) == 2
        assert srv.hub.received("jamf")
    assert code in (0, -signal.SIGTERM)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(
        line.get("path") == "/integrations/splunk/deliver" and line.get("status") == 200 for line in lines
    )
    secrets = [v for v in env.values() if not v.startswith("http")]
    assert len(secrets) >= 8
    for secret in secrets:
        assert secret not in text


async def test_shutdown_finishes_in_flight_delivery(tmp_path: Path) -> None:
    async with EmulatorServer() as srv:
        proc, url, _, store_path, _ = await start_serve(tmp_path, srv)
        await register_samples(url)
        srv.hub.add_fault("webhook", Fault(delay=1.5, count=1))
        command = seed_curls(url)[3]  # the rollback delivery, to the webhook
        task = asyncio.create_task(curl(command))
        deadline = time.monotonic() + 30
        while not srv.hub.received("webhook"):
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.02)
        t0 = time.monotonic()
        code = await stop(proc)  # SIGTERM while the emulator is still holding the request
        record = await task
        assert time.monotonic() - t0 >= 1.0, "the server must have waited for the delivery"
    assert code in (0, -signal.SIGTERM)
    assert record["success"] is True
    with open_store(str(store_path)) as store:
        history = governance.connector_delivery_history(store, provider="webhook")
    assert history["total"] == 1 and history["items"][0]["delivery_id"] == record["id"]


async def test_demo_serves_the_seed_commands(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "cavra.demo", "--port", str(port), "--emulator-port", "0"]
    argv += ["--dir", str(tmp_path / "demo"), "--fresh"]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=server_env({}), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    printed = ""
    try:
        while "Ctrl-C stops" not in printed:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line, f"demo exited: {printed[-2000:]}"
            printed += line.decode()
        commands = seed_curls(f"http://127.0.0.1:{port}")
        for cmd in commands:
            assert cmd in printed
        answers = [await curl(cmd) for cmd in commands]
        assert all(answers[i]["success"] is True for i in (1, 2, 3, 4))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(proc.stdout.read(), 90)
        code = await proc.wait()
    assert code == 0, rest.decode()[-2000:]
    assert "demo stopped" in rest.decode()
    assert (tmp_path / "demo" / "metadata.db").is_file()


def test_demo_commands_are_the_seed_commands() -> None:
    seed = next((p for p in SEED_FILES if p.is_file()), None)
    if seed is None:
        pytest.skip("the seed page (shared/seed) is not beside this checkout")
    text = seed.read_text(encoding="utf-8")
    assert text.count("curl ") == len(SEED_CURLS)
    for cmd in SEED_CURLS:
        assert cmd in text, cmd
