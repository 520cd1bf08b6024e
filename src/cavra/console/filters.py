"""History filter helpers for the console: times as a browser's form sends them, and filters that
contradict each other (said so, instead of showing an empty page)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


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
