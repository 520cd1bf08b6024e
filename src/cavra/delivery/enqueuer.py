"""Enqueues of concurrent requests written together: the requests that arrive while one enqueue is being
written are written in the next, in one store transaction (at most :data:`MAX_JOBS` jobs per transaction).

Each request still gets exactly its own answer (its jobs' :class:`~cavra.store.jobs.Enqueued`, in its
order), as if it had been written alone: a key asked for twice in one transaction is created by the first
request and found by the second, as two transactions in a row would do. If a write of several requests
fails, each is written alone, so one request's error is its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from cavra.store import Store
from cavra.store.jobs import ClaimNew, Enqueued, NewJob, RecordPut

#: most jobs written in one store transaction (one request's jobs are never split)
MAX_JOBS = 256


@dataclass
class _Request:
    jobs: list[NewJob]
    records: list[RecordPut]
    claim: ClaimNew | None
    done: asyncio.Future[list[Enqueued]]


class Enqueuer:
    """``await enqueue(...)`` from any task of one event loop; a writer task runs while requests wait."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiting: list[_Request] = []
        self._writer: asyncio.Task[None] | None = None

    async def enqueue(
        self, jobs: Sequence[NewJob], *, records: Sequence[RecordPut] = (), claim: ClaimNew | None = None
    ) -> list[Enqueued]:
        return await asyncio.shield(self.submit(jobs, records=records, claim=claim))

    def submit(
        self, jobs: Sequence[NewJob], *, records: Sequence[RecordPut] = (), claim: ClaimNew | None = None
    ) -> asyncio.Future[list[Enqueued]]:
        """Queue the request for the writer; the future is its answer (it is written even if the caller
        stops waiting: see ``cavra.delivery.submit`` for what becomes of jobs it claimed then)."""
        done: asyncio.Future[list[Enqueued]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Request(list(jobs), list(records), claim, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="cavra enqueues")
        return done

    async def _drain(self) -> None:
        try:
            while self._waiting:
                first = self._waiting[0]
                batch: list[_Request] = []
                size = 0
                for request in self._waiting:
                    # one transaction per claim (a claim carries the providers paused when it was made)
                    if request.claim != first.claim or (batch and size + len(request.jobs) > MAX_JOBS):
                        break
                    batch.append(request)
                    size += len(request.jobs)
                self._waiting = self._waiting[len(batch) :]
                try:
                    await self._write(batch)
                except BaseException:  # cancelled (the loop is closing): no caller is left hanging
                    for request in batch:
                        if not request.done.done():
                            request.done.cancel()
                    raise
        finally:
            self._writer = None  # a finished task keeps its loop alive

    async def _write(self, batch: list[_Request]) -> None:
        jobs = [job for request in batch for job in request.jobs]
        records = [put for request in batch for put in request.records]
        try:
            claim = batch[0].claim
            out = await asyncio.to_thread(self.store.enqueue_jobs, jobs, records=records, claim=claim)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].done.done():
                    batch[0].done.set_exception(exc)
                return
            for one in batch:  # one request's error must not fail the others: write them one by one
                await self._write([one])
            return
        start = 0
        for request in batch:
            mine = out[start : start + len(request.jobs)]
            start += len(request.jobs)
            if not request.done.done():
                request.done.set_result(mine)
