"""Job completions written together: the runs that finish while one store write is under way are written in
the next, in one transaction (at most :data:`MAX_BATCH` per transaction).

A completion is the run's delivery record plus the job's new state (see ``Store.complete_jobs``). If a
multi-item write fails, each item is written alone, so one bad item cannot fail the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from cavra.store import Store, StoredDelivery
from cavra.store.base import CompletionNote
from cavra.store.jobs import Job, JobOutcome

#: most job completions written in one store transaction
MAX_BATCH = 64

Done = tuple[StoredDelivery, Job, bool]


@dataclass
class _Finished:
    job_id: str
    record: dict[str, Any]
    outcome: JobOutcome
    note: CompletionNote | None
    done: asyncio.Future[Done]


class Completer:
    """``await complete(...)`` from any run of one event loop; a writer task runs while completions wait
    (started by the first, ended when none is left), so one completer can serve many workers of a loop:
    the API's inline runs of concurrent requests share one, and their completions share transactions."""

    def __init__(self, store: Store, owner: str) -> None:
        self.store = store
        self.owner = owner
        self._finished: list[_Finished] = []
        self._writer: asyncio.Task[None] | None = None

    async def complete(
        self, job_id: str, record: dict[str, Any], outcome: JobOutcome, note: CompletionNote | None = None
    ) -> Done:
        """Queue the run for the writer and wait for it to be stored: (stored record, job, lease held);
        ``note`` runs in the same transaction (see ``Store.complete_jobs``)."""
        done: asyncio.Future[Done] = asyncio.get_running_loop().create_future()
        self._finished.append(_Finished(job_id, record, outcome, note, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name=f"cavra completions {self.owner}")
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self._finished:
                batch, self._finished = self._finished[:MAX_BATCH], self._finished[MAX_BATCH:]
                try:
                    await self._write(batch)
                except BaseException:  # cancelled (the loop is closing): no run is left waiting
                    for f in batch:
                        if not f.done.done():
                            f.done.cancel()
                    raise
        finally:
            self._writer = None  # a finished task keeps its loop alive

    async def _write(self, batch: list[_Finished]) -> None:
        items = [(f.job_id, f.record, f.outcome) for f in batch]
        notes = {f.job_id: f.note for f in batch if f.note is not None}
        try:
            results = await asyncio.to_thread(self.store.complete_jobs, self.owner, items, notes=notes)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].done.set_exception(exc)
                return
            for one in batch:  # one bad item must not fail the others: write them one by one
                await self._write([one])
            return
        for f, result in zip(batch, results, strict=True):
            f.done.set_result(result)
