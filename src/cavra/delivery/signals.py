"""In-process wake-ups: a job's run ended (wakes its waiters); jobs were enqueued (wakes workers).

One :class:`Signals` belongs to a :class:`cavra.delivery.runtime.DeliveryRuntime`: the workers and the
faces that share a runtime wake each other. Waiters also poll the store, so runs by other processes (or
other runtimes) are seen too; signals only cut latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cavra.errors import InputError
from cavra.store import Store
from cavra.store.jobs import Job


@dataclass
class Signals:
    """In-process notifications: a job's run ended (wakes waiters) and jobs were enqueued (wakes workers).

    Waiters also poll the store, so jobs run by other processes are seen too; signals only cut latency.
    """

    _waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = field(default_factory=dict)
    _workers: list[Callable[[], None]] = field(default_factory=list)

    def job_done(self, job_id: str) -> None:
        for loop, event in list(self._waiters.get(job_id, ())):
            loop.call_soon_threadsafe(event.set)

    def enqueued(self) -> None:
        for wake in list(self._workers):
            wake()

    def add_worker(self, wake: Callable[[], None]) -> None:
        self._workers.append(wake)

    def remove_worker(self, wake: Callable[[], None]) -> None:
        if wake in self._workers:
            self._workers.remove(wake)

    async def wait(
        self,
        store: Store,
        job_ids: Sequence[str],
        *,
        timeout: float,
        until: Callable[[Job], bool] | None = None,
    ) -> list[Job]:
        """The jobs once each satisfies ``until`` (default: a run has ended, i.e. it has a record) or when
        ``timeout`` passes, whichever is first."""
        ready = until or (lambda j: j.delivery_id is not None or j.final)
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        for jid in job_ids:
            self._waiters.setdefault(jid, set()).add(entry)
        deadline = time.monotonic() + timeout
        interval = 0.02
        try:
            while True:
                jobs = await asyncio.to_thread(_get_jobs, store, job_ids)
                left = deadline - time.monotonic()
                if all(ready(j) for j in jobs) or left <= 0:
                    return jobs
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), timeout=min(interval, left))
                except TimeoutError:
                    interval = min(interval * 2, 0.5)
        finally:
            for jid in job_ids:
                waiters = self._waiters.get(jid)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[jid]


def _get_jobs(store: Store, job_ids: Sequence[str]) -> list[Job]:
    jobs = []
    for jid in job_ids:
        job = store.get_job(jid)
        if job is None:
            raise InputError(f"job {jid} not found")
        jobs.append(job)
    return jobs
