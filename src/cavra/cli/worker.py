"""``cavra worker``: claim outbox jobs from the store and deliver them (see docs/operations.md).

Run as many as you like against one PostgreSQL store (or a few against one SQLite file). SIGTERM or
Ctrl-C stops gracefully: no new claims, running jobs get ``--shutdown-timeout`` seconds to finish, the
rest are given back to the queue. A worker killed outright loses nothing: its leases expire and another
worker runs the jobs again.

``--processes N`` (default: the number of cores) runs N such workers as child processes of one supervisor
(:mod:`cavra.cli.supervisor`); ``--processes 1`` is one worker in this process. The JSON-file store is
single-process: with it the default is 1 and more is refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from importlib.util import find_spec
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cavra.app import Cavra, Worker, worker_settings
from cavra.cli.common import EXIT_FAILED, EXIT_OK, err_console, fail, handled
from cavra.cli.stores import MetadataJsonOption, StoreOption, open_selected, service_for

if TYPE_CHECKING:
    from cavra.governance.checkpoint_schedule import CheckpointSchedule

log = logging.getLogger("cavra.worker")

ConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="Connector config (JSON or YAML); default $CAVRA_CONNECTOR_CONFIG."),
]
ConcurrencyOption = Annotated[int, typer.Option("--concurrency", help="Jobs delivered at once (1-256).")]
OnceOption = Annotated[bool, typer.Option("--once", help="Deliver what is due now, then exit.")]
LeaseOption = Annotated[
    float, typer.Option("--lease-seconds", help="How long a claim holds a job; renewed while it runs.")
]
PollOption = Annotated[float, typer.Option("--poll-interval", help="Seconds between claims when idle.")]
ShutdownOption = Annotated[
    float, typer.Option("--shutdown-timeout", help="Seconds running jobs get to finish on SIGTERM.")
]
BackoffBaseOption = Annotated[
    float | None, typer.Option("--backoff-base", help="Seconds before the 2nd run of a failing job (60).")
]
BackoffMaxOption = Annotated[
    float | None, typer.Option("--backoff-max", help="Longest wait between runs, seconds (21600).")
]
MaxRunsOption = Annotated[
    int | None, typer.Option("--max-runs", help="Attempt runs before a job is a dead letter (12).")
]
MaxAgeOption = Annotated[
    float | None, typer.Option("--max-age", help="Seconds after which a failing job is a dead letter.")
]
RateLimitOption = Annotated[
    str | None,
    typer.Option(
        "--rate-limit", help="Per provider: splunk=50,datadog=10/20 (per second, optionally /burst)."
    ),
]
BreakerThresholdOption = Annotated[
    int | None, typer.Option("--breaker-threshold", help="Consecutive failed runs that open a breaker (5).")
]
BreakerCooldownOption = Annotated[
    float | None, typer.Option("--breaker-cooldown", help="Seconds an open breaker waits to probe (60).")
]
RetryBaseOption = Annotated[
    float | None, typer.Option("--retry-base-delay", help="Backoff base of the short retries in a run.")
]
MetricsPortOption = Annotated[
    int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT (0: off).")
]
CheckpointEveryOption = Annotated[
    str | None,
    typer.Option(
        "--checkpoint-every",
        metavar="INTERVAL",
        help="Deliver the signed chain checkpoint every INTERVAL (1h, 15m) through "
        "--checkpoint-provider, so the SIEM witnesses the chain (needs a checkpoint key).",
    ),
]
CheckpointProviderOption = Annotated[
    str, typer.Option("--checkpoint-provider", help="Where --checkpoint-every delivers: a provider or list.")
]
ProcessesOption = Annotated[
    int | None,
    typer.Option(
        "--processes",
        help="Worker processes claiming from the store (default: the number of cores; 1: this process).",
    ),
]
#: ``uvloop`` runs the worker on uvloop's event loop (when installed) instead of the standard one
LOOP_ENV = "CAVRA_WORKER_LOOP"
#: options only the first child of a supervisor gets (one metrics port, one checkpoint witness)
FIRST_CHILD_ONLY = {"metrics_port", "checkpoint_every", "checkpoint_provider"}


def worker(
    store: StoreOption = None,
    metadata_json: MetadataJsonOption = None,
    config: ConfigOption = None,
    concurrency: ConcurrencyOption = 8,
    once: OnceOption = False,
    lease_seconds: LeaseOption = 60.0,
    poll_interval: PollOption = 1.0,
    shutdown_timeout: ShutdownOption = 30.0,
    backoff_base: BackoffBaseOption = None,
    backoff_max: BackoffMaxOption = None,
    max_runs: MaxRunsOption = None,
    max_age: MaxAgeOption = None,
    rate_limit: RateLimitOption = None,
    breaker_threshold: BreakerThresholdOption = None,
    breaker_cooldown: BreakerCooldownOption = None,
    retry_base_delay: RetryBaseOption = None,
    metrics_port: MetricsPortOption = None,
    checkpoint_every: CheckpointEveryOption = None,
    checkpoint_provider: CheckpointProviderOption = "splunk",
    processes: ProcessesOption = None,
) -> None:
    """Deliver queued jobs: claim with a lease, retry on the long schedule, dead-letter what never works."""
    options = dict(locals())
    if not 1 <= concurrency <= 256:
        fail(f"--concurrency: must be between 1 and 256, got {concurrency}")
    n = _process_count(processes, store, metadata_json)
    opened, w, witness = _build(options, serve_side=n == 1)
    if n > 1:
        opened.close_store()  # the options are valid and the store exists: the children open their own
        _supervise(n, options)
    _run_one(opened, w, witness, once=once)


def _process_count(processes: int | None, store: str | None, metadata_json: str | None) -> int:
    if processes is not None and processes < 1:
        fail(f"--processes: must be at least 1, got {processes}")
    with handled():
        backend = service_for(store, metadata_json).where().backend
    if backend == "json":
        if processes is not None and processes > 1:
            fail("--processes: the JSON-file store takes one worker process; use 1")
        return 1
    return processes if processes is not None else max(1, os.cpu_count() or 1)


def _build(options: dict[str, Any], *, serve_side: bool) -> tuple[Cavra, Worker, CheckpointSchedule | None]:
    """Check every option and open the store; with ``serve_side`` also bind the metrics port."""
    from cavra.config import load_config

    o = options
    with handled():
        settings = worker_settings(
            backoff_base=o["backoff_base"],
            backoff_max=o["backoff_max"],
            max_runs=o["max_runs"],
            max_age=o["max_age"],
            breaker_threshold=o["breaker_threshold"],
            breaker_cooldown=o["breaker_cooldown"],
            rate_limit=o["rate_limit"],
        )
        loaded = load_config(o["config"])
        opened = open_selected(o["store"], o["metadata_json"], create=True)
        observer = None
        if o["metrics_port"] and serve_side:
            from cavra.metrics import METRICS, serve_metrics

            METRICS.bind_store(opened.store)
            serve_metrics(o["metrics_port"])
            observer = METRICS
        w = opened.worker(
            loaded,
            settings,
            concurrency=o["concurrency"],
            lease_seconds=o["lease_seconds"],
            retry_base_delay=o["retry_base_delay"],
            poll_interval=o["poll_interval"],
            shutdown_timeout=o["shutdown_timeout"],
            observer=observer,
        )
        witness = None
        if o["checkpoint_every"] is not None:
            from cavra.governance.checkpoint_schedule import from_options

            witness = from_options(opened.store, loaded, o["checkpoint_every"], o["checkpoint_provider"])
    return opened, w, witness


def _run_one(opened: Cavra, w: Worker, witness: CheckpointSchedule | None, *, once: bool) -> None:
    """One worker in this process until stopped (or, with ``once``, until nothing is due)."""

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
        with handled(), asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(main())
    finally:
        opened.close_store()
    s = w.stats
    if witness is not None:
        err_console.print(f"checkpoints delivered: {witness.delivered}", highlight=False)
    err_console.print(
        f"worker {w.owner}: {s.claimed} claimed, {s.succeeded} delivered, {s.failed} failed, "
        f"{s.rescheduled} rescheduled, {s.dead} dead letters, {s.released} released",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_OK)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The standard loop (``None``), or uvloop's with ``CAVRA_WORKER_LOOP=uvloop`` when it is installed.

    Measured side by side (docs/performance.md, issue 17) uvloop changed neither the worker's throughput
    nor its CPU per event, so it is opt-in here (``cavra serve`` uses it for its HTTP server)."""
    if os.environ.get(LOOP_ENV, "").strip().lower() != "uvloop" or find_spec("uvloop") is None:
        return None
    import uvloop

    return uvloop.new_event_loop


def child_args(options: dict[str, Any], *, first: bool) -> list[str]:
    """The command line of one child: the same options (each ``name`` is the flag ``--name``), and
    ``--processes 1``."""
    out: list[str] = []
    for name, value in options.items():
        if name == "processes" or value is None or value is False:
            continue
        if name in FIRST_CHILD_ONLY and not first:
            continue
        flag = "--" + name.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return [*out, "--processes", "1"]


def _supervise(n: int, options: dict[str, Any]) -> None:
    from cavra.cli.supervisor import Supervisor

    sup = Supervisor(n, [child_args(options, first=i == 0) for i in range(n)])
    failed = sup.run()
    t = sup.totals()
    err_console.print(
        f"worker {socket.gethostname()}:{os.getpid()} ({n} processes): {t['claimed']} claimed, "
        f"{t['succeeded']} delivered, "
        f"{t['failed']} failed, {t['rescheduled']} rescheduled, {t['dead']} dead letters, "
        f"{t['released']} released; claimed per process: {', '.join(map(str, sup.claimed()))}",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)
