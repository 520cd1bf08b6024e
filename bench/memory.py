"""Memory: peak RSS of a worker draining N jobs, and of the API answering history at a million records.

* Worker: N jobs (webhook deliveries to the sink) are enqueued into a fresh SQLite store, then
  ``cavra worker --once --concurrency 32`` runs in its own process until none is left. Its RSS (VmRSS) and
  peak (VmHWM) are read from ``/proc`` every second together with the number of jobs done, so the
  growth per 10,000 jobs shows whether memory is flat in the number of jobs.
* API: ``cavra serve`` on the store-at-scale SQLite database answers history pages (several providers,
  first pages and pages by cursor) and dashboards; its peak RSS is read at the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.api_overhead import ApiServer, cavra_command
from bench.common import Section, make_events, rss_kib
from bench.contestants.cavra_paths import INTEGRATION_ID, webhook_connectors

log = logging.getLogger("bench")
#: the share of the jobs done that counts as warm-up for the growth fit
WARM_UP = 0.25


def _enqueue(store: Any, count: int, batch: int = 1000) -> None:
    from cavra.delivery.queue import delivery_job
    from cavra.store import INTEGRATION_DELIVERY

    for start in range(0, count, batch):
        jobs = [
            delivery_job(
                event,
                "webhook",
                kind=INTEGRATION_DELIVERY,
                subject_kind="integration",
                subject_id=INTEGRATION_ID,
                integration_id=INTEGRATION_ID,
            )
            for event in make_events(min(batch, count - start), start=10_000_000 + start)
        ]
        store.enqueue_jobs(jobs)


def _done(store: Any) -> int:
    stats = store.queue_stats()
    return int(sum(n for state, n in stats.by_state.items() if state in ("succeeded", "failed", "dead")))


def worker_rss(section: Section, workdir: Path, *, sink_url: str, jobs: int, budget: float) -> None:
    """Drain ``jobs`` jobs with ``cavra worker`` in a subprocess; record its peak RSS and growth."""
    from cavra.store import open_store

    db = workdir / "worker-rss.db"
    store = open_store(f"sqlite:///{db}")
    t0 = time.perf_counter()
    _enqueue(store, jobs)
    section.figure("enqueue_rate", "enqueue (delivery_job + enqueue_jobs, 1000 per call)", "jobs/s").add(
        jobs / (time.perf_counter() - t0)
    )
    config = workdir / "worker-connectors.json"
    config.write_text(json.dumps(webhook_connectors(sink_url)), encoding="utf-8")
    args = ["worker", "--store", f"sqlite:///{db}", "--config", str(config), "--concurrency", "32"]
    args += ["--once", "--poll-interval", "0.05", "--processes", "1"]  # the RSS of one worker process
    log_path = workdir / "worker-rss.log"
    samples: list[tuple[int, float, float]] = []  # (jobs done, rss MiB, peak MiB)
    started = time.monotonic()
    stopped_early = False
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cavra_command(*args), stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            while proc.poll() is None:
                time.sleep(1.0 if samples else 0.05)  # the first sample at once: a small run is quick
                rss, hwm = rss_kib(proc.pid)
                if hwm:
                    samples.append((_done(store), rss / 1024, hwm / 1024))
                if time.monotonic() - started > budget and not stopped_early:
                    stopped_early = True
                    proc.terminate()  # graceful: running jobs finish, the rest are given back
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    seconds = time.monotonic() - started
    done = _done(store)
    store.close()
    if proc.returncode not in (0, -15) and not stopped_early:
        said = log_path.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"cavra worker exited with {proc.returncode}: {said}")
    if not samples:  # it finished between two reads (a tiny run): nothing to report, not a failure
        for key, label in (
            ("worker_peak_rss", "worker peak RSS"),
            ("worker_rss_growth", "worker RSS growth"),
        ):
            section.figure(
                key, label, "MiB", higher_is_better=False
            ).skipped = f"the worker drained {done:,} jobs before its memory could be read"
        return
    peak = max(s[2] for s in samples)
    section.figure(
        "worker_peak_rss", f"worker peak RSS, draining {jobs:,} jobs", "MiB", higher_is_better=False
    ).add(peak)
    section.figure("worker_drain_rate", "worker drain rate (cavra worker, 32 in flight)", "jobs/s").add(
        done / seconds
    )
    growth = _growth_per_10k(samples)
    fig = section.figure(
        "worker_rss_growth",
        "worker RSS growth per 10,000 jobs (after the first quarter)",
        "MiB",
        higher_is_better=False,
    )
    if growth is not None:
        fig.add(growth)
        fig.note = f"least squares over {len(samples)} samples up to {samples[-1][0]:,} jobs done"
    else:
        fig.skipped = "too few samples to fit a slope"
    section.series["worker_rss"] = [[n, round(rss, 1), round(peak, 1)] for n, rss, peak in samples]
    marks = _marks(samples, samples[-1][0])
    section.notes.append(
        "worker RSS by jobs done: " + ", ".join(f"{n:,} → {mib:.0f} MiB" for n, mib in marks)
    )
    if stopped_early or done < jobs:
        section.notes.append(
            f"the worker was stopped at the {budget:g} s budget after {done:,} of {jobs:,} jobs "
            f"({done / seconds:.0f} jobs/s); its peak is for those jobs"
        )


def _growth_per_10k(samples: list[tuple[int, float, float]]) -> float | None:
    """Least-squares slope of RSS over jobs done, past the first quarter (warm-up: connection pools and
    SQLite page caches fill), per 10,000 jobs."""
    if not samples:
        return None
    last = samples[-1][0]
    points = [(n, rss) for n, rss, _ in samples if n >= last * WARM_UP]
    if len(points) < 3 or points[-1][0] == points[0][0]:
        return None
    mx = sum(n for n, _ in points) / len(points)
    my = sum(r for _, r in points) / len(points)
    num = sum((n - mx) * (r - my) for n, r in points)
    den = sum((n - mx) ** 2 for n, _ in points)
    return num / den * 10_000 if den else None


def _marks(samples: list[tuple[int, float, float]], jobs: int) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    for frac in (0.1, 0.25, 0.5, 0.75, 1.0):
        want = jobs * frac
        hit = next(((n, rss) for n, rss, _ in samples if n >= want), None)
        if hit is not None and (not out or hit[0] != out[-1][0]):
            out.append(hit)
    return out


def api_rss(section: Section, workdir: Path, *, db: Path, sink_url: str, pages: int, dashboards: int) -> None:
    """Peak RSS of ``cavra serve`` on ``db`` after ``pages`` history pages and ``dashboards`` dashboards."""
    with ApiServer(workdir, store_url=f"sqlite:///{db}", sink_url=sink_url) as server:
        idle = rss_kib(server.pid)[0] / 1024
        seconds = asyncio.run(_browse(server.url, pages, dashboards))
        _rss, hwm = rss_kib(server.pid)
    section.figure(
        "api_idle_rss", "API RSS after start-up (store at scale)", "MiB", higher_is_better=False
    ).add(idle)
    section.figure(
        "api_peak_rss",
        "API peak RSS answering history and dashboards (store at scale)",
        "MiB",
        higher_is_better=False,
    ).add(hwm / 1024)
    section.notes.append(f"API: {pages} history pages and {dashboards} dashboards in {seconds:.1f} s")


async def _browse(url: str, pages: int, dashboards: int) -> float:
    providers = ["splunk", "webhook", "datadog", "slack", "jira"]
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        cursor: str | None = None
        for n in range(pages):
            params = {"provider": providers[n % len(providers)], "success": "true", "limit": "50"}
            if cursor and n % 5:
                params["cursor"] = cursor
            async with session.get(url + "/release-connector-deliveries", params=params) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"history answered HTTP {resp.status}: {body}")
                cursor = body.get("next_cursor")
        for _ in range(dashboards):
            async with session.get(url + "/release-connector-deliveries/dashboard") as resp:
                if resp.status != 200:
                    raise RuntimeError(f"dashboard answered HTTP {resp.status}")
                await resp.read()
    return time.perf_counter() - t0
