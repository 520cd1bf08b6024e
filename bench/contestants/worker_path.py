"""CAVRA's outbox path: events enqueued as jobs, a worker claims and delivers them, and stores each record.

Each run gets a fresh store. The measured window covers the whole pipeline, as in production where the
API writes the outbox while workers drain it: a producer task makes ``delivery_job`` for each event and
calls ``store.enqueue_jobs`` (in batches of :data:`ENQUEUE_BATCH`, waking the worker after each), while
one :class:`cavra.delivery.worker.Worker` (``concurrency`` jobs in flight, the default lease) claims and
delivers them; the window ends when every job has finished (or at the budget: then the producer and the
worker stop, running jobs finish, and what was stored counts). The worker completes each job with its
delivery record in one store transaction. Every run checks that each job succeeded and that
the store holds one more integration-delivery record per event.

When the worker modules are missing (they are written in parallel with the bench) the contestant is
reported as skipped, with the import error as the reason.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.contestants import Contestant, Measured
from bench.contestants.cavra_paths import INTEGRATION_ID, webhook_connectors

ENQUEUE_BATCH = 100


def worker_missing() -> str | None:
    """Why the worker path cannot run here, or ``None`` when it can."""
    try:
        from cavra.delivery import queue, worker  # noqa: F401
    except ImportError as exc:
        return f"the outbox worker is not available yet ({exc})"
    return None


StoreFactory = Callable[[], tuple[str, Callable[[], None]]]


def sqlite_factory(directory: Path) -> StoreFactory:
    """A fresh SQLite store per run (the URL, and how to remove it)."""
    counter = iter(range(1_000_000))

    def make() -> tuple[str, Callable[[], None]]:
        path = directory / f"worker-{next(counter)}.db"

        def remove() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return f"sqlite:///{path}", remove

    return make


class WorkerPath(Contestant):
    """Enqueue → worker → record, on a fresh store per run (made by ``stores``: SQLite or PostgreSQL)."""

    def __init__(
        self,
        base_url: str,
        *,
        backend: str,
        stores: StoreFactory | None,
        concurrency: int = 32,
        skip: str | None = None,
    ) -> None:
        super().__init__()
        self.base_url = base_url
        self.backend = backend
        self.stores = stores
        self.concurrency = concurrency
        self.key = f"cavra_worker_{backend}"
        self.label = f"CAVRA worker path: outbox → worker ({concurrency} in flight) → record ({backend})"
        self.skipped = skip or worker_missing()

    def setup(self) -> None:
        from cavra.config import config_from_data

        logging.getLogger("cavra.worker").setLevel(logging.WARNING)
        self._tmp = tempfile.TemporaryDirectory(prefix="cavra-bench-worker-")
        if self.stores is None:
            self.stores = sqlite_factory(Path(self._tmp.name))
        self.config = config_from_data(webhook_connectors(self.base_url), "bench")

    def run(self, events: list[dict[str, Any]]) -> Measured:
        from cavra.store import INTEGRATION_DELIVERY, DeliveryFilter, open_store

        assert self.stores is not None
        url, remove = self.stores()
        try:
            self.store = open_store(url)
            try:
                seconds, stats = asyncio.run(self._run(events))
                flt = DeliveryFilter(metadata_kinds=(INTEGRATION_DELIVERY,), integration_id=INTEGRATION_ID)
                stored = self.store.count_provider_deliveries(flt)
            finally:
                self.store.close()
        finally:
            remove()
        if stats.succeeded != stored or stats.failed or stats.dead or stats.rescheduled:
            raise RuntimeError(f"{stored} records stored, worker: {stats}")
        return stored, seconds

    async def _run(self, events: list[dict[str, Any]]) -> tuple[float, Any]:
        from cavra.delivery.queue import delivery_job
        from cavra.delivery.worker import Worker
        from cavra.store import INTEGRATION_DELIVERY
        from cavra.transport import AiohttpTransport

        async with AiohttpTransport() as transport:
            worker = Worker(
                self.store, self.config, concurrency=self.concurrency, transport=transport, poll_interval=0.05
            )

            async def produce() -> None:
                for start in range(0, len(events), ENQUEUE_BATCH):
                    jobs = [
                        delivery_job(
                            event,
                            "webhook",
                            kind=INTEGRATION_DELIVERY,
                            subject_kind="integration",
                            subject_id=INTEGRATION_ID,
                            integration_id=INTEGRATION_ID,
                        )
                        for event in events[start : start + ENQUEUE_BATCH]
                    ]
                    await asyncio.to_thread(self.store.enqueue_jobs, jobs)
                    worker.wake()
                    if self.over_budget():
                        return

            def finished() -> int:
                st = worker.stats
                return st.succeeded + st.failed + st.dead + st.rescheduled + st.lease_lost

            t0 = time.perf_counter()
            producer = asyncio.create_task(produce())
            running = asyncio.create_task(worker.run())
            while finished() < len(events) and not self.over_budget() and not running.done():
                await asyncio.sleep(0.01)
            worker.stop()  # all done, or past the budget: running jobs finish, nothing new is claimed
            stats = await running
            elapsed = time.perf_counter() - t0
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            return elapsed, stats

    def teardown(self) -> None:
        if hasattr(self, "_tmp"):
            self._tmp.cleanup()
