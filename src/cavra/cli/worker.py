"""``cavra worker``: claim outbox jobs from the store and deliver them (see docs/operations.md).

Run as many as you like against one PostgreSQL store (or a few against one SQLite file). SIGTERM or
Ctrl-C stops gracefully: no new claims, running jobs get ``--shutdown-timeout`` seconds to finish, the
rest are given back to the queue. A worker killed outright loses nothing: its leases expire and another
worker runs the jobs again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from cavra.cli.common import EXIT_OK, err_console, fail, handled
from cavra.cli.stores import MetadataJsonOption, StoreOption, open_selected

log = logging.getLogger("cavra.worker")


def worker(
    store: StoreOption = None,
    metadata_json: MetadataJsonOption = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="Connector config (JSON or YAML); default $CAVRA_CONNECTOR_CONFIG."),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Jobs delivered at once (1-256).")] = 8,
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due now, then exit.")] = False,
    lease_seconds: Annotated[
        float, typer.Option("--lease-seconds", help="How long a claim holds a job; renewed while it runs.")
    ] = 60.0,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", help="Seconds between claims when idle.")
    ] = 1.0,
    shutdown_timeout: Annotated[
        float, typer.Option("--shutdown-timeout", help="Seconds running jobs get to finish on SIGTERM.")
    ] = 30.0,
    backoff_base: Annotated[
        float | None, typer.Option("--backoff-base", help="Seconds before the 2nd run of a failing job (60).")
    ] = None,
    backoff_max: Annotated[
        float | None, typer.Option("--backoff-max", help="Longest wait between runs, seconds (21600).")
    ] = None,
    max_runs: Annotated[
        int | None, typer.Option("--max-runs", help="Attempt runs before a job is a dead letter (12).")
    ] = None,
    max_age: Annotated[
        float | None, typer.Option("--max-age", help="Seconds after which a failing job is a dead letter.")
    ] = None,
    rate_limit: Annotated[
        str | None,
        typer.Option(
            "--rate-limit", help="Per provider: splunk=50,datadog=10/20 (per second, optionally /burst)."
        ),
    ] = None,
    breaker_threshold: Annotated[
        int | None,
        typer.Option("--breaker-threshold", help="Consecutive failed runs that open a breaker (5)."),
    ] = None,
    breaker_cooldown: Annotated[
        float | None, typer.Option("--breaker-cooldown", help="Seconds an open breaker waits to probe (60).")
    ] = None,
    retry_base_delay: Annotated[
        float | None, typer.Option("--retry-base-delay", help="Backoff base of the short retries in a run.")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT (0: off)."),
    ] = None,
    checkpoint_every: Annotated[
        str | None,
        typer.Option(
            "--checkpoint-every",
            metavar="INTERVAL",
            help="Deliver the signed chain checkpoint every INTERVAL (1h, 15m) through "
            "--checkpoint-provider, so the SIEM witnesses the chain (needs a checkpoint key).",
        ),
    ] = None,
    checkpoint_provider: Annotated[
        str,
        typer.Option("--checkpoint-provider", help="Where --checkpoint-every delivers: a provider or list."),
    ] = "splunk",
) -> None:
    """Deliver queued jobs: claim with a lease, retry on the long schedule, dead-letter what never works."""
    from cavra.config import load_config
    from cavra.delivery.guard import GuardSettings, parse_rate_limits
    from cavra.delivery.queue import Schedule
    from cavra.delivery.worker import Worker

    if not 1 <= concurrency <= 256:
        fail(f"--concurrency: must be between 1 and 256, got {concurrency}")
    with handled():
        schedule = Schedule.from_environment(
            base_delay=backoff_base, max_delay=backoff_max, max_runs=max_runs, max_age=max_age
        )
        guard = GuardSettings.from_environment(
            failure_threshold=breaker_threshold,
            cooldown=breaker_cooldown,
            rate_limits=parse_rate_limits(rate_limit) if rate_limit else None,
        )
        loaded = load_config(config)
        opened = open_selected(store, metadata_json, create=True)
        observer = None
        if metrics_port:
            from cavra.metrics import METRICS, serve_metrics

            METRICS.bind_store(opened)
            serve_metrics(metrics_port)
            observer = METRICS
        w = Worker(
            opened,
            loaded,
            concurrency=concurrency,
            lease_seconds=lease_seconds,
            schedule=schedule,
            guard=guard,
            retry_base_delay=retry_base_delay,
            poll_interval=poll_interval,
            shutdown_timeout=shutdown_timeout,
            observer=observer,
        )
        witness = None
        if checkpoint_every is not None:
            from cavra.governance.checkpoint_schedule import from_options

            witness = from_options(opened, loaded, checkpoint_every, checkpoint_provider)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, w.stop)
        ticking = asyncio.create_task(witness.run()) if witness is not None and not once else None
        try:
            await w.run(once=once)
        finally:
            if ticking is not None:
                ticking.cancel()
        if witness is not None and once:
            await witness.tick()  # --once: one checkpoint of what this run stored

    try:
        with handled():
            asyncio.run(main())
    finally:
        opened.close()
    s = w.stats
    if witness is not None:
        err_console.print(f"checkpoints delivered: {witness.delivered}", highlight=False)
    err_console.print(
        f"worker {w.owner}: {s.claimed} claimed, {s.succeeded} delivered, {s.failed} failed, "
        f"{s.rescheduled} rescheduled, {s.dead} dead letters, {s.released} released",
        highlight=False,
    )
    raise typer.Exit(EXIT_OK)
