"""Console page timings on the store-at-scale dataset (issue 14: every console page ≤ 100 ms p50, a
trend chart ≤ 50 ms p50, at 1,000,000 records).

``cavra serve`` runs in its own process on the store section's SQLite database (``scale.db``: the
dataset the store section loaded, or copied from its cache), in protected mode (loopback, no tokens: the
console's admin view, action forms included). One client asks each page in turn over loopback HTTP,
``samples`` times per round, for ``rounds`` rounds; each round's p50 per page is one value of the page's
figure. The time is the whole answer as the browser waits for it (HTTP included, the page's HTML read).
Nothing is asserted about the times: ``docs/performance.md`` reads them against the targets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from bench.api_overhead import ApiServer
from bench.common import Section, percentile

log = logging.getLogger("bench")

#: page key → (label, path); ``{delivery}`` is a stored delivery id picked from the dataset
PAGES: dict[str, tuple[str, str]] = {
    "overview": ("overview (three boards)", "/console"),
    "deliveries": ("deliveries, first page", "/console/deliveries"),
    "failures": ("deliveries, splunk failures", "/console/deliveries?provider=splunk&success=false"),
    "delivery": ("one delivery's detail", "/console/deliveries/{delivery}"),
    "publications": ("publications, first page", "/console/publications"),
    "queue": ("queue", "/console/queue"),
    "destinations": ("destinations", "/console/destinations"),
    "integrations": ("integrations", "/console/integrations"),
    "audit": ("audit trail", "/console/audit"),
    "trends_24h": ("trend chart, 24 h, every provider", "/console/trends?span=24h"),
    "trends_7d": ("trend chart, 7 d, every provider", "/console/trends?span=7d"),
    "trends_30d": ("trend chart, 30 d, every provider", "/console/trends?span=30d"),
    "trends_provider": ("trend chart, 30 d, splunk", "/console/trends?span=30d&provider=splunk"),
    "trends_destination": (
        "trend chart, 30 d, destination webhook",
        "/console/trends?span=30d&destination=webhook",
    ),
}
TRENDS = [k for k in PAGES if k.startswith("trends")]


def _a_delivery(db: Path) -> str:
    from cavra.store import DeliveryFilter, open_store

    store = open_store(f"sqlite:///{db}")  # also brings the file to the newest schema, before serve opens it
    try:
        [row] = store.page_provider_deliveries(DeliveryFilter(success=False), limit=1)
        return row.delivery_id
    finally:
        store.close()


async def _time_pages(url: str, paths: dict[str, str], samples: int) -> dict[str, list[float]]:
    import aiohttp

    times: dict[str, list[float]] = {k: [] for k in paths}
    async with aiohttp.ClientSession() as session:
        for key, path in paths.items():
            for _ in range(samples):
                t0 = time.perf_counter()
                async with session.get(url + path, allow_redirects=False) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"GET {path}: HTTP {resp.status}")
                times[key].append((time.perf_counter() - t0) * 1000)
    return times


def run(
    section: Section, workdir: Path, *, db: Path, sink_url: str, rounds: int, samples: int
) -> dict[str, Any]:
    """Time every console page on ``db``; add one p50 figure (ms) per page; return the last round's."""
    delivery = _a_delivery(db)
    paths = {k: path.format(delivery=delivery) for k, (_label, path) in PAGES.items()}
    last: dict[str, float] = {}
    with ApiServer(workdir, store_url=f"sqlite:///{db}", sink_url=sink_url) as server:
        asyncio.run(_time_pages(server.url, paths, 1))  # warm: the first answer of each page opens things
        for r in range(rounds):
            times = asyncio.run(_time_pages(server.url, paths, samples))
            for key, values in times.items():
                label = f"console page: {PAGES[key][0]}, p50"
                last[key] = percentile(values, 50)
                section.figure(f"{key}_p50", label, "ms", higher_is_better=False).add(last[key])
            log.info("  round %d: slowest page %s", r + 1, max(last, key=lambda k: last[k]))
    worst = max(last, key=lambda k: last[k])
    trend = max(TRENDS, key=lambda k: last[k])
    section.notes.append(
        f"slowest page {PAGES[worst][0]} ({last[worst]:.1f} ms p50; target 100 ms); slowest trend chart "
        f"{PAGES[trend][0]} ({last[trend]:.1f} ms p50; target 50 ms), last round"
    )
    return last
