"""``python -m bench.run [--quick]``: run the benchmarks, write the results, print the table.

Full (``make bench``): every section at the issue's sizes; writes ``bench/results/latest.json`` and the
generated block of ``docs/performance.md``. Quick (``make bench-quick``): every contestant with tiny
sizes, writes ``bench/results/quick.json`` only, asserts no timing, and exits non-zero only when the
harness itself is broken (a section raised, or a contestant failed rather than being skipped).

Sections: ``throughput`` (single-event delivery), ``siem`` (batching), ``store`` (store at scale), ``api``
(API overhead), ``memory`` (RSS), ``routing``, ``processes`` (CPU per durable event; ``cavra worker
--processes 2`` against 1). ``--sections`` runs a subset.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import api_overhead, memory, processes, report, routing, store_scale
from bench.common import REPO, Section, machine_facts, now_iso, package_versions
from bench.contestants import Contestant, alternate
from bench.contestants.baselines import AiohttpCeiling, AppriseJson, RequestsPost, RequestsSession
from bench.contestants.cavra_paths import EngineOnly, IntegrationDeliver, IntegrationFile
from bench.contestants.siem import Batched, EngineSingle
from bench.contestants.worker_path import StoreFactory, WorkerPath
from bench.pg import PgSchema
from bench.sink import Sink
from bench.targets import TARGETS, evaluate

log = logging.getLogger("bench")
RESULTS = REPO / "bench" / "results"
PAGE = REPO / "docs" / "performance.md"
SECTIONS = ("throughput", "siem", "store", "api", "memory", "routing", "processes")

FULL: dict[str, Any] = {
    "throughput": {"events": 20_000, "rounds": 5, "budget": 6.0},
    "siem": {"events": 6_000, "rounds": 5, "batch": 100, "budget": 20.0},
    "store": {
        "records": 1_000_000,
        "json_sizes": (10_000, 100_000),
        "rounds": 5,
        "samples": {"history_first": 12, "history_deep": 12, "dashboard": 2},
        "json_samples": {"history_first": 10, "history_deep": 10, "dashboard": 2},
        "write_per_round": 400,
        "json_write_per_round": 4,
        "cache": Path.home() / ".cache" / "cavra-bench",
    },
    "api": {"rounds": 3, "requests": {1: 300, 32: 1500}, "budget": 30.0},
    "memory": {"jobs": 100_000, "budget": 90.0, "pages": 200, "dashboards": 3},
    "routing": {"events": 20_000, "rounds": 3, "requests": 200},
    "processes": {"events": 6_000, "rounds": 3, "budget": 90.0},
}
QUICK: dict[str, Any] = {
    "throughput": {"events": 120, "rounds": 2, "budget": 20.0},
    "siem": {"events": 200, "rounds": 2, "batch": 50, "budget": 20.0},
    "store": {
        "records": 3_000,
        "json_sizes": (200, 1_000),
        "rounds": 2,
        "samples": {"history_first": 3, "history_deep": 3, "dashboard": 1},
        "json_samples": {"history_first": 2, "history_deep": 2, "dashboard": 1},
        "write_per_round": 20,
        "json_write_per_round": 3,
        "cache": None,
    },
    "api": {"rounds": 2, "requests": {1: 20, 32: 64}, "budget": 20.0},
    "memory": {"jobs": 500, "budget": 60.0, "pages": 10, "dashboards": 1},
    "routing": {"events": 300, "rounds": 1, "requests": 10},
    "processes": {"events": 100, "rounds": 1, "budget": 60.0},
}


def ensure_packages(names: dict[str, str]) -> dict[str, str]:
    """Import each module, pip-installing its package into this interpreter when missing; return the
    modules that are still missing, with why."""
    missing: dict[str, str] = {}
    for module, package in names.items():
        try:
            importlib.import_module(module)
            continue
        except ImportError:
            pass
        log.info("installing %s into %s", package, sys.prefix)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", package],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            importlib.invalidate_caches()
            importlib.import_module(module)
        except ImportError:
            missing[module] = (
                f"{package} is not installed and pip could not install it ({done.stderr.strip()[-200:]})"
            )
    return missing


def pg_factory() -> StoreFactory:
    """A fresh PostgreSQL schema per run (dropped after it)."""

    def make() -> tuple[str, Callable[[], None]]:
        pg = PgSchema("cavra_bench_worker").start()
        if pg.error:
            raise RuntimeError(pg.error)
        return pg.url, pg.drop

    return make


def throughput(
    section: Section, cfg: dict[str, Any], sink: Sink, pg_error: str | None, missing: dict[str, str]
) -> None:
    contestants: list[Contestant] = [
        WorkerPath(sink.url, backend="sqlite", stores=None),
        WorkerPath(sink.url, backend="postgresql", stores=None if pg_error else pg_factory(), skip=pg_error),
        IntegrationDeliver(sink.url, concurrency=32),
        IntegrationFile(sink.url),
        EngineOnly(sink.url),
        RequestsPost(sink.url),
        RequestsSession(sink.url),
        AppriseJson(sink.url),
        AiohttpCeiling(sink.url),
    ]
    for c in contestants:
        if c.key.startswith("requests") and "requests" in missing:
            c.skipped = missing["requests"]
        if c.key == "apprise_json" and "apprise" in missing:
            c.skipped = missing["apprise"]
    section.ratio(
        "worker_vs_ceiling",
        "worker path (SQLite) / bare aiohttp ceiling",
        "cavra_worker_sqlite",
        "aiohttp_32",
    )
    section.ratio(
        "worker_vs_requests",
        "worker path (SQLite) / requests.post loop",
        "cavra_worker_sqlite",
        "requests_post",
    )
    section.ratio(
        "worker_vs_apprise", "worker path (SQLite) / Apprise", "cavra_worker_sqlite", "apprise_json"
    )
    section.ratio(
        "worker_pg_vs_ceiling", "worker path (PostgreSQL) / ceiling", "cavra_worker_postgresql", "aiohttp_32"
    )
    section.ratio(
        "worker_pg_vs_requests",
        "worker path (PostgreSQL) / requests.post loop",
        "cavra_worker_postgresql",
        "requests_post",
    )
    section.ratio(
        "integration_vs_requests",
        "integration deliver / requests.post loop",
        "cavra_integration_32",
        "requests_post",
    )
    section.ratio(
        "integration_file_vs_requests",
        "integration deliver EVENTS.jsonl (batch input) / requests.post loop",
        "cavra_integration_file",
        "requests_post",
    )
    section.ratio(
        "integration_file_vs_loop",
        "integration deliver EVENTS.jsonl / the deliver_integration loop (32 in flight)",
        "cavra_integration_file",
        "cavra_integration_32",
    )
    section.ratio("engine_vs_ceiling", "engine only / bare aiohttp ceiling", "cavra_engine_32", "aiohttp_32")
    section.ratio(
        "worker_vs_engine",
        "worker path (SQLite) / engine only (the cost of the outbox and the records)",
        "cavra_worker_sqlite",
        "cavra_engine_32",
    )
    section.ratio(
        "session_vs_requests", "requests.Session / requests.post loop", "requests_session", "requests_post"
    )
    alternate(
        section, contestants, events_total=cfg["events"], rounds=cfg["rounds"], run_budget=cfg["budget"]
    )


def siem(section: Section, cfg: dict[str, Any], sink: Sink, missing: dict[str, str]) -> None:
    contestants: list[Contestant] = [
        EngineSingle("splunk", sink.url),
        Batched("splunk", sink.url, cfg["batch"]),
        EngineSingle("datadog", sink.url),
        Batched("datadog", sink.url, cfg["batch"]),
        RequestsPost(sink.url),
    ]
    if "requests" in missing:
        contestants[-1].skipped = missing["requests"]
    section.ratio("hec_batch_vs_requests", "HEC batched / requests.post loop", "hec_batch", "requests_post")
    section.ratio(
        "datadog_batch_vs_requests", "Datadog batched / requests.post loop", "datadog_batch", "requests_post"
    )
    section.ratio("hec_batch_vs_single", "HEC batched / HEC one per request", "hec_batch", "hec_single")
    section.ratio(
        "datadog_batch_vs_single", "Datadog batched / one per request", "datadog_batch", "datadog_single"
    )
    section.ratio(
        "hec_single_vs_requests",
        "HEC one per request (engine) / requests.post",
        "hec_single",
        "requests_post",
    )
    alternate(
        section,
        contestants,
        events_total=cfg["events"],
        rounds=cfg["rounds"],
        run_budget=cfg["budget"],
        first_event=1_000_000,
    )


def make_sections() -> dict[str, Section]:
    return {
        "throughput": Section(
            "throughput",
            "1. Single-event delivery throughput (webhook events, nginx sink)",
            "Each contestant delivers its share of the events per round; rounds alternate the contestants "
            "(rotating order) in one process against the same sink. CAVRA's contestants persist a delivery "
            "record per event; the baselines persist nothing.",
        ),
        "siem": Section(
            "siem",
            "2. SIEM batching throughput (HEC and Datadog formats)",
            "Batching off: CAVRA's engine, one request per event. Batching on: CAVRA's batch path "
            "(deliver_batch: many events per request within the provider's limits, one result per event). "
            "No persistence on either side.",
        ),
        "store": Section(
            "store",
            "3. Store at scale",
            "History (release connector deliveries, provider=splunk, success=true, page of 50) and dashboard "
            "latency; each run's p50 and p95 is one value. SQLite and PostgreSQL hold the same chain.",
        ),
        "api": Section(
            "api",
            "4. API overhead (POST /integrations/{id}/deliver)",
            "cavra serve in its own process on SQLite; added = the route's latency minus the sink's own, "
            "same round, same client.",
        ),
        "memory": Section(
            "memory",
            "5. Memory",
            "Peak RSS (VmHWM) of `cavra worker` draining jobs, and of `cavra serve` answering history and "
            "dashboards on the store-at-scale database.",
        ),
        "routing": Section(
            "routing",
            "6. Routing (100 routes) and POST /events fan-out",
            "Routing: RouteTable.route per event, timed alone, on 100 compiled routes. Fan-out: cavra serve "
            "on SQLite, POST /events with wait (one route, 3 destinations: webhook, HEC, Datadog, all at "
            "the sink) against POST /integrations/{id}/deliver (1 destination), alternating, one client. "
            "Templates: one Slack prepare timed alone, without templates, with the shipped defaults and "
            "with one custom text template, on the sample events.",
        ),
        "processes": Section(
            "processes",
            "7. CPU per durable event, and every core (cavra worker --processes)",
            "cavra worker --processes N (32 in flight each) in its own process on a fresh store per run; the "
            "bench enqueues the run's events once the workers are up; the window ends when all succeeded. "
            "CPU = utime+stime from /proc/<pid>/stat of the supervisor and every worker process, plus the "
            "PostgreSQL backends of the run (pg_stat_activity by application_name), plus the enqueuing "
            "thread; the bare aiohttp client's CPU per request is read the same way around its run. Runs "
            "alternate (rotating order) in every round; ratios are per round.",
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes; writes bench/results/quick.json")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/performance.md")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--render", metavar="RESULTS.json", help="only write docs/performance.md from an earlier full run"
    )
    args = parser.parse_args(argv)
    if args.render:
        earlier = json.loads(Path(args.render).read_text(encoding="utf-8"))
        report.write_page(PAGE, report.markdown(earlier))
        print(f"{PAGE.relative_to(REPO)} written from {args.render}")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    cfg = QUICK if args.quick else FULL
    started = time.monotonic()
    sections = make_sections()
    problems: list[str] = []
    missing = ensure_packages({"requests": "requests", "apprise": "apprise"})
    result: dict[str, Any] = {
        "schema": "cavra.bench.results.v1",
        "mode": "quick" if args.quick else "full",
        "date": now_iso(),
        "machine": machine_facts(),
        "versions": package_versions(),
    }
    with (
        Sink() as sink,
        tempfile.TemporaryDirectory(prefix="cavra-bench-") as tmp,
        PgSchema("cavra_bench_scale") as pg,
    ):
        workdir = Path(tmp)
        result["sink"] = {"kind": sink.kind, "version": sink.version, "note": sink.note}
        result["versions"]["nginx"] = sink.version if sink.kind == "nginx" else None
        result["versions"]["postgresql"] = pg.server_version
        log.info(
            "sink: %s %s at %s; PostgreSQL: %s",
            sink.kind,
            sink.version,
            sink.url,
            pg.error or pg.server_version,
        )

        def run_section(name: str, body: Callable[[Section], Any]) -> Any:
            if name not in chosen:
                return None
            section = sections[name]
            log.info("== %s", section.title)
            t0 = time.monotonic()
            try:
                return body(section)
            except Exception as exc:
                problems.append(f"{name}: {type(exc).__name__}: {exc}")
                section.notes.append(f"section failed: {type(exc).__name__}: {exc}")
                log.error("section %s failed:\n%s", name, traceback.format_exc())
                return None
            finally:
                section.seconds = time.monotonic() - t0

        run_section("throughput", lambda s: throughput(s, cfg["throughput"], sink, pg.error, missing))
        run_section("siem", lambda s: siem(s, cfg["siem"], sink, missing))
        c = cfg["store"]
        run_section(
            "store",
            lambda s: store_scale.run(
                s,
                workdir,
                records=c["records"],
                json_sizes=c["json_sizes"],
                rounds=c["rounds"],
                samples=c["samples"],
                json_samples=c["json_samples"],
                write_per_round=c["write_per_round"],
                json_write_per_round=c["json_write_per_round"],
                pg=pg,
                cache=c["cache"],
                verify=args.quick,
            ),
        )
        a = cfg["api"]
        run_section(
            "api",
            lambda s: api_overhead.run(
                s, workdir, sink_url=sink.url, rounds=a["rounds"], requests=a["requests"], budget=a["budget"]
            ),
        )
        mcfg = cfg["memory"]

        def memory_section(s: Section) -> None:
            missing_worker = WorkerPath(sink.url, backend="sqlite", stores=None).skipped
            if missing_worker:
                s.figure(
                    "worker_peak_rss", "worker peak RSS", "MiB", higher_is_better=False
                ).skipped = missing_worker
            else:
                memory.worker_rss(s, workdir, sink_url=sink.url, jobs=mcfg["jobs"], budget=mcfg["budget"])
            scale_db = workdir / "scale.db"
            if scale_db.exists():
                memory.api_rss(
                    s,
                    workdir,
                    db=scale_db,
                    sink_url=sink.url,
                    pages=mcfg["pages"],
                    dashboards=mcfg["dashboards"],
                )
            else:
                s.figure(
                    "api_peak_rss", "API peak RSS (store at scale)", "MiB"
                ).skipped = "the store section did not run"

        run_section("memory", memory_section)
        rc = cfg["routing"]
        run_section(
            "routing",
            lambda s: routing.run(
                s,
                workdir,
                sink_url=sink.url,
                events=rc["events"],
                rounds=rc["rounds"],
                requests=rc["requests"],
            ),
        )

        pcfg = cfg["processes"]
        run_section(
            "processes",
            lambda s: processes.run(
                s,
                workdir,
                sink_url=sink.url,
                events=pcfg["events"],
                rounds=pcfg["rounds"],
                budget=pcfg["budget"],
                pg_error=pg.error,
            ),
        )

    for name in chosen:
        for fig in sections[name].figures.values():
            if fig.skipped and fig.skipped.startswith(("failed", "set-up failed")):
                problems.append(f"{name}/{fig.key}: {fig.skipped}")
    result["seconds"] = round(time.monotonic() - started, 1)
    result["sections"] = [sections[name].to_dict() for name in chosen]
    result["targets"] = evaluate(TARGETS, result["sections"])
    result["problems"] = problems
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("quick.json" if args.quick else "latest.json")
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table = report.markdown(result)
    print(table)
    if not args.quick and not args.no_docs and set(chosen) == set(SECTIONS):
        report.write_page(PAGE, table)
        print(f"results: {out.relative_to(REPO)}; table: {PAGE.relative_to(REPO)}")
    else:
        print(f"results: {out.relative_to(REPO)}")
    if problems:
        print("problems:\n" + "\n".join(f"- {p}" for p in problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
