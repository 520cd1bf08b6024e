"""Group commit for one event loop: items that any task hands in while one store write is under way are
written together in the next (one transaction for the batch), and each caller gets its own answer.

:class:`GroupWriter` is the mechanism: a writer task runs while items wait (started by the first, ended
when none is left, so a finished loop is not kept alive); if a write of several items fails, each is written
alone, so one item's error is its own; if the writer is cancelled (the loop is closing), its callers are
cancelled too, never left waiting. Subclasses say how the items of one batch are chosen and written
(:class:`cavra.delivery.completer.Completer`, :class:`cavra.delivery.enqueuer.Enqueuer`).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item, as in the generic's name
R = TypeVar("R")


class GroupWriter(abc.ABC, Generic[I, R]):
    #: the name of the writer task (for task dumps)
    task_name = "cavra group write"

    def __init__(self) -> None:
        self._waiting: list[tuple[I, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    def submit(self, item: I) -> asyncio.Future[R]:
        """Queue ``item``; the future is its answer. The item is written even if its caller stops
        waiting."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name=self.task_name)
        return done

    @abc.abstractmethod
    def batch_size(self, waiting: Sequence[I]) -> int:
        """How many of the waiting items, from the first, the next write takes (at least one)."""

    @abc.abstractmethod
    async def write(self, items: list[I]) -> list[R]:
        """Write the items in one store transaction; one answer per item, in order."""

    async def _drain(self) -> None:
        try:
            while self._waiting:
                n = max(1, self.batch_size([item for item, _done in self._waiting]))
                batch, self._waiting = self._waiting[:n], self._waiting[n:]
                try:
                    await self._write(batch)
                except BaseException:  # cancelled (the loop is closing): no caller is left waiting
                    for _item, done in batch:
                        if not done.done():
                            done.cancel()
                    raise
        finally:
            self._writer = None  # a finished task keeps its loop alive

    async def _write(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            answers = await self.write([item for item, _done in batch])
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            for one in batch:  # one item's error must not fail the others: write them one by one
                await self._write([one])
            return
        for (_item, done), answer in zip(batch, answers, strict=True):
            if not done.done():
                done.set_result(answer)
