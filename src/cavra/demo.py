"""``make demo`` (``python -m cavra.demo``): the seed's curl commands, working on a laptop.

It starts the provider emulators (port 8900, or a free one if that is taken), writes a connector config
pointed at them (``.cavra/demo/connectors.json`` and ``emulators.env``), loads the sample release records
(``rpe_prod``, ``rre_prod``, ``eme_stable``) into a separate SQLite store (``.cavra/demo/metadata.db``),
starts ``cavra serve`` on 127.0.0.1:8000 in protected mode (loopback clients only, no tokens), and prints
the seed's curl commands. Ctrl-C stops the server (which finishes in-flight deliveries) and the emulators.

Nothing is written or started before the API port is known to be free (a taken port is refused naming the
process that holds it), and the demo directory is locked for the run, so a second ``make demo`` never
rewrites a running demo's config. ``make demo PORT=8001 EMULATOR_PORT=0 DEMO_DIR=.cavra/demo2`` runs a
second one beside the first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp
from filelock import FileLock, Timeout

from cavra.emulators.server import EmulatorServer, demo_environment, write_demo_config
from cavra.errors import CavraError
from cavra.ports import check_free, port_taken_message

SEED_BASE = "http://127.0.0.1:8000"

#: The seed's curl commands, exactly as written there (tests run them with ``curl`` against the demo).
SEED_CURLS: tuple[str, ...] = (
    "curl -X POST http://127.0.0.1:8000/integrations \\\n"
    "-H 'content-type: application/json' \\\n"
    '-d \'{"integration_id":"splunk","provider":"splunk","category":"siem","status":"active",'
    '"health_status":"healthy"}\'',
    "curl -X POST http://127.0.0.1:8000/integrations/splunk/deliver \\\n"
    "-H 'content-type: application/json' \\\n"
    '-d \'{"event":{"event_type":"cavra.evidence_bundle","session_id":"demo-session","decision_count":7,'
    '"blocked_count":4,"approval_required_count":1,"max_severity":"high"},"retries":1}\'',
    "curl -X POST http://127.0.0.1:8000/promotion-executions/rpe_prod/audit-export/deliver \\\n"
    "-H 'content-type: application/json' \\\n"
    '-d \'{"provider":"webhook","retries":1}\'',
    "curl -X POST http://127.0.0.1:8000/rollback-executions/rre_prod/deliver \\\n"
    "-H 'content-type: application/json' \\\n"
    '-d \'{"provider":"webhook","retries":1}\'',
    "curl -X POST http://127.0.0.1:8000/endpoint-management-exports/eme_stable/publish \\\n"
    "-H 'content-type: application/json' \\\n"
    '-d \'{"provider":"jamf","retries":1}\'',
    "curl 'http://127.0.0.1:8000/release-connector-deliveries?provider=webhook&success=false'",
    "curl http://127.0.0.1:8000/release-connector-deliveries/dashboard",
    "curl 'http://127.0.0.1:8000/endpoint-management-publications?provider=jamf&success=false'",
    "curl http://127.0.0.1:8000/endpoint-management-publications/dashboard",
)

#: (record kind, example file under examples/release/)
SAMPLE_RECORDS = (
    ("promotion_execution", "rollout-promotion-execution/rollout-promotion-execution.json"),
    ("rollback_execution", "rollout-rollback-execution/rollout-rollback-execution.json"),
    ("endpoint_export", "endpoint-management-export/endpoint-management-export-manifest.json"),
)
EXPORT_DIR = "endpoint-management-export"

#: variables that would take the demo server out of protected mode (the seed's curls send no token)
_TOKEN_VARS = (
    "CAVRA_API_TOKENS_FILE",
    "CAVRA_API_TOKEN_ADMIN",
    "CAVRA_API_TOKEN_OPERATOR",
    "CAVRA_API_TOKEN_AUDITOR",
)


def seed_curls(base_url: str = SEED_BASE) -> list[str]:
    """The seed's curl commands, pointed at ``base_url`` (unchanged for the default 127.0.0.1:8000)."""
    return [cmd.replace(SEED_BASE, base_url.rstrip("/")) for cmd in SEED_CURLS]


def find_examples(start: Path | None = None) -> Path:
    """``examples/release`` of the working tree (the cwd, or the checkout this module is installed from)."""
    candidates = [
        (start or Path.cwd()) / "examples" / "release",
        Path(__file__).resolve().parents[2] / "examples" / "release",
    ]
    for path in candidates:
        if (path / SAMPLE_RECORDS[0][1]).is_file():
            return path
    raise CavraError("examples/release not found: run the demo from the repository root")


def load_samples(store_path: Path, examples: Path) -> list[str]:
    """Validate and store the sample release records; return their ids."""
    from cavra.app import Cavra
    from cavra.governance import service as governance

    ids: list[str] = []
    with Cavra(store_url=str(store_path)) as service:
        for kind, rel in SAMPLE_RECORDS:
            record = governance.load_record_file(examples / rel, kind)
            stored = governance.register_record(service.store, kind, record)
            ids.append(str(stored.get("execution_id") or stored.get("export_id")))
    return ids


