"""CPU per durable event, and ``cavra worker --processes 2`` against ``--processes 1``.

Each run: a fresh store (SQLite file, or a fresh PostgreSQL schema); ``cavra worker --processes N
--concurrency 32`` started in its own process on it, aimed at the sink; once every worker process has
installed its signal handlers (it is past start-up: ``SigCgt`` in ``/proc/<pid>/status``) the window
opens: the bench enqueues the run's events as jobs (``delivery_job`` + ``enqueue_jobs``, 500 per call, as
the API writes the outbox), and the window closes when the store counts every job succeeded. The workers
are then stopped with SIGTERM and must exit 0.

CPU is read from ``/proc/<pid>/stat`` (utime + stime: every thread of the process) at both ends of the
window, for the supervisor and every worker process, plus, on PostgreSQL, every server backend of the
run's connections (found in ``pg_stat_activity`` by the run's own ``application_name``), plus the CPU of
the bench thread that enqueued (``time.thread_time``). The bare aiohttp client (32 in flight, in the bench
process) is measured the same way, ``/proc/self/stat`` around its run. The sink's CPU counts for nobody.

Honesty: every job must have succeeded (the worker counts only a 2xx as delivered), ran once
(``attempts == 1``: with two processes, a double claim shows here), and the store holds one delivery
record per event.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.api_overhead import cavra_command
from bench.common import Section, make_events
from bench.contestants.baselines import AiohttpCeiling
from bench.contestants.cavra_paths import INTEGRATION_ID, webhook_connectors
from bench.pg import PgSchema
from cavra.cli.supervisor import _die_with_parent

log = logging.getLogger("bench")
TICK = os.sysconf("SC_CLK_TCK")
ENQUEUE_BATCH = 500
#: (n processes, backend) in the order of the first round; later rounds rotate it
RUNS = (("aiohttp", 0), ("sqlite", 1), ("sqlite", 2), ("postgresql", 1), ("postgresql", 2))


def cpu_seconds(pid: int | str) -> float:
    """utime + stime of every thread of process ``pid`` (0.0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5), after "pid (comm)"


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def handles_sigterm(pid: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


def pg_backends(pg: PgSchema, application: str) -> list[int]:
    import psycopg

    with psycopg.connect(host=pg.host, port=pg.port, dbname=pg.db, user=pg.user, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,))
        return [int(r[0]) for r in rows.fetchall()]


