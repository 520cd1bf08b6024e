"""API overhead: what ``POST /integrations/{id}/deliver`` adds to the sink's own time, at 1 and 32 clients.

``cavra serve`` runs in its own process (uvicorn, one event loop, loopback only, protected mode) on a
fresh SQLite store, with the webhook connector aimed at the sink; an integration ``bench-webhook`` is
registered through the API. Per round, alternating:

* ``sink``: the client posts the webhook envelope straight to the sink (the sink's own time, as a client
  sees it), ``requests`` times, ``clients`` in flight;
* ``api``: the client posts ``{"event": …}`` to the deliver route, which answers once the delivery is
  done and its record stored.

Latencies are per request; the added latency of a round is the API's p50 (p99) minus the sink's p50
(p99) in the same round. The server's CPU time per request (all its threads, from ``/proc``) is reported
too: unlike latency it hardly moves when other work shares the machine. :class:`ApiServer` also serves the
memory section (RSS of a server process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from bench.common import Section, make_events, percentile
from bench.contestants.baselines import envelope
from bench.contestants.cavra_paths import INTEGRATION_ID, webhook_connectors
from bench.sink import free_port, wait_listening

log = logging.getLogger("bench")


def cavra_command(*args: str) -> list[str]:
    """``cavra ARGS`` with this interpreter (the console script beside it when there is one)."""
    script = Path(sys.executable).with_name("cavra")
    if script.exists():
        return [sys.executable, str(script), *args]
    return [sys.executable, "-c", "from cavra.cli.main import main; main()", *args]


class ApiServer:
    """``cavra serve`` in a subprocess on a free loopback port; ``url``, ``pid``; stopped on exit."""

    def __init__(
        self, workdir: Path, *, store_url: str, sink_url: str, connectors: dict[str, Any] | None = None
    ) -> None:
        self.workdir = workdir
        self.connectors = connectors
        self.store_url = store_url
        self.sink_url = sink_url
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ApiServer:
        config = self.workdir / "connectors.json"
        config.write_text(json.dumps(self.connectors or webhook_connectors(self.sink_url)), encoding="utf-8")
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAVRA_")}
        self._log = open(self.workdir / f"serve-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cavra_command(
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--config",
                str(config),
                "--store",
                self.store_url,
                "--log-level",
                "warning",
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
        )
        try:
            wait_listening(self.port, self.proc, timeout=60)
        except RuntimeError as exc:
            self.stop()
            said = (self.workdir / f"serve-{self.port}.log").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"cavra serve did not start: {exc}\n{said}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            self.proc = None
            self._log.close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _timed_posts(url: str, bodies: list[bytes], clients: int, check: Any, budget: float) -> list[float]:
    """POST each body (``clients`` in flight); return each request's latency in ms."""
    latencies: list[float] = []
    deadline = time.monotonic() + budget
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(bodies)

        async def lane() -> None:
            for body in queue:
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    data = await resp.read()
                    elapsed = (time.perf_counter() - t0) * 1000
                    check(resp.status, data)
                latencies.append(elapsed)
                if time.monotonic() > deadline:
                    return

        await asyncio.gather(*(lane() for _ in range(clients)))
    return latencies


def _sink_ok(status: int, _data: bytes) -> None:
    if status != 200:
        raise RuntimeError(f"sink answered HTTP {status}")


def _api_ok(status: int, data: bytes) -> None:
    if status != 200:
        raise RuntimeError(f"API answered HTTP {status}: {data[:300]!r}")
    if not json.loads(data).get("success"):
        raise RuntimeError(f"API delivery failed: {data[:300]!r}")


def cpu_ms(pid: int) -> float | None:
    """CPU time (user + system, all threads) a process has used so far, in ms; ``None`` off Linux."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def register_integration(api_url: str) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            body = {"integration_id": INTEGRATION_ID, "provider": "webhook", "status": "active"}
            async with session.post(api_url + "/integrations", json=body) as resp:
                if resp.status != 200:
                    raise RuntimeError(
                        f"cannot register the integration: HTTP {resp.status} {await resp.text()}"
                    )

    asyncio.run(go())


def run(
    section: Section,
    workdir: Path,
    *,
    sink_url: str,
    rounds: int,
    requests: dict[int, int],
    budget: float,
) -> None:
    """Measure the route against the sink for each client count in ``requests`` (clients → requests/run)."""
    store_url = f"sqlite:///{workdir / 'api.db'}"
    with ApiServer(workdir, store_url=store_url, sink_url=sink_url) as server:
        register_integration(server.url)
        deliver_url = f"{server.url}/integrations/{INTEGRATION_ID}/deliver"
        next_event = 5_000_000
        # warm up both paths (connection pools, first store writes)
        warm = make_events(20, start=next_event)
        next_event += 20
        asyncio.run(
            _timed_posts(deliver_url, [json.dumps({"event": e}).encode() for e in warm], 1, _api_ok, 30)
        )
        for clients, count in requests.items():
            for r in range(rounds):
                events = make_events(count, start=next_event)
                next_event += count
                runs = {
                    "sink": (
                        sink_url + "/hook",
                        [json.dumps(envelope(e)).encode() for e in events],
                        _sink_ok,
                    ),
                    "api": (deliver_url, [json.dumps({"event": e}).encode() for e in events], _api_ok),
                }
                order = ["sink", "api"] if r % 2 == 0 else ["api", "sink"]
                stats: dict[str, dict[int, float]] = {}
                for name in order:
                    url, bodies, check = runs[name]
                    cpu_before = cpu_ms(server.pid)
                    lat = asyncio.run(_timed_posts(url, bodies, clients, check, budget))
                    cpu_after = cpu_ms(server.pid)
                    if name == "api" and cpu_before is not None and cpu_after is not None and lat:
                        section.figure(
                            f"api_cpu_c{clients}",
                            f"server CPU per request, {clients} client(s)",
                            "ms",
                            higher_is_better=False,
                        ).add((cpu_after - cpu_before) / len(lat))
                    stats[name] = {q: percentile(lat, q) for q in (50, 99)}
                    for q in (50, 99):
                        who = "deliver route" if name == "api" else "sink alone"
                        section.figure(
                            f"{name}_p{q}_c{clients}",
                            f"{who}, p{q}, {clients} client(s)",
                            "ms",
                            higher_is_better=False,
                        ).add(stats[name][q])
                for q in (50, 99):
                    section.figure(
                        f"added_p{q}_c{clients}",
                        f"added by the API over the sink, p{q}, {clients} client(s)",
                        "ms",
                        higher_is_better=False,
                    ).add(stats["api"][q] - stats["sink"][q])
                log.info(
                    "  round %d, %d client(s): api p50 %.2f ms, sink p50 %.2f ms",
                    r + 1,
                    clients,
                    stats["api"][50],
                    stats["sink"][50],
                )
