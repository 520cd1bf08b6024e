"""Compose the provider emulators into one aiohttp application and serve it on loopback.

Every emulator module (named by a connector's ``ProviderSpec.emulator`` or ``needs``) exposes:

* ``Settings``: a dataclass of the emulator's demo credentials and switches, all with defaults;
* ``create_app(hub, settings) -> web.Application``: the provider's routes, mounted at ``/<mount>``;
* ``demo_config(base_url, settings) -> (connector_entry, env)``: the connector config entry (using the
  ``*_env`` keys) and the environment variables that point a connector at this emulator.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from aiohttp import web

from cavra.emulators.framework import HUB_KEY, EmulatorHub, control_routes, fault_middleware


class _Emulators(Mapping[str, str]):
    """mount prefix -> module: every registered provider's emulator and the emulators it needs (token
    issuers first), as each connector's ``ProviderSpec`` names them (dotted strings: this reads the
    registry's table, it imports no connector code into an emulator). Order is ``cavra emulate``'s."""

    def _table(self) -> dict[str, str]:
        from cavra.connectors.registry import emulator_modules

        return emulator_modules()

    def __getitem__(self, name: str) -> str:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


EMULATORS: Mapping[str, str] = _Emulators()


def _module(name: str, table: Mapping[str, str]) -> ModuleType:
    return importlib.import_module(table[name])


def build_app(
    providers: Iterable[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[web.Application, EmulatorHub, dict[str, Any]]:
    """The composed application, its hub, and each mounted emulator's settings object."""
    hub = EmulatorHub()
    app = web.Application(middlewares=[fault_middleware], client_max_size=64 * 1024 * 1024)
    app[HUB_KEY] = hub
    control_routes(app)
    table = dict(EMULATORS)
    names = list(table) if providers is None else list(providers)
    hub.serving = names
    settings_by_name: dict[str, Any] = {}
    for name in names:
        mod = _module(name, table)
        settings = mod.Settings(**dict((overrides or {}).get(name, {})))
        settings_by_name[name] = settings
        app.add_subapp(f"/{name}", mod.create_app(hub, settings))
    return app, hub, settings_by_name


def demo_environment(
    base_url: str, settings_by_name: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The connector config and environment that point every connector at these emulators."""
    connectors: dict[str, Any] = {}
    env: dict[str, str] = {}
    table = dict(EMULATORS)
    for name, settings in settings_by_name.items():
        mod = _module(name, table)
        if not hasattr(mod, "demo_config"):
            continue
        entry, entry_env = mod.demo_config(base_url, settings)
        if entry is not None:
            provider = entry.pop("provider", name)
            connectors[provider] = entry
        env.update(entry_env)
        if hasattr(mod, "demo_destinations"):  # more destinations of the provider (e.g. slack-release)
            more, more_env = mod.demo_destinations(base_url, settings)
            connectors.update(more)
            env.update(more_env)
    return {"connectors": connectors, "routes": demo_routes(connectors)}, env


#: the demo's routes (docs/routing.md): rollbacks to the release channel and a ticket, all release events
#: and evidence to the SIEM, high-severity sessions also to the SOC's Teams channel and webhook
DEMO_ROUTES: tuple[dict[str, Any], ...] = (
    {
        "name": "release-rollbacks",
        "event_type": "cavra.release.rollback_execution",
        "to": ["slack", "jira"],
        "continue": True,
    },
    {"name": "release-audit", "event_type": "cavra.release.*", "to": ["splunk"]},
    {
        "name": "soc-high",
        "event_type": "cavra.evidence_bundle",
        "min_severity": "high",
        "to": ["teams", "splunk", "webhook"],
    },
    {"name": "evidence", "event_type": "cavra.evidence_bundle", "to": ["splunk"]},
    {"default": True, "name": "everything-else", "to": ["webhook"]},
)


def demo_routes(connectors: Mapping[str, Any]) -> list[dict[str, Any]]:
    """:data:`DEMO_ROUTES` naming only the destinations ``connectors`` defines (routes left empty dropped)."""
    out = []
    for route in DEMO_ROUTES:
        to = [d for d in route["to"] if d in connectors]
        if to:
            out.append({**route, "to": to})
    return out


def write_demo_config(
    directory: Path, base_url: str, settings_by_name: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write ``DIR/connectors.json`` and ``DIR/emulators.env`` (``export NAME=value`` lines), atomically."""
    config, env = demo_environment(base_url, settings_by_name)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "connectors.json"
    env_path = directory / "emulators.env"
    atomic_write(config_path, json.dumps(config, indent=2) + "\n")
    lines = [f"export {k}={shell_quote(v)}" for k, v in sorted(env.items())]
    atomic_write(env_path, "\n".join(lines) + "\n", mode=0o600)
    return config_path, env_path


def shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class EmulatorServer:
    """Serve the emulators on a loopback port (``port=0`` picks a free one). An async context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        providers: Iterable[str] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.app, self.hub, self.settings = build_app(providers, overrides)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        # auto_decompress=False: request bodies reach the middleware and the emulators as sent on the wire, so
        # a Content-Encoding body is recorded compressed and each emulator decodes (and size-checks) it itself
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, auto_decompress=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def demo_environment(self) -> tuple[dict[str, Any], dict[str, str]]:
        return demo_environment(self.base_url, self.settings)


def emulators_answer(url: str, seconds: float = 8.0) -> bool:
    """Whether the emulators answer at ``url`` (polled for a few seconds: one started just before)."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    probe = f"{url.rstrip('/')}/_emulator/requests?provider=-"
    while True:
        try:
            with urllib.request.urlopen(probe, timeout=1) as resp:  # noqa: S310 - an http(s) URL checked above
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
