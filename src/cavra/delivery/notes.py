"""Completion notes: what a job's completion writes besides its delivery record, named in the job.

A job's payload may name a note (``payload["on_complete"]``, e.g. ``"integration"``): a function
``note(records, stored)`` that the job's completion runs in its own transaction, right after the run's
record is stored (e.g. the outcome on the integration record), so that the record and the note are
written together or not at all, whichever worker runs the job.

The notes a process knows are the ones registered, explicitly, in its :class:`NoteRegistry` (the service
layer builds it: :func:`cavra.governance.notes.delivery_runtime`); nothing registers itself on import. A job
naming a note its worker does not know is not sent: it fails with :class:`UnknownNote`'s reason, naming the
note (a note that silently did not run would leave its record stale).
"""

from __future__ import annotations

from collections.abc import Iterator

from cavra.errors import CavraError
from cavra.store.base import CompletionNote
from cavra.store.jobs import Job


class UnknownNote(CavraError):
    """A job names a completion note that the worker's runtime does not know."""


class NoteRegistry:
    """Completion note name -> note; filled by whoever builds the delivery runtime."""

    __slots__ = ("_notes",)

    def __init__(self) -> None:
        self._notes: dict[str, CompletionNote] = {}

    def register(self, name: str, note: CompletionNote) -> None:
        """Run ``note(records, stored)`` in the completion of each run of a job whose payload names
        ``on_complete=name``. A name is registered once (a second, different note is a bug)."""
        if not name:
            raise ValueError("a completion note needs a name")
        known = self._notes.get(name)
        if known is not None and known is not note:
            raise ValueError(f"completion note {name!r} is registered already")
        self._notes[name] = note

    def __contains__(self, name: object) -> bool:
        return name in self._notes

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._notes))

    def name_of(self, job: Job) -> str:
        """The note ``job`` names ('' for none)."""
        return str(job.payload.get("on_complete") or "")

    def for_job(self, job: Job) -> CompletionNote | None:
        """The note ``job``'s completion runs (``None``: it names none); :class:`UnknownNote` when it names
        one that is not registered."""
        name = job.payload.get("on_complete")
        if not name:
            return None
        note = self._notes.get(str(name))
        if note is None:
            raise UnknownNote(self.unknown(job))
        return note

    def unknown(self, job: Job) -> str:
        """Why ``job`` is not run: it names a note that is not registered."""
        known = ", ".join(self) or "none"
        return (
            f"job {job.id} names completion note {self.name_of(job)!r}, which this worker does not know "
            f"(known notes: {known}); run it with the service's delivery runtime "
            "(cavra.governance.notes.delivery_runtime()) and replay it"
        )
