"""Readable renderings of CAVRA events, shared by the ChatOps and ITSM connectors.

The evidence bundle (``cavra.evidence_bundle``) gets its own facts; release and publication events theirs;
any other event falls back to its type, session, id and a few scalar fields with readable labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cavra.events import EVIDENCE_BUNDLE, SEVERITIES

_TITLES = {
    EVIDENCE_BUNDLE: "CAVRA evidence bundle",
    "cavra.release.promotion_audit": "CAVRA promotion audit",
    "cavra.release.rollback_execution": "CAVRA rollback execution",
    "cavra.endpoint_management.publication": "CAVRA endpoint-management publication",
}

_BUNDLE_FIELDS = (
    ("session_id", "Session"),
    ("decision_count", "Decisions"),
    ("blocked_count", "Blocked"),
    ("approval_required_count", "Approval required"),
    ("max_severity", "Max severity"),
)

#: a grouped message (cavra.grouping.message): it carries its own title and facts
GROUP_EVENT_TYPE = "cavra.notification_group"

_SKIP = {"event_type", "event_id", "session_id", "schema_version", "product"}
_MAX_GENERIC = 8


def severity(event: Mapping[str, Any]) -> str:
    """The event's severity name (``info`` when absent or unknown)."""
    for key in ("max_severity", "severity"):
        value = event.get(key)
        if isinstance(value, str) and value.lower() in SEVERITIES:
            return value.lower()
    if "rollback" in str(event.get("event_type", "")):
        return "critical"
    return "info"


def title(event: Mapping[str, Any]) -> str:
    event_type = str(event.get("event_type") or "event")
    given = event.get("group_title")
    if event_type == GROUP_EVENT_TYPE and isinstance(given, str) and given:
        return given
    base = _TITLES.get(event_type, f"CAVRA event {event_type}")
    subject = event.get("session_id") or event.get("execution_id") or event.get("export_id")
    return f"{base}: {subject}" if subject else base


def _label(key: str) -> str:
    return key.replace("_", " ").strip().capitalize()


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, str)):
        text = str(value)
        return text if len(text) <= 300 else text[:299] + "…"
    return None


def summary_lines(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) facts for a message or ticket, most important first."""
    if event.get("event_type") == GROUP_EVENT_TYPE and isinstance(event.get("group_facts"), list):
        facts = [(str(f[0]), str(f[1])) for f in event["group_facts"] if isinstance(f, list) and len(f) == 2]
        return [*facts, ("Event id", str(event.get("event_id", "")))]
    lines: list[tuple[str, str]] = [("Event", str(event.get("event_type", "")))]
    if event.get("event_type") == EVIDENCE_BUNDLE:
        for key, label in _BUNDLE_FIELDS:
            if key in event and (text := _scalar(event[key])) is not None:
                lines.append((label, text))
    else:
        if event.get("session_id"):
            lines.append(("Session", str(event["session_id"])))
        count = 0
        for key, value in event.items():
            if key in _SKIP or count >= _MAX_GENERIC:
                continue
            text = _scalar(value)
            if text is None:
                continue
            lines.append((_label(key), text))
            count += 1
    if event.get("event_id"):
        lines.append(("Event id", str(event["event_id"])))
    return lines


def link(event: Mapping[str, Any]) -> str | None:
    """A link to more detail, when the event carries one (``url``, ``link`` or ``console_url``)."""
    for key in ("console_url", "url", "link"):
        value = event.get(key)
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            return value
    return None