class Run:
    """One ``cavra worker --processes N`` run on a fresh store (see the module docstring)."""

    def __init__(
        self,
        workdir: Path,
        sink_url: str,
        backend: str,
        processes: int,
        pg_error: str | None,
        loop: str | None = None,
    ):
        self.workdir, self.sink_url, self.backend, self.n = workdir, sink_url, backend, processes
        self.env = {**os.environ, "CAVRA_WORKER_LOOP": loop} if loop else None
        self.pg_error = pg_error
        self.pg: PgSchema | None = None
        self.application = f"cavra_bench_{uuid.uuid4().hex[:8]}"

    def store_url(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.workdir / f'procs-{uuid.uuid4().hex[:8]}.db'}"
        self.pg = PgSchema("cavra_bench_procs").start()
        if self.pg.error:
            raise RuntimeError(self.pg.error)
        return f"{self.pg.url}&application_name={self.application}"

    def pids(self, proc: subprocess.Popen[bytes]) -> list[int]:
        return [proc.pid, *children_of(proc.pid)] if self.n > 1 else [proc.pid]

    def execute(self, events: list[dict[str, Any]], budget: float) -> tuple[int, float, float]:
        """(events delivered, seconds, CPU seconds) of the run; raises when a check fails."""
        from cavra.store import open_store

        url = self.store_url()
        try:
            with open_store(url) as store:  # the schema exists before the workers start
                return self._execute(url, store, events, budget)
        finally:
            if self.pg is not None:
                self.pg.drop()
            for path in self.workdir.glob("procs-*.db*"):
                path.unlink(missing_ok=True)

    def _start(self, url: str) -> subprocess.Popen[bytes]:
        config = self.workdir / "procs-connectors.json"
        config.write_text(json.dumps(webhook_connectors(self.sink_url)), encoding="utf-8")
        args = ["worker", "--store", url, "--config", str(config), "--concurrency", "32"]
        args += ["--poll-interval", "0.05", "--processes", str(self.n)]
        log = open(self.workdir / "procs-worker.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cavra_command(*args),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.env,
            preexec_fn=_die_with_parent,  # a bench stopped outright takes its workers along
        )
        log.close()
        deadline = time.monotonic() + 120
        while True:
            workers = children_of(proc.pid) if self.n > 1 else [proc.pid]
            if len(workers) == self.n and all(handles_sigterm(p) for p in workers):
                return proc
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"cavra worker --processes {self.n} did not start: {self._said()}")
            time.sleep(0.05)

    def _said(self) -> str:
        return (self.workdir / "procs-worker.log").read_text(errors="replace")[-1500:]

    def _cpu(self, pids: list[int], backends: list[int]) -> dict[int, float]:
        return {p: cpu_seconds(p) for p in [*pids, *backends]}

    def _execute(
        self, url: str, store: Any, events: list[dict[str, Any]], budget: float
    ) -> tuple[int, float, float]:
        from cavra.delivery.queue import delivery_job
        from cavra.store import INTEGRATION_DELIVERY, DeliveryFilter
        from cavra.store.jobs import JobFilter

        proc = self._start(url)
        try:
            pids = self.pids(proc)
            backends: Callable[[], list[int]] = lambda: (  # noqa: E731
                pg_backends(self.pg, self.application) if self.pg is not None else []
            )
            before = self._cpu(pids, backends())
            t0 = time.perf_counter()
            enqueue_cpu = 0.0
            for start in range(0, len(events), ENQUEUE_BATCH):
                c0 = time.thread_time()
                jobs = [
                    delivery_job(
                        e,
                        "webhook",
                        kind=INTEGRATION_DELIVERY,
                        subject_kind="integration",
                        subject_id=INTEGRATION_ID,
                        integration_id=INTEGRATION_ID,
                    )
                    for e in events[start : start + ENQUEUE_BATCH]
                ]
                store.enqueue_jobs(jobs)
                enqueue_cpu += time.thread_time() - c0
            end = time.monotonic() + budget
            while store.queue_stats().count("succeeded") < len(events) and time.monotonic() < end:
                if proc.poll() is not None:
                    raise RuntimeError(f"cavra worker exited with {proc.returncode}: {self._said()}")
                time.sleep(0.02)
            seconds = time.perf_counter() - t0
            after = self._cpu(pids, backends())
            cpu = enqueue_cpu + sum(v - before.get(p, 0.0) for p, v in after.items())
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        if proc.returncode != 0:
            raise RuntimeError(f"cavra worker exited with {proc.returncode}: {self._said()}")
        jobs_now = store.list_jobs(JobFilter(), limit=len(events) + 10)
        done = [j for j in jobs_now if j.state == "succeeded"]
        stored = store.count_provider_deliveries(
            DeliveryFilter(metadata_kinds=(INTEGRATION_DELIVERY,), integration_id=INTEGRATION_ID)
        )
        if len(done) != len(jobs_now) and len(jobs_now) == len(events):
            raise RuntimeError(f"{len(jobs_now) - len(done)} jobs did not succeed")
        if any(j.attempts != 1 for j in jobs_now):
            raise RuntimeError("a job ran twice (double claim or an expired lease)")
        if stored != len(done):
            raise RuntimeError(f"{stored} records stored for {len(done)} delivered jobs")
        return len(done), seconds, cpu


def aiohttp_run(sink_url: str, events: list[dict[str, Any]], budget: float) -> tuple[int, float, float]:
    c = AiohttpCeiling(sink_url)
    c.deadline = time.monotonic() + budget
    before = cpu_seconds("self")
    done, seconds = c.run(events)  # raises unless every answer was a 200
    return done, seconds, cpu_seconds("self") - before


def define(section: Section) -> None:
    cpu = "µs CPU/event"
    section.figure(
        "cpu_aiohttp", "bare aiohttp client, 32 in flight: CPU per request", cpu, higher_is_better=False
    )
    for backend in ("sqlite", "postgresql"):
        for n in (1, 2):
            section.figure(f"procs{n}_{backend}", f"cavra worker --processes {n} ({backend})", "events/s")
            section.figure(
                f"cpu{n}_{backend}",
                f"CPU per durable event, --processes {n} ({backend}"
                + (", with the server's backends)" if backend == "postgresql" else ")"),
                cpu,
                higher_is_better=False,
            )
        section.ratio(
            f"procs_2_vs_1_{backend}",
            f"--processes 2 / --processes 1 ({backend})",
            f"procs2_{backend}",
            f"procs1_{backend}",
        )
        section.ratio(
            f"cpu_vs_aiohttp_{backend}",
            f"CPU per durable event ({backend}, 1 process) / aiohttp's CPU per request",
            f"cpu1_{backend}",
            "cpu_aiohttp",
        )


