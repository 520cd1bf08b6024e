"""History filter helpers for the console: times as a browser's form sends them, and filters that
contradict each other (said so, instead of showing an empty page)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request

from cavra.app import METADATA_KINDS
from cavra.history import MAX_LIMIT

DEFAULT_LIMIT = 25
MAX_TEXT = 200
MAX_CURSOR = 512
STATUSES = ("delivered", "failed", "pending")


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


@dataclass(frozen=True)
class HistoryForm:
    """The history filters as the form holds them (empty text means "any") and what is wrong with them."""

    provider: str = ""
    event_type: str = ""
    success: str = ""
    status: str = ""
    metadata_kind: str = ""
    event_id: str = ""
    subject_id: str = ""
    integration_id: str = ""
    destination: str = ""
    since: str = ""
    until: str = ""
    limit: int = DEFAULT_LIMIT
    cursor: str = ""
    problems: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, request: Request, *, kinds: bool) -> HistoryForm:
        q = request.query_params
        problems: list[str] = []

        def text(name: str, most: int = MAX_TEXT) -> str:
            value = (q.get(name) or "").strip()
            if len(value) > most:
                problems.append(f"{name}: at most {most} characters")
                return ""
            return value

        def choice(name: str, allowed: tuple[str, ...]) -> str:
            value = text(name)
            if value and value not in allowed:
                problems.append(f"{name}: must be one of {', '.join(allowed)}")
                return ""
            return value

        limit = DEFAULT_LIMIT
        raw_limit = text("limit")
        if raw_limit:
            if raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_LIMIT:
                limit = int(raw_limit)
            else:
                problems.append(f"limit: a whole number from 1 to {MAX_LIMIT}")

        def moment(name: str) -> str:
            value = text(name)
            if value and parse_moment(value) is None:
                problems.append(f"{name}: not a time (e.g. 2026-05-01T10:00 or 2026-05-01T10:00:00Z; UTC)")
                return ""
            return value

        form = cls(
            provider=text("provider"),
            event_type=text("event_type"),
            success=choice("success", ("true", "false")),
            status=choice("status", STATUSES),
            metadata_kind=choice("metadata_kind", METADATA_KINDS) if kinds else "",
            event_id=text("event_id"),
            subject_id=text("subject_id"),
            integration_id=text("integration_id"),
            destination=text("destination"),
            since=moment("since"),
            until=moment("until"),
            limit=limit,
            cursor=text("cursor", MAX_CURSOR),
            problems=problems,
        )
        problems.extend(contradictions(form))
        return form

    def params(self) -> dict[str, Any]:
        """The filters as query parameters (without the cursor), for links to other pages."""
        given = asdict(self)
        del given["cursor"], given["problems"]
        if given["limit"] == DEFAULT_LIMIT:
            del given["limit"]
        return given

    def filters(self) -> dict[str, Any]:
        """The filters as the façade takes them."""
        out: dict[str, Any] = {"limit": self.limit}
        for name in ("provider", "event_type", "status", "metadata_kind", "cursor", "event_id"):
            value = getattr(self, name)
            if value:
                out[name] = value
        for name in ("subject_id", "integration_id", "destination"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        for name in ("since", "until"):
            if getattr(self, name):
                out[name] = parse_moment(getattr(self, name))
        if self.success:
            out["success"] = self.success == "true"
        return out
