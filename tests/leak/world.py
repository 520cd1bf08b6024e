"""One run of everything that can show a delivery, with every provider echoing what it received.

Real processes on loopback: ``cavra emulate`` (the providers, switched to echo mode with the fault
``{"echo": true}``), two ``cavra serve`` processes (SQLite store with text logs, PostgreSQL store with JSON
logs, each with its outbox worker), and the CLI (``integration deliver`` with ``--output`` and ``--json``,
the release commands with a ``--metadata-json`` store, history and dashboards). Everything any of them
showed or stored is collected as text, channel by channel, for the canary checks.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cavra.connectors.registry import PROVIDERS
from tests.api.conftest import EXPORT, EXPORT_DIR, PROMOTION, ROLLBACK, SEED_EVENT, load
from tests.cli.conftest import CAVRA, read_env_file
from tests.connectors.kit import EMULATORS, event_for, takes_publications

from .canaries import Detector, echo_blob, provider_canaries, webhook_url

#: how long a process may take to start (a loaded machine)
START_TIMEOUT = 60.0


@dataclass
class World:
    """Texts per channel, the canaries per provider, and what the emulators received."""

    channels: dict[str, list[str]] = field(default_factory=dict)
    canaries: dict[str, set[str]] = field(default_factory=dict)
    pairs: dict[str, set[str]] = field(default_factory=dict)
    #: channel -> canary -> the first form or stretch of it found there
    found: dict[str, dict[str, str]] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)

    def add(self, channel: str, text: str) -> None:
        self.channels.setdefault(channel, []).append(text)


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        found = re.search(pattern, text)
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"process did not start: {path.read_text(errors='replace')[-2000:]}")


def _start(
    args: list[str], log: Path, env: dict[str, str], pattern: str
) -> tuple[subprocess.Popen[str], str]:
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            [CAVRA, *args], stdout=out, stderr=subprocess.STDOUT, text=True, env={**os.environ, **env}
        )
    return proc, _wait_for(log, pattern, proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


#: the echo rounds: another target's canaries first (in every form), then the request in each form
ECHO_ROUNDS: list[tuple[str | bool, bool]] = [(True, True), ("raw", False), ("url", False), ("base64", False)]


def _echo_everywhere(emulators: str, forms: str | bool, blob: str | None) -> None:
    """Every provider's delivery emulator answers every request with an echo (token issuers stay real)."""
    with httpx.Client(base_url=emulators, timeout=30) as c:
        assert c.delete("/_emulator/faults").status_code == 200
        for _, emulator in EMULATORS.values():
            fault: dict[str, Any] = {"provider": emulator, "echo": forms, "status": 400, "count": 10_000}
            if blob is not None:
                fault["body"] = blob
            resp = c.post("/_emulator/faults", json=fault)
            assert resp.status_code == 200, resp.text


def _api_round(world: World, api: str, channel: str, *, echo: bool) -> None:
    """Deliver to every provider through the API, waiting and through the outbox (``"wait": false``)."""
    siem_like = [p for p in PROVIDERS if not takes_publications(p)]
    with httpx.Client(base_url=api, timeout=120) as c:
        if not echo:
            for route, path in (
                ("/promotion-executions", PROMOTION),
                ("/rollback-executions", ROLLBACK),
                ("/endpoint-management-exports", EXPORT),
            ):
                assert c.post(route, json=load(path)).status_code in (200, 201)
            for provider in siem_like:
                resp = c.post("/integrations", json={"integration_id": provider, "provider": provider})
                assert resp.status_code in (200, 201), resp.text
        jobs: list[str] = []
        for provider in PROVIDERS:
            for wait in (True, False) if echo else (True,):
                if takes_publications(provider):
                    route = "/endpoint-management-exports/eme_stable/publish"
                    body: dict[str, Any] = {"provider": provider, "retries": 0}
                else:
                    route = f"/integrations/{provider}/deliver"
                    body = {"event": {**SEED_EVENT, "session_id": f"leak-{provider}-{wait}"}, "retries": 0}
                resp = c.post(route, json={**body, "wait": wait})
                world.add(channel, resp.text)
                if resp.status_code == 202:
                    jobs.append(resp.json()["job_id"])
        if echo:
            resp = c.post(
                "/promotion-executions/rpe_prod/audit-export/deliver",
                json={"provider": ",".join(siem_like), "retries": 0},
            )
            world.add(channel, resp.text)
        deadline = time.monotonic() + 60
        for job in jobs:
            while time.monotonic() < deadline:
                answer = c.get(f"/jobs/{job}")
                if answer.json().get("state") not in ("queued", "running"):
                    break
                time.sleep(0.1)
            world.add(channel, answer.text)