def run(
    section: Section,
    workdir: Path,
    *,
    sink_url: str,
    events: int,
    rounds: int,
    budget: float,
    pg_error: str | None,
) -> None:
    """``rounds`` rounds; each runs aiohttp and, per backend, 1 and 2 processes (rotating order)."""
    define(section)
    if pg_error:
        for key in ("procs1_postgresql", "procs2_postgresql", "cpu1_postgresql", "cpu2_postgresql"):
            section.figures[key].skipped = pg_error
    next_event = 50_000_000
    for r in range(rounds):
        order = list(RUNS[r % len(RUNS) :]) + list(RUNS[: r % len(RUNS)])
        values: dict[str, float] = {}
        for backend, n in order:
            if backend == "postgresql" and pg_error:
                continue
            batch = make_events(events, start=next_event)
            next_event += events
            key = "aiohttp" if backend == "aiohttp" else f"{backend}{n}"
            try:
                if backend == "aiohttp":
                    done, seconds, cpu = aiohttp_run(sink_url, batch, budget)
                else:
                    done, seconds, cpu = Run(workdir, sink_url, backend, n, pg_error).execute(batch, budget)
            except Exception as exc:
                fig = section.figures["cpu_aiohttp" if backend == "aiohttp" else f"procs{n}_{backend}"]
                fig.skipped = f"failed in round {r + 1}: {type(exc).__name__}: {exc}"[:500]
                continue
            measured = (
                {"cpu_aiohttp": cpu / done * 1e6}
                if backend == "aiohttp"
                else {f"procs{n}_{backend}": done / seconds, f"cpu{n}_{backend}": cpu / done * 1e6}
            )
            for k, v in measured.items():
                section.figures[k].add(v)
            values.update(measured)
            log.info(
                "  round %d %-12s %s", r + 1, key, ", ".join(f"{k} {v:,.0f}" for k, v in measured.items())
            )
        section.ratios_from_round(values)


def compare_loops(events: int, rounds: int) -> None:
    """``python -m bench.processes EVENTS ROUNDS``: ``cavra worker --processes 1`` on SQLite and PostgreSQL,
    on the standard loop and on uvloop (``CAVRA_WORKER_LOOP=uvloop``), alternating; prints events/s, CPU
    per event and the per-round ratios."""
    import statistics
    import tempfile

    from bench.sink import Sink

    with Sink() as sink, tempfile.TemporaryDirectory(prefix="cavra-bench-loops-") as tmp:
        pg = PgSchema("cavra_bench_probe").start()
        pg.drop()
        backends = ["sqlite"] + ([] if pg.error else ["postgresql"])
        ratios: dict[str, list[tuple[float, float]]] = {b: [] for b in backends}
        start = 70_000_000
        for r in range(rounds):
            for backend in backends:
                got: dict[str, tuple[float, float]] = {}
                for loop in ("asyncio", "uvloop") if r % 2 == 0 else ("uvloop", "asyncio"):
                    batch = make_events(events, start=start)
                    start += events
                    done, seconds, cpu = Run(Path(tmp), sink.url, backend, 1, pg.error, loop).execute(
                        batch, 300
                    )
                    got[loop] = (done / seconds, cpu / done * 1e6)
                    rate, per = got[loop]
                    print(f"round {r + 1} {backend:10} {loop:8} {rate:7.0f} events/s {per:6.0f} µs CPU/event")
                ratios[backend].append(
                    (got["uvloop"][0] / got["asyncio"][0], got["uvloop"][1] / got["asyncio"][1])
                )
        for backend, values in ratios.items():
            speed = [v[0] for v in values]
            cpus = [v[1] for v in values]
            print(
                f"{backend}: uvloop / asyncio throughput median {statistics.median(speed):.2f}x "
                f"({min(speed):.2f}-{max(speed):.2f}), CPU per event median {statistics.median(cpus):.2f}x "
                f"({min(cpus):.2f}-{max(cpus):.2f})"
            )


if __name__ == "__main__":
    import sys

    compare_loops(
        int(sys.argv[1]) if len(sys.argv) > 1 else 3000, int(sys.argv[2]) if len(sys.argv) > 2 else 4
    )
