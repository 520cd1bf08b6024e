"""Routing: what deciding an event's destinations costs, and what ``POST /events`` adds over one deliver.

* ``route``: :meth:`cavra.routing.RouteTable.route` per event on a table of 100 routes (event-type globs,
  Alertmanager matchers on labels and fields, ``min_severity``, ``continue``, a default), compiled from a
  connectors file as ``cavra serve`` would; events of 12 types, each timed alone (``perf_counter_ns``). A
  second figure times the worst case, every route a candidate that ``continue``\\ s (all 100 evaluated;
  the routes repeat 8 distinct matchers, as tables that filter on env and team do).
* ``publish``: ``cavra serve`` (own process, SQLite) with three destinations (webhook, Splunk HEC, Datadog)
  aimed at the sink and one route sending every event to all three. Per round, alternating, one client
  posts ``{"event", "wait": true}`` to ``POST /events`` (three jobs, three records) and ``{"event"}`` to
  ``POST /integrations/{id}/deliver`` (one destination, one record); added = the p50 (p99) difference.
* ``templates``: one Slack ``prepare`` (the request a delivery sends) without templates, with the shipped
  default templates (both keys, the same message) and with one custom ``text`` template, on the four sample
  events, each call timed alone; the three alternate in every round.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from bench.api_overhead import ApiServer, _api_ok, _timed_posts, register_integration
from bench.common import BENCH_SIGNING_SECRET, Section, make_events, percentile
from bench.contestants.cavra_paths import INTEGRATION_ID
from cavra.config import Target, config_from_data, target_from_mapping
from cavra.connectors.base import Context
from cavra.routing import RouteTable
from cavra.templates import default_templates
from cavra.templates.samples import SAMPLES

log = logging.getLogger("bench")
BENCH_TOKEN = "bench-token-0123456789abcdef"
TYPES = [f"acme.app{n}.{kind}" for n in range(4) for kind in ("deploy", "rollback", "audit")]
DESTS = [f"d{n}" for n in range(8)]


def bench_routes(count: int = 100, *, worst: bool = False) -> list[dict[str, Any]]:
    """``count`` routes in the shape teams write: per-type routes with matchers, a few globs, a default."""
    routes: list[dict[str, Any]] = []
    for n in range(count - 1):
        app = n % 4
        route: dict[str, Any] = {"name": f"r{n}", "to": [DESTS[n % 8], DESTS[(n + 3) % 8]]}
        if worst:
            route["event_type"] = "acme.*"
        elif n % 10 == 0:
            route["event_type"] = f"acme.app{app}.*"
        else:
            route["event_type"] = TYPES[n % len(TYPES)]
        route["matchers"] = [f'labels.env="{("prod", "staging")[n % 2]}"', f'team=~"team-{n % 5}|ops"']
        if n % 3 == 0:
            route["min_severity"] = ("low", "medium", "high")[n % 3]
        if n % 7 == 0:
            route["matchers"].append('release!~"0\\\\..*"')
        route["continue"] = worst or n % 2 == 0
        routes.append(route)
    routes.append({"default": True, "name": "rest", "to": ["d0"]})
    return routes


def bench_table(*, worst: bool = False) -> RouteTable:
    # routes name destinations by entry name only: the entries need not load (this part sends nothing)
    loaded = config_from_data(
        {"connectors": {d: {"provider": "webhook"} for d in DESTS}, "routes": bench_routes(worst=worst)},
        "bench",
    )
    assert loaded.routes is not None
    return loaded.routes


def route_events(count: int) -> list[dict[str, Any]]:
    out = []
    for n in range(count):
        out.append(
            {
                "event_type": TYPES[(n * 7) % len(TYPES)],
                "event_id": f"evt_route_{n}",
                "severity": ("info", "low", "medium", "high", "critical")[n % 5],
                "team": f"team-{n % 6}",
                "release": f"{n % 3}.{n % 10}.0",
                "labels": {"env": ("prod", "staging", "dev")[n % 3]},
            }
        )
    return out


def _time_routing(table: RouteTable, events: list[dict[str, Any]]) -> list[float]:
    route = table.route
    for ev in events[:200]:  # warm: the candidate cache and the regexes
        route(ev)
    latencies = []
    clock = time.perf_counter_ns
    for ev in events:
        t0 = clock()
        route(ev)
        latencies.append((clock() - t0) / 1000)
    return latencies


def routing_cost(section: Section, *, events: int, rounds: int) -> None:
    tables = {"": bench_table(), "_worst": bench_table(worst=True)}
    evs = route_events(events)
    for _ in range(rounds):
        for suffix, table in tables.items():
            lat = _time_routing(table, evs)
            label = "every route a candidate (all 100 evaluated)" if suffix else "100 routes"
            for q in (50, 99):
                section.figure(
                    f"route{suffix}_p{q}", f"routing one event, {label}, p{q}", "µs", higher_is_better=False
                ).add(percentile(lat, q))


SLACK_URL = "https://hooks.slack.com/services/T0BENCH01/B0BENCH01/benchTemplateSecret0001"
CUSTOM_TEXT = ":rotating_light: {{ event.environment|upper }} rollback {{ subject.id }}: {{ event.release }}"


def template_targets() -> dict[str, Target]:
    """Slack destinations without templates, with the shipped defaults, with one custom text template."""
    variants: dict[str, Any] = {
        "none": None,
        "defaults": default_templates("slack"),
        "custom": {"text": CUSTOM_TEXT},
    }
    out = {}
    for name, templates in variants.items():
        entry: dict[str, Any] = {"url": SLACK_URL}
        if templates is not None:
            entry["templates"] = templates
        out[name] = target_from_mapping("slack", entry, {}, name=f"slack-{name}")
    return out


def _time_prepare(target: Target, count: int) -> list[float]:
    ctx = Context(delivery_key="dk_bench")
    prepare, settings = target.connector.prepare, target.settings
    latencies = []
    clock = time.perf_counter_ns
    for n in range(count):
        event = SAMPLES[n % len(SAMPLES)]
        t0 = clock()
        prepare(event, settings, ctx, None)
        latencies.append((clock() - t0) / 1000)
    return latencies


def template_cost(section: Section, *, events: int, rounds: int) -> None:
    labels = {
        "none": "no templates",
        "defaults": "the shipped default templates",
        "custom": "one custom text template",
    }
    targets = template_targets()
    count = max(events // 10, 40)
    for r in range(rounds):
        order = list(targets) if r % 2 == 0 else list(reversed(targets))
        for name in order:
            _time_prepare(targets[name], 20)  # warm
            lat = _time_prepare(targets[name], count)
            section.figure(
                f"slack_prepare_{name}_p50",
                f"Slack prepare, {labels[name]}, p50",
                "µs",
                higher_is_better=False,
            ).add(percentile(lat, 50))


def fanout_connectors(sink_url: str) -> dict[str, Any]:
    return {
        "connectors": {
            "webhook": {
                "url": sink_url + "/hook",
                "signing_secret": BENCH_SIGNING_SECRET,
                "allow_http": True,
            },
            "splunk": {"url": sink_url + "/services/collector", "token": BENCH_TOKEN, "allow_http": True},
            "datadog": {"url": sink_url, "api_key": BENCH_TOKEN, "allow_http": True},
        },
        "routes": [{"name": "fan-out", "to": ["webhook", "splunk", "datadog"]}],
    }


def _publish_ok(status: int, data: bytes) -> None:
    if status != 200:
        raise RuntimeError(f"POST /events answered HTTP {status}: {data[:300]!r}")
    body = json.loads(data)
    if not body.get("success") or body["job_count"] != 3:
        raise RuntimeError(f"POST /events did not deliver to 3 destinations: {data[:300]!r}")


def publish_overhead(section: Section, workdir: Path, *, sink_url: str, rounds: int, requests: int) -> None:
    store_url = f"sqlite:///{workdir / 'routing.db'}"
    server = ApiServer(
        workdir, store_url=store_url, sink_url=sink_url, connectors=fanout_connectors(sink_url)
    )
    with server:
        register_integration(server.url)
        deliver_url = f"{server.url}/integrations/{INTEGRATION_ID}/deliver"
        publish_url = f"{server.url}/events"
        start = 7_000_000
        warm = make_events(20, start=start)
        start += 20
        asyncio.run(
            _timed_posts(deliver_url, [json.dumps({"event": e}).encode() for e in warm], 1, _api_ok, 30)
        )
        for r in range(rounds):
            events = make_events(requests, start=start)
            start += requests
            runs = {
                "deliver": (deliver_url, [json.dumps({"event": e}).encode() for e in events], _api_ok),
                "publish": (
                    publish_url,
                    [
                        json.dumps({"event": {**e, "event_id": e["event_id"] + "p"}, "wait": True}).encode()
                        for e in events
                    ],
                    _publish_ok,
                ),
            }
            stats: dict[str, dict[int, float]] = {}
            for name in ["deliver", "publish"] if r % 2 == 0 else ["publish", "deliver"]:
                url, bodies, check = runs[name]
                lat = asyncio.run(_timed_posts(url, bodies, 1, check, 60))
                stats[name] = {q: percentile(lat, q) for q in (50, 99)}
                who = "POST /events, 3 destinations" if name == "publish" else "deliver route, 1 destination"
                for q in (50, 99):
                    section.figure(f"{name}_p{q}", f"{who}, p{q}", "ms", higher_is_better=False).add(
                        stats[name][q]
                    )
            for q in (50, 99):
                section.figure(
                    f"publish_added_p{q}",
                    f"added by POST /events (3 destinations) over one deliver route, p{q}",
                    "ms",
                    higher_is_better=False,
                ).add(stats["publish"][q] - stats["deliver"][q])
            log.info(
                "  round %d: publish p50 %.2f ms, deliver p50 %.2f ms",
                r + 1,
                stats["publish"][50],
                stats["deliver"][50],
            )


def run(section: Section, workdir: Path, *, sink_url: str, events: int, rounds: int, requests: int) -> None:
    routing_cost(section, events=events, rounds=rounds)
    template_cost(section, events=events, rounds=rounds)
    publish_overhead(section, workdir, sink_url=sink_url, rounds=rounds, requests=requests)