def server_command(port: int, config: Path, store: Path, exports_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from cavra.cli.main import main; main()",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(config),
        "--store",
        str(store),
        "--exports-dir",
        str(exports_dir),
    ]


def server_environment(emulator_env: Mapping[str, str], config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _TOKEN_VARS}
    env.update(emulator_env)
    env["CAVRA_CONNECTOR_CONFIG"] = str(config)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


async def wait_ready(base_url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll ``/readyz`` until it answers 200; fail if the server exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CavraError(f"cavra serve exited with status {proc.returncode} (see its log above)")
            try:
                async with session.get(f"{base_url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise CavraError(f"cavra serve did not become ready at {base_url} within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 75.0) -> int:
    """SIGTERM (the server finishes in-flight deliveries), then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def banner(api: str, emulators: str, workdir: Path, ids: list[str]) -> str:
    lines = [
        "",
        "CAVRA Connectors demo",
        f"  API          {api}   (docs: {api}/docs, protected mode: loopback clients only)",
        f"  emulators    {emulators}   (requests: {emulators}/_emulator/requests?provider=webhook)",
        f"  config       {workdir / 'connectors.json'}   (secrets in {workdir / 'emulators.env'})",
        f"  store        {workdir / 'metadata.db'}   (records: {', '.join(ids)})",
        "",
        "Try the seed's commands:",
        "",
    ]
    for cmd in seed_curls(api):
        lines.append(cmd)
        lines.append("")
    lines.append("Ctrl-C stops the server and the emulators.")
    return "\n".join(lines)


def check_ports(args: argparse.Namespace) -> None:
    """Refuse a taken API port before anything is written or started, naming the process that holds it."""
    if not 1 <= args.port <= 65535:
        raise CavraError(f"--port: must be between 1 and 65535, got {args.port}")
    if not 0 <= args.emulator_port <= 65535:
        raise CavraError(f"--emulator-port: must be between 0 and 65535, got {args.emulator_port}")
    problem = check_free("127.0.0.1", args.port)
    if problem is not None:
        raise CavraError(
            f"--port {args.port}: {problem}; stop it, or run the demo on another port (make demo PORT=8001)"
        )


def lock_workdir(workdir: Path) -> FileLock:
    """Hold the demo directory for this run, so a second demo never rewrites a running demo's files."""
    lock = FileLock(str(workdir / ".demo.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise CavraError(
            f"another demo is running from {workdir} (its files are left as they are); stop it first, "
            "or give this one its own directory and ports (make demo PORT=8001 EMULATOR_PORT=0 "
            "DEMO_DIR=.cavra/demo2)"
        ) from None
    return lock


def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    """The demo directory (created; emptied of its store with ``--fresh``) and the examples directory."""
    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for name in ("metadata.db", "metadata.db-wal", "metadata.db-shm"):
            (workdir / name).unlink(missing_ok=True)
    return workdir, find_examples()


def start_server(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # its own session: Ctrl-C reaches the demo only, which then stops the server once, gracefully
    return subprocess.Popen(cmd, env=env, start_new_session=True)


async def run(args: argparse.Namespace, workdir: Path, examples: Path) -> int:
    emu = EmulatorServer(host="127.0.0.1", port=args.emulator_port)
    try:
        await emu.start()
    except OSError:
        if args.emulator_port == 0:
            raise
        taken = port_taken_message("127.0.0.1", args.emulator_port)
        emu = EmulatorServer(host="127.0.0.1", port=0)
        await emu.start()
        print(f"note: {taken}; the emulators use {emu.base_url} instead", file=sys.stderr, flush=True)
    try:
        config, _ = write_demo_config(workdir, emu.base_url, emu.settings)
        _, emulator_env = demo_environment(emu.base_url, emu.settings)
        store = workdir / "metadata.db"
        ids = await asyncio.to_thread(load_samples, store, examples)
        cmd = server_command(args.port, config.resolve(), store.resolve(), (examples / EXPORT_DIR).resolve())
        proc = await asyncio.to_thread(start_server, cmd, server_environment(emulator_env, config.resolve()))
        api = f"http://127.0.0.1:{args.port}"
        try:
            await wait_ready(api, proc)
            if proc.poll() is not None:  # another server answered /readyz: ours could not listen
                raise CavraError(f"cavra serve exited with status {proc.returncode} (see its log above)")
            print(banner(api, emu.base_url, workdir, ids), flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            while not stop.is_set() and proc.poll() is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.5)
        finally:
            code = await asyncio.to_thread(stop_server, proc)
        print(f"demo stopped (server exit status {code})", flush=True)
        return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else 1
    finally:
        await emu.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cavra.demo", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--port", type=int, default=8000, help="API port (the seed's commands use 8000)")
    parser.add_argument("--emulator-port", type=int, default=8900, help="emulator port (0: a free one)")
    parser.add_argument("--dir", default=".cavra/demo", help="demo state directory")
    parser.add_argument("--fresh", action="store_true", help="start from an empty store")
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        print("note: curl is not installed; the commands below need it", file=sys.stderr)
    try:
        check_ports(args)
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        with lock_workdir(Path(args.dir)):
            workdir, examples = prepare(args)
            return asyncio.run(run(args, workdir, examples))
    except CavraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
