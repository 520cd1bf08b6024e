"""The ServiceNow emulator's records: tables, numbering, the journal, ``sysparm_query`` and rendering.

Values are stored as strings, as the Table API returns them. ``work_notes`` and ``comments`` are journal
fields: writing one appends a ``sys_journal_field`` row (readable through the Table API) and the field
itself reads back empty. Query terms on a field the table does not have are ignored, as ServiceNow does by
default (``glide.invalid_query.returns_no_rows`` is false), which is why a connector should check what
the lookup returned.
"""

from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CHANGE_FIELDS = (
    "number", "sys_id", "short_description", "description", "type", "category", "assignment_group",
    "impact", "risk", "urgency", "priority", "state", "correlation_id", "correlation_display",
    "justification", "implementation_plan", "backout_plan", "test_plan", "start_date", "end_date",
    "work_notes", "comments", "active", "approval", "chg_model", "sys_created_on", "sys_updated_on",
    "sys_created_by", "sys_updated_by", "sys_class_name",
)  # fmt: skip
INCIDENT_FIELDS = (
    "number", "sys_id", "short_description", "description", "category", "assignment_group", "impact",
    "urgency", "priority", "state", "correlation_id", "correlation_display", "work_notes", "comments",
    "active", "sys_created_on", "sys_updated_on", "sys_created_by", "sys_updated_by", "sys_class_name",
)  # fmt: skip
JOURNAL_FIELDS = ("sys_id", "element_id", "element", "name", "value", "sys_created_on", "sys_created_by")
TABLES: dict[str, tuple[str, ...]] = {
    "change_request": CHANGE_FIELDS,
    "incident": INCIDENT_FIELDS,
    "sys_journal_field": JOURNAL_FIELDS,
}
PREFIX = {"change_request": "CHG", "incident": "INC"}
REFERENCE_FIELDS = {"assignment_group": "sys_user_group"}
JOURNAL = ("work_notes", "comments")
DEFAULTS: dict[str, dict[str, str]] = {
    "change_request": {"type": "normal", "state": "-5", "impact": "3", "risk": "3", "urgency": "3",
                       "priority": "4", "active": "true", "approval": "not requested"},
    "incident": {"state": "1", "impact": "3", "urgency": "3", "priority": "5", "active": "true"},
}  # fmt: skip
DISPLAY = {
    "state": {"-5": "New", "-4": "Assess", "-3": "Authorize", "-2": "Scheduled", "-1": "Implement",
              "0": "Review", "3": "Closed", "4": "Canceled", "1": "New", "2": "In Progress"},
    "impact": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "risk": {"1": "Very High", "2": "High", "3": "Moderate", "4": "Low"},
    "type": {"normal": "Normal", "standard": "Standard", "emergency": "Emergency"},
}  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


@dataclass
class Store:
    """Records per table (each a dict of strings), numbered ``CHG0030001``, ``INC0010001``, …"""

    user: str = "admin"
    tables: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {t: [] for t in TABLES})
    counters: dict[str, int] = field(default_factory=lambda: {"change_request": 30000, "incident": 10000})

    def insert(self, table: str, values: dict[str, Any], *, user: str) -> tuple[dict[str, str], list[str]]:
        """Insert a record; returns it and the fields that were ignored (unknown or read-only)."""
        known = TABLES[table]
        record = {name: "" for name in known}
        record.update(DEFAULTS.get(table, {}))
        ignored = [k for k in values if k not in known or k in ("sys_id", "number")]
        record.update({k: _text(v) for k, v in values.items() if k not in ignored and k not in JOURNAL})
        record["sys_id"] = uuid.uuid4().hex
        if table in PREFIX:
            self.counters[table] += 1
            record["number"] = f"{PREFIX[table]}{self.counters[table]:07d}"
        stamp = _now()
        record.update(sys_created_on=stamp, sys_updated_on=stamp, sys_created_by=user, sys_updated_by=user)
        if "sys_class_name" in record:
            record["sys_class_name"] = table
        self.tables[table].append(record)
        self._journal(table, record, values, user)
        return record, ignored

    def update(self, table: str, record: dict[str, str], values: dict[str, Any], *, user: str) -> None:
        known = TABLES[table]
        for k, v in values.items():
            if k in known and k not in JOURNAL and k not in ("sys_id", "number"):
                record[k] = _text(v)
        record.update(sys_updated_on=_now(), sys_updated_by=user)
        self._journal(table, record, values, user)

    def _journal(self, table: str, record: dict[str, str], values: dict[str, Any], user: str) -> None:
        for element in JOURNAL:
            text = _text(values.get(element))
            if element in TABLES[table] and text:
                self.tables["sys_journal_field"].append(
                    {"sys_id": uuid.uuid4().hex, "element_id": record["sys_id"], "element": element,
                     "name": table, "value": text, "sys_created_on": _now(), "sys_created_by": user}
                )  # fmt: skip

    def get(self, table: str, sys_id: str) -> dict[str, str] | None:
        return next((r for r in self.tables[table] if r["sys_id"] == sys_id), None)

    def query(self, table: str, sysparm_query: str) -> list[dict[str, str]]:
        """Records matching an encoded query: ``a=b^c!=d^eLIKEf^ORDERBYx^ORDERBYDESCy``."""
        known = set(TABLES[table])
        rows = list(self.tables[table])
        order: list[tuple[str, bool]] = []
        for term in (t for t in sysparm_query.split("^") if t):
            if term.startswith("ORDERBYDESC"):
                order.append((term[11:], True))
                continue
            if term.startswith("ORDERBY"):
                order.append((term[7:], False))
                continue
            for op in ("!=", "LIKE", "STARTSWITH", "="):
                name, sep, value = term.partition(op)
                if sep:
                    break
            else:
                continue  # not a condition ServiceNow would understand: ignored
            if name not in known:
                continue  # invalid field: ignored (ServiceNow's default)
            rows = [r for r in rows if _match(r.get(name, ""), op, value)]
        for name, desc in reversed(order):
            if name in known:
                rows.sort(key=operator.itemgetter(name), reverse=desc)
        return rows


def _match(have: str, op: str, want: str) -> bool:
    if op == "=":
        return have == want
    if op == "!=":
        return have != want
    if op == "LIKE":
        return want.lower() in have.lower()
    return have.lower().startswith(want.lower())


def render(
    base: str, table: str, record: dict[str, str], *, fields: list[str] | None, links: bool
) -> dict[str, Any]:
    """A record as the Table API returns it: strings, reference fields as ``{link, value}``."""
    shown: dict[str, Any] = {}
    for name, value in record.items():
        if fields and name not in fields:
            continue
        if name in JOURNAL:
            value = ""
        ref = REFERENCE_FIELDS.get(name)
        if ref and value and links:
            shown[name] = {"link": f"{base}/api/now/table/{ref}/{value}", "value": value}
        else:
            shown[name] = value
    return shown


def render_change(record: dict[str, str]) -> dict[str, Any]:
    """A record as the Change Management API returns it: ``{value, display_value}`` per field."""
    return {
        name: {"value": value, "display_value": DISPLAY.get(name, {}).get(value, value)}
        for name, value in record.items()
        if name not in JOURNAL
    }
