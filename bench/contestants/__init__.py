"""Contestants of the alternating comparisons, and the harness that runs them round by round.

A :class:`Contestant` delivers a list of events to the sink and returns how many it delivered and the
seconds that took (set-up such as opening a session or a store is outside the window; the client's own
connection handling is inside it). Every request loop is bounded in count (the events given) and in time:
past its budget a contestant stops early and the run counts what it delivered (noted as partial).
:func:`alternate` runs every contestant once per round, in an order that rotates from round to round,
each on fresh events, and records events/s per run and the ratios per round.
"""

from __future__ import annotations

import abc
import logging
import time
import traceback
from collections.abc import Sequence
from typing import Any

from bench.common import Section, make_events

log = logging.getLogger("bench")


Measured = tuple[int, float]


class Contestant(abc.ABC):
    """One way of delivering events. ``skipped`` (with the reason) keeps it in the results, unmeasured."""

    key: str = ""
    label: str = ""

    def __init__(self) -> None:
        self.skipped: str | None = None
        self.note: str | None = None
        self.deadline = float("inf")

    def setup(self) -> None:  # noqa: B027 - optional
        """Prepare what the runs share (outside the measured window)."""

    @abc.abstractmethod
    def run(self, events: list[dict[str, Any]]) -> Measured:
        """Deliver the events (each answered 2xx, or raise) until done or past the deadline; return
        (events delivered, seconds the delivery took)."""

    def teardown(self) -> None:  # noqa: B027 - optional
        """Release what :meth:`setup` made."""

    def over_budget(self) -> bool:
        return time.monotonic() > self.deadline


def alternate(
    section: Section,
    contestants: Sequence[Contestant],
    *,
    events_total: int,
    rounds: int,
    run_budget: float,
    first_event: int = 0,
) -> None:
    """Run ``contestants`` alternating for ``rounds`` rounds of ``events_total // rounds`` events each."""
    per_run = max(1, events_total // rounds)
    for c in contestants:
        fig = section.figure(c.key, c.label, "events/s")
        if c.skipped is None:
            try:
                c.setup()
            except Exception as exc:  # a contestant that cannot start is reported, not fatal
                log.debug("setup of %s failed", c.key, exc_info=True)
                c.skipped = f"set-up failed: {type(exc).__name__}: {exc}"
        fig.skipped, fig.note = c.skipped, c.note
    next_event = first_event
    partial: dict[str, list[int]] = {}
    try:
        for r in range(rounds):
            order = list(contestants[r % len(contestants) :]) + list(contestants[: r % len(contestants)])
            values: dict[str, float] = {}
            for c in order:
                if c.skipped is not None:
                    continue
                events = make_events(per_run, start=next_event)
                next_event += per_run
                c.deadline = time.monotonic() + run_budget
                try:
                    delivered, seconds = c.run(events)
                except Exception as exc:
                    log.warning("%s failed in round %d: %s", c.key, r + 1, exc)
                    log.debug("%s", traceback.format_exc())
                    c.skipped = f"failed in round {r + 1}: {type(exc).__name__}: {exc}"
                    section.figures[c.key].skipped = c.skipped
                    continue
                values[c.key] = delivered / seconds
                section.figures[c.key].add(values[c.key])
                if delivered < per_run:
                    partial.setdefault(c.key, []).append(delivered)
                log.info(
                    "  round %d %-26s %9.0f events/s%s",
                    r + 1,
                    c.key,
                    values[c.key],
                    "" if delivered == per_run else f" (stopped at its time budget after {delivered})",
                )
            section.ratios_from_round(values)
    finally:
        for c in contestants:
            try:
                c.teardown()
            except Exception:
                log.debug("teardown of %s failed", c.key, exc_info=True)
            fig = section.figures[c.key]
            notes = [n for n in (fig.note or c.note,) if n]
            if c.key in partial:
                notes.append(
                    f"{len(partial[c.key])} of {rounds} runs stopped at the {run_budget:g} s budget after "
                    f"{min(partial[c.key])}-{max(partial[c.key])} of {per_run} events"
                )
            fig.note = "; ".join(notes) or None
