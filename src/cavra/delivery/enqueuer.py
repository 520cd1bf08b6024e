"""Enqueues of concurrent requests written together: the requests that arrive while one enqueue is being
written are written in the next, in one store transaction (at most :data:`MAX_JOBS` jobs per transaction;
:mod:`cavra.delivery.groupwrite`).

Each request still gets exactly its own answer (its jobs' :class:`~cavra.store.jobs.Enqueued`, in its
order), as if it had been written alone: a key asked for twice in one transaction is created by the first
request and found by the second, as two transactions in a row would do. If a write of several requests
fails, each is written alone, so one request's error is its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from cavra.delivery.groupwrite import GroupWriter
from cavra.store import Store
from cavra.store.jobs import ClaimNew, Enqueued, NewJob, RecordPut

#: most jobs written in one store transaction (one request's jobs are never split)
MAX_JOBS = 256


@dataclass(frozen=True)
class _Request:
    jobs: list[NewJob]
    records: list[RecordPut]
    claim: ClaimNew | None


class Enqueuer(GroupWriter[_Request, list[Enqueued]]):
    """``await enqueue(...)`` (or :meth:`submit`) from any task of one event loop."""

    task_name = "cavra enqueues"

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    async def enqueue(
        self, jobs: Sequence[NewJob], *, records: Sequence[RecordPut] = (), claim: ClaimNew | None = None
    ) -> list[Enqueued]:
        return await asyncio.shield(self.request(jobs, records=records, claim=claim))

    def request(
        self, jobs: Sequence[NewJob], *, records: Sequence[RecordPut] = (), claim: ClaimNew | None = None
    ) -> asyncio.Future[list[Enqueued]]:
        """Queue the request for the writer; the future is its answer (it is written even if the caller
        stops waiting: see ``cavra.delivery.submit`` for what becomes of jobs it claimed then)."""
        return self.submit(_Request(list(jobs), list(records), claim))

    def batch_size(self, waiting: Sequence[_Request]) -> int:
        # one transaction per claim (a claim carries the providers paused when it was made)
        n = size = 0
        for request in waiting:
            if request.claim != waiting[0].claim or (n and size + len(request.jobs) > MAX_JOBS):
                break
            n += 1
            size += len(request.jobs)
        return n

    async def write(self, items: list[_Request]) -> list[list[Enqueued]]:
        jobs = [job for request in items for job in request.jobs]
        records = [put for request in items for put in request.records]
        claim = items[0].claim
        out = await asyncio.to_thread(self.store.enqueue_jobs, jobs, records=records, claim=claim)
        answers: list[list[Enqueued]] = []
        start = 0
        for request in items:
            answers.append(out[start : start + len(request.jobs)])
            start += len(request.jobs)
        return answers