def _api_reads(world: World, api: str, channel: str) -> None:
    with httpx.Client(base_url=api, timeout=60) as c:
        listing = c.get("/release-connector-deliveries?limit=500").text
        ids = sorted(set(re.findall(r"dlv_[0-9a-f]+", listing)))
        assert ids, listing
        paths = [
            "/release-connector-deliveries?limit=500",
            "/release-connector-deliveries?success=false&limit=500",
            "/release-connector-deliveries/dashboard",
            "/endpoint-management-publications?limit=500",
            "/endpoint-management-publications/dashboard",
            "/jobs?limit=500",
            "/jobs?state=failed&limit=500",
            "/metrics",
            "/connectors",
            "/integrations",
            *(f"/deliveries/{i}" for i in ids),
        ]
        for path in paths:
            resp = c.get(path)
            world.add(channel, f"GET {path} {resp.status_code} {dict(resp.headers)}\n{resp.text}")
        for path in (
            "/console",
            "/console/deliveries?limit=500",
            "/console/deliveries?success=false",
            "/console/publications",
            "/console/integrations",
            *(f"/console/deliveries/{i}" for i in ids),
        ):
            resp = c.get(path)
            world.add("console pages", f"GET {path} {resp.status_code}\n{resp.text}")


def _serve(
    world: World, tmp: Path, name: str, store: str, log_format: str, config: Path, env: dict[str, str]
) -> Iterator[str]:
    log = tmp / f"serve-{name}.log"
    args = [
        "serve",
        "--port",
        "0",
        "--config",
        str(config),
        "--store",
        store,
        "--exports-dir",
        str(EXPORT_DIR),
    ]
    args += ["--log-format", log_format, "--log-level", "debug"]
    proc, url = _start(args, log, env, r"listening on (http://\S+?)[ ,]")
    try:
        yield url
    finally:
        _stop(proc)
        world.add(f"server log ({log_format})", log.read_text(encoding="utf-8", errors="replace"))


def build(tmp: Path, pg_url: str | None) -> World:
    """Run everything once and collect every channel's text."""
    world = World()
    cfg_dir = tmp / "emulators"
    emu_log = tmp / "emulate.log"
    emulate, emulators = _start(
        ["emulate", "--port", "0", "--write-config", str(cfg_dir)], emu_log, {}, r"listening on (http://\S+)"
    )
    try:
        _wait_for(emu_log, r"(wrote)", emulate)
        config_path = cfg_dir / "connectors.json"
        env = read_env_file(cfg_dir / "emulators.env")
        env["WEBHOOK_URL"] = webhook_url(emulators)
        config = json.loads(config_path.read_text())["connectors"]
        assert set(PROVIDERS) <= set(config), "the emulators must configure every registered provider"
        for name, entry in config.items():  # every destination (slack-release too) holds canaries
            provider = str(entry.get("provider", name))
            found, pairs = provider_canaries(provider, entry, env)
            world.canaries.setdefault(provider, set()).update(found)
            world.pairs.setdefault(provider, set()).update(pairs)
        everything = set().union(*world.canaries.values(), *world.pairs.values())
        _run(world, tmp, config_path, env, emulators, echo_blob(everything), pg_url)
        with httpx.Client(base_url=emulators, timeout=30) as c:
            world.received = c.get("/_emulator/requests").json()
    finally:
        _stop(emulate)
    _issued_tokens(world)
    detector = Detector(set().union(*world.canaries.values()), set().union(*world.pairs.values()))
    for channel, texts in world.channels.items():
        for text in texts:
            for canary, form in detector.scan(text).items():
                world.found.setdefault(channel, {}).setdefault(canary, form)
    return world


