"""History filter helpers for the console: times as a browser's form sends them, and filters that
contradict each other (said so, instead of showing an empty page)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cavra.console.routes import HistoryForm


class Filters(Protocol):
    @property
    def success(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def since(self) -> str: ...
    @property
    def until(self) -> str: ...


def parse_moment(text: str) -> datetime | None:
    """``2026-05-01T10:00`` (a ``datetime-local`` field), ``2026-05-01 10:00:00Z`` or any ISO 8601 time;
    UTC when it names no offset. ``None`` when it is not a time."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def contradictions(form: Filters) -> list[str]:
    """Why no delivery can match these filters together (empty when some can)."""
    out: list[str] = []
    if form.success == "true" and form.status in ("failed", "pending"):
        out.append(
            f"delivered = yes contradicts status = {form.status}: a delivered delivery is never {form.status}"
        )
    if form.success == "false" and form.status == "delivered":
        out.append("delivered = no contradicts status = delivered")
    since = parse_moment(form.since) if form.since else None
    until = parse_moment(form.until) if form.until else None
    if since is not None and until is not None and since >= until:
        out.append("since must be before until: no time is at or after since and before until")
    return out


_LABELS = {"provider": ("provider", "providers"), "event_type": ("event type", "event_types")}


def resolve_search(
    form: HistoryForm, values: Mapping[str, Sequence[str]]
) -> tuple[HistoryForm, list[str], list[str]]:
    """Provider and event type matched case-insensitively and by prefix against the stored ``values``:
    (the form with the exact names, notes saying what was matched, problems when a prefix is ambiguous).
    A value nothing starts with is kept as typed (the page then says no delivery matches, and why)."""
    changes: dict[str, str] = {}
    notes: list[str] = []
    problems: list[str] = []
    for name, (label, key) in _LABELS.items():
        typed: str = getattr(form, name)
        if not typed:
            continue
        known = values.get(key) or []
        wanted = typed.casefold()
        exact = [k for k in known if k.casefold() == wanted]
        matches = exact or [k for k in known if k.casefold().startswith(wanted)]
        if len(matches) == 1:
            if matches[0] != typed:
                changes[name] = matches[0]
                notes.append(f"{label} {typed!r} matched {matches[0]}")
        elif len(matches) > 1:
            shown = ", ".join(matches[:10]) + (" …" if len(matches) > 10 else "")
            problems.append(
                f"{label} {typed!r} starts {len(matches)} {key.replace('_', ' ')}: {shown}; type more of it"
            )
        else:
            notes.append(f"no stored {label} starts with {typed!r}")
    if changes:
        form = replace(form, provider=changes.get("provider", form.provider))
        form = replace(form, event_type=changes.get("event_type", form.event_type))
    return form, notes, problems
