"""An operator's pause of a destination (or of every destination of a provider), and its resume.

A pause is its own state of the destination (``held_by``, ``held_at``, ``held_until`` in the shared
destination state every worker reads), apart from the provider's own ``Retry-After`` wait
(``paused_until``) and the circuit breaker: no Retry-After, breaker change or delivery ends it; only a
resume does (or ``held_until`` passing, when the pause was given an end). While it lasts no worker
claims the destination's jobs; they stay queued, and a resume lets them run. Each pause and resume is
stored as an audit record (:func:`cavra.governance.actions.record_action`) by the face that asked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cavra.errors import InputError
from cavra.governance.actions import MAX_HOLD
from cavra.store import Store
from cavra.store.base import iso, utc
from cavra.store.jobs import Destination

MAX_NAME = 64


def pause_view(dest: Destination | None, now: datetime | None = None) -> dict[str, Any] | None:
    """``{"by", "at", "until"}`` while an operator's pause lasts (``until`` ``None``: until resumed)."""
    if dest is None or not dest.held(now or datetime.now(UTC)):
        return None
    return {"by": dest.held_by, "at": iso(dest.held_at), "until": iso(dest.held_until)}


def _name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise InputError(f"destination: 1 to {MAX_NAME} characters")
    return name


def pause_destination(store: Store, name: str, *, who: str, until: datetime | None = None) -> dict[str, Any]:
    """Pause destination ``name`` (its jobs wait) until ``until`` or, with ``None``, until resumed."""
    name = _name(name)
    now = datetime.now(UTC)
    end = None if until is None else utc(until)
    if end is not None and end <= now:
        raise InputError("until: must be in the future")
    if end is not None and end - now > MAX_HOLD:
        raise InputError(f"until: at most {MAX_HOLD.days} days ahead (or none: until resumed)")

    def change(dest: Destination, at: datetime) -> dict[str, Any] | None:
        dest.held_by, dest.held_at, dest.held_until = who, at, end
        return pause_view(dest, at)

    view = store.update_destination(name, change)
    return {"destination": name, "paused": True, "pause": view}


def resume_destination(store: Store, name: str) -> dict[str, Any]:
    """End an operator's pause of ``name`` now (its queued jobs run again); ``was_paused`` says whether
    one lasted."""
    name = _name(name)

    def change(dest: Destination, at: datetime) -> bool:
        lasted = dest.held(at)
        dest.held_by = dest.held_at = dest.held_until = None
        return lasted

    lasted = store.update_destination(name, change)
    return {"destination": name, "paused": False, "was_paused": lasted}


def paused_destinations(store: Store) -> list[dict[str, Any]]:
    """Every destination an operator has paused now: ``{"destination", "by", "at", "until"}``."""
    now = datetime.now(UTC)
    out = []
    for dest in store.list_destinations():
        view = pause_view(dest, now)
        if view is not None:
            out.append({"destination": dest.provider, **view})
    return out
