"""Job completions written together: the runs that finish while one store write is under way are written in
the next, in one transaction (at most :data:`MAX_BATCH` per transaction; :mod:`cavra.delivery.groupwrite`).

A completion is the run's delivery record plus the job's new state (see ``Store.complete_jobs``). If a
multi-item write fails, each item is written alone, so one bad item cannot fail the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cavra.delivery.groupwrite import GroupWriter
from cavra.store import Store, StoredDelivery
from cavra.store.base import CompletionNote
from cavra.store.jobs import Job, JobOutcome

#: most job completions written in one store transaction
MAX_BATCH = 64

Done = tuple[StoredDelivery, Job, bool]


@dataclass(frozen=True)
class _Finished:
    job_id: str
    record: dict[str, Any]
    outcome: JobOutcome
    note: CompletionNote | None


class Completer(GroupWriter[_Finished, Done]):
    """``await complete(...)`` from any run of one event loop, so one completer can serve many workers of
    a loop: the API's inline runs of concurrent requests share one, and their completions share
    transactions."""

    def __init__(self, store: Store, owner: str) -> None:
        super().__init__()
        self.store = store
        self.owner = owner
        self.task_name = f"cavra completions {owner}"

    async def complete(
        self, job_id: str, record: dict[str, Any], outcome: JobOutcome, note: CompletionNote | None = None
    ) -> Done:
        """Queue the run for the writer and wait for it to be stored: (stored record, job, lease held);
        ``note`` runs in the same transaction (see ``Store.complete_jobs``)."""
        return await asyncio.shield(self.submit(_Finished(job_id, record, outcome, note)))

    def batch_size(self, waiting: Sequence[_Finished]) -> int:
        return MAX_BATCH

    async def write(self, items: list[_Finished]) -> list[Done]:
        notes = {f.job_id: f.note for f in items if f.note is not None}
        rows = [(f.job_id, f.record, f.outcome) for f in items]
        return await asyncio.to_thread(self.store.complete_jobs, self.owner, rows, notes=notes)
