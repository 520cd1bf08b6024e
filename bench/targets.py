"""The targets of issues 7 and 17, checked against a run's results (ratios measured in the same run)."""

from __future__ import annotations

from typing import Any

from bench.common import Target
from bench.console_pages import PAGES, TRENDS

#: "flat in the number of jobs": RSS grows by at most this much per 10,000 jobs after the warm-up
FLAT_MIB_PER_10K = 2.0

TARGETS = [
    Target(
        "worker_vs_ceiling",
        "Worker path on SQLite ≥ 0.5x the bare aiohttp ceiling",
        "throughput",
        "worker_vs_ceiling",
        ">=",
        0.5,
        "x",
    ),
    Target(
        "worker_vs_requests",
        "Worker path on SQLite ≥ 3x the requests.post loop",
        "throughput",
        "worker_vs_requests",
        ">=",
        3.0,
        "x",
    ),
    Target(
        "worker_vs_apprise",
        "Worker path on SQLite ≥ 4x Apprise",
        "throughput",
        "worker_vs_apprise",
        ">=",
        4.0,
        "x",
    ),
    Target(
        "hec_batch_vs_requests",
        "SIEM with batching (HEC) ≥ 10x the requests.post loop",
        "siem",
        "hec_batch_vs_requests",
        ">=",
        10.0,
        "x",
    ),
    Target(
        "datadog_batch_vs_requests",
        "SIEM with batching (Datadog) ≥ 10x the requests.post loop",
        "siem",
        "datadog_batch_vs_requests",
        ">=",
        10.0,
        "x",
    ),
    Target(
        "history_first",
        "History page p50 ≤ 5 ms at 1,000,000 records (SQLite), first page",
        "store",
        "history_first_p50_sqlite",
        "<=",
        5.0,
        "ms",
    ),
    Target(
        "history_deep",
        "History page p50 ≤ 5 ms at 1,000,000 records (SQLite), deep page",
        "store",
        "history_deep_p50_sqlite",
        "<=",
        5.0,
        "ms",
    ),
    Target(
        "dashboard",
        "Dashboard p50 ≤ 50 ms at 1,000,000 records (SQLite)",
        "store",
        "dashboard_p50_sqlite",
        "<=",
        50.0,
        "ms",
    ),
    Target(
        "api_added_p50", "API added latency p50 ≤ 3 ms at 1 client", "api", "added_p50_c1", "<=", 3.0, "ms"
    ),
    Target(
        "routing_p50",
        "Routing one event with 100 routes ≤ 20 µs p50",
        "routing",
        "route_p50",
        "<=",
        20.0,
        "µs",
    ),
    Target(
        "publish_added_p50",
        "POST /events with 3 matched destinations adds ≤ 3 ms p50 over one destination's deliver route",
        "routing",
        "publish_added_p50",
        "<=",
        3.0,
        "ms",
    ),
    Target(
        "cpu_vs_aiohttp_sqlite",
        "CPU per durable event (SQLite, 1 worker process) ≤ 4x the bare aiohttp client's CPU per request",
        "processes",
        "cpu_vs_aiohttp_sqlite",
        "<=",
        4.0,
        "x",
    ),
    Target(
        "cpu_vs_aiohttp_postgresql",
        "CPU per durable event (PostgreSQL incl. its backends, 1 worker process) ≤ 4x aiohttp's",
        "processes",
        "cpu_vs_aiohttp_postgresql",
        "<=",
        4.0,
        "x",
    ),
    Target(
        "procs_2_vs_1_sqlite",
        "cavra worker --processes 2 ≥ 1.6x --processes 1 (SQLite)",
        "processes",
        "procs_2_vs_1_sqlite",
        ">=",
        1.6,
        "x",
    ),
    Target(
        "procs_2_vs_1_postgresql",
        "cavra worker --processes 2 ≥ 1.6x --processes 1 (PostgreSQL)",
        "processes",
        "procs_2_vs_1_postgresql",
        ">=",
        1.6,
        "x",
    ),
    Target(
        "worker_rss",
        "Worker peak RSS ≤ 200 MB for 100,000 jobs",
        "memory",
        "worker_peak_rss",
        "<=",
        200.0,
        "MiB",
    ),
    Target(
        "worker_rss_flat",
        f"Worker RSS flat in the number of jobs (≤ {FLAT_MIB_PER_10K:g} MiB per 10,000 jobs)",
        "memory",
        "worker_rss_growth",
        "<=",
        FLAT_MIB_PER_10K,
        "MiB",
    ),
]

# issue 14: every console page ≤ 100 ms p50, a trend chart ≤ 50 ms p50, at 1,000,000 records
TARGETS += [
    Target(
        f"console_{key}",
        f"Console page {label} p50 ≤ {50 if key in TRENDS else 100} ms at 1,000,000 records (SQLite)",
        "console",
        f"{key}_p50",
        "<=",
        50.0 if key in TRENDS else 100.0,
        "ms",
    )
    for key, (label, _path) in PAGES.items()
]


def evaluate(targets: list[Target], sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target with the measured median, min and max of its figure or ratio, and whether it is met."""
    by_key = {s["key"]: s for s in sections}
    out = []
    for t in targets:
        entry: dict[str, Any] = {"key": t.key, "text": t.text, "op": t.op, "bound": t.bound, "unit": t.unit}
        section = by_key.get(t.section)
        item = None
        if section is not None:
            item = next((i for i in [*section["figures"], *section["ratios"]] if i["key"] == t.item), None)
        if item is None or item["median"] is None:
            entry.update(median=None, min=None, max=None, met=None)
            entry["skipped"] = (item or {}).get("skipped") or f"section {t.section} did not measure {t.item}"
        else:
            median = float(item["median"])
            met = median >= t.bound if t.op == ">=" else median <= t.bound
            entry.update(median=median, min=item["min"], max=item["max"], met=met)
        out.append(entry)
    return out
