"""Prometheus metrics (``GET /metrics``, ``cavra worker --metrics-port``).

Counted by the workers of this process (:meth:`DeliveryMetrics.run_finished`):

* ``cavra_deliveries_total{provider,outcome}``: attempt runs by outcome (``delivered``, ``pending``,
  ``failed``, ``rescheduled``, ``dead``);
* ``cavra_delivery_attempts_total{provider}``: HTTP exchanges;
* ``cavra_delivery_duration_seconds{provider}``: attempt run latency (histogram).

Counted by the publishes of this process (:meth:`DeliveryMetrics.event_routed`):

* ``cavra_events_published_total{outcome}``: published events, ``routed`` or ``unrouted`` (matched no
  route: answered and recorded, never dropped).

Read from the store at each scrape, so they are the same whichever process serves them:

* ``cavra_queue_jobs{state}``: jobs per state; ``cavra_queue_due_jobs``: jobs a worker could claim now;
* ``cavra_queue_oldest_due_age_seconds``: how long the oldest due job has waited (0: none);
* ``cavra_dead_letters``: jobs that are dead letters;
* ``cavra_breaker_state{provider}``: 0 closed, 1 half-open, 2 open; ``cavra_store_up``: the store answered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cavra.delivery.record import ProviderDelivery
from cavra.delivery.runs import RunObserver
from cavra.errors import CavraError
from cavra.store import Store
from cavra.store.jobs import CLOSED, HALF_OPEN, JOB_STATES, OPEN, Job, JobOutcome

log = logging.getLogger("cavra.metrics")

BREAKER_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _StoreCollector(Collector):
    def __init__(self, owner: DeliveryMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        store = self.owner.store
        up = GaugeMetricFamily("cavra_store_up", "1 when the store answered the last scrape")
        if store is None:
            up.add_metric([], 0)
            yield up
            return
        now = datetime.now(UTC)
        try:
            stats = store.queue_stats(now=now)
            destinations = store.list_destinations()
        except CavraError as exc:
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("cavra_queue_jobs", "Outbox jobs by state", labels=["state"])
        for state in JOB_STATES:
            jobs.add_metric([state], stats.count(state))
        yield jobs
        yield GaugeMetricFamily("cavra_queue_due_jobs", "Jobs a worker could claim now", value=stats.due)
        age = 0.0 if stats.oldest_due is None else max(0.0, (now - stats.oldest_due).total_seconds())
        yield GaugeMetricFamily(
            "cavra_queue_oldest_due_age_seconds", "Seconds the oldest due job has waited", value=age
        )
        yield GaugeMetricFamily("cavra_dead_letters", "Jobs that are dead letters", value=stats.count("dead"))
        breakers = GaugeMetricFamily(
            "cavra_breaker_state",
            "Circuit breaker per provider: 0 closed, 1 half-open, 2 open",
            labels=["provider"],
        )
        for dest in destinations:
            breakers.add_metric([dest.provider], BREAKER_VALUE.get(dest.breaker_state, 0))
        yield breakers


class DeliveryMetrics(RunObserver):
    """One registry: the worker counters of this process and the store gauges read at scrape."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.store: Store | None = None
        self.deliveries = Counter(
            "cavra_deliveries",
            "Attempt runs by provider and outcome",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "cavra_delivery_attempts", "HTTP exchanges", ["provider"], registry=self.registry
        )
        self.latency = Histogram(
            "cavra_delivery_duration_seconds",
            "Attempt run duration",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "cavra_events_published",
            "Events published through the routes (POST /events, cavra events publish) by routing outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(self))

    def bind_store(self, store: Store | None) -> None:
        """The store the gauges are read from (``None``: report ``cavra_store_up 0``)."""
        self.store = store

    def event_routed(self, routed: bool) -> None:
        self.events.labels("routed" if routed else "unrouted").inc()

    def run_finished(
        self, job: Job, result: ProviderDelivery | None, outcome: JobOutcome, seconds: float
    ) -> None:
        if outcome.state == "succeeded":
            name = result.status if result is not None else "delivered"
        else:
            name = {"queued": "rescheduled"}.get(outcome.state, outcome.state)
        self.deliveries.labels(job.provider, name).inc()
        if result is not None:
            self.attempts.labels(job.provider).inc(result.attempt_count)
        self.latency.labels(job.provider).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


#: The process's metrics (the API's /metrics and its in-process worker share it).
METRICS = DeliveryMetrics()


def serve_metrics(port: int, registry: CollectorRegistry | None = None) -> None:
    """Serve ``/metrics`` on 127.0.0.1:``port`` in a background thread (``cavra worker --metrics-port``)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr="127.0.0.1", registry=registry or METRICS.registry)