def _run(
    world: World, tmp: Path, config: Path, env: dict[str, str], emulators: str, blob: str, pg_url: str | None
) -> None:
    stores = [("sqlite", f"sqlite:///{tmp / 'api.db'}", "text")]
    if pg_url is not None:
        stores.append(("postgresql", pg_url, "json"))
    servers = [_serve(world, tmp, name, store, fmt, config, env) for name, store, fmt in stores]
    urls = [next(s) for s in servers]
    try:
        for url, (name, _, _) in zip(urls, stores, strict=True):
            _api_round(world, url, f"API answers ({name})", echo=False)  # tokens fetched and cached
        for forms, cross in ECHO_ROUNDS:
            _echo_everywhere(emulators, forms, blob if cross else None)
            for url, (name, _, _) in zip(urls, stores, strict=True):
                _api_round(world, url, f"API answers ({name})", echo=True)
        _echo_everywhere(emulators, True, None)
        _cli_round(world, tmp, config, env)
        for url, (name, _, _) in zip(urls, stores, strict=True):
            _api_reads(world, url, f"API answers ({name})")
    finally:
        for server in servers:
            next(server, None)
    world.add("stored records (sqlite)", _sqlite_dump(tmp / "api.db"))
    if pg_url is not None:
        world.add("stored records (postgresql)", _pg_dump(pg_url))


def _cli_round(world: World, tmp: Path, config: Path, env: dict[str, str]) -> None:
    out = tmp / "evidence"
    meta = tmp / "metadata.json"
    siem_like = ",".join(p for p in PROVIDERS if not takes_publications(p))
    endpoint = ",".join(p for p in PROVIDERS if takes_publications(p))
    events = tmp / "events.jsonl"
    # an evidence event and an endpoint publication, each to every provider (an endpoint provider refuses
    # the evidence event unsent; the others take the publication as an event)
    events.write_text(json.dumps(event_for("splunk")) + "\n" + json.dumps(event_for("jamf")) + "\n")
    common = ["--config", str(config), "--retries", "0", "--output", str(out), "--provider", "all"]
    release = ["--config", str(config), "--retries", "0", "--metadata-json", str(meta)]
    _parallel(
        world,
        env,
        ["integration", "deliver", str(events), *common],
        ["integration", "deliver", str(events), *common, "--json"],
        ["release", "deliver-promotion-audit", str(PROMOTION), "--provider", siem_like, *release],
        ["release", "deliver-endpoint-export", str(EXPORT), "--provider", endpoint, *release],
    )
    _parallel(
        world,
        env,
        ["release", "connector-delivery-history", "--metadata-json", str(meta)],
        ["release", "connector-delivery-dashboard", "--metadata-json", str(meta), "--json"],
    )
    files = sorted(out.rglob("*")) if out.exists() else []
    assert files, "--output wrote no evidence file"
    for path in files:
        if path.is_file():
            world.add("--output evidence files", path.read_text(encoding="utf-8", errors="replace"))
    world.add("stored records (JSON file)", meta.read_text(encoding="utf-8", errors="replace"))


def _parallel(world: World, env: dict[str, str], *commands: list[str]) -> None:
    """Run CLI commands at once (each is a separate process, as a user would run them)."""
    procs = [
        subprocess.Popen(
            [CAVRA, *args],
            env={**os.environ, "COLUMNS": "200", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    for args, proc in zip(commands, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=120)
        world.add("CLI", f"$ cavra {' '.join(args)}\nexit {proc.returncode}\n{stdout}\n{stderr}")
        assert proc.returncode in (0, 1), (args, proc.returncode, stderr[-2000:])


def _sqlite_dump(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump())


def _pg_dump(url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    lines: list[str] = []
    try:
        with engine.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                rows = conn.execute(sa.text(f'SELECT t::text FROM "{table}" t')).scalars().all()
                lines += [f"{table}: {row}" for row in rows]
    finally:
        engine.dispose()
    assert lines, "the PostgreSQL store holds nothing"
    return "\n".join(lines)


def _issued_tokens(world: World) -> None:
    """Bearer tokens the emulated identity providers issued become canaries of the provider that used them."""
    by_emulator = {emulator: provider for provider, (_, emulator) in EMULATORS.items()}
    for request in world.received:
        provider = by_emulator.get(request["provider"])
        auth = next((v for k, v in request["headers"].items() if k.lower() == "authorization"), "")
        if provider is not None and auth.startswith("Bearer ") and provider in {"sentinel", "intune", "jamf"}:
            world.canaries[provider].add(auth.removeprefix("Bearer "))
