"""The one event a group's flush sends: what people read instead of one message per event.

Its ``event_type`` is ``cavra.notification_group`` and its ``event_id`` the group's id (``grp_…``), so an
ITSM destination keeps one ticket per group: Jira's dedup label and ServiceNow's ``correlation_id`` derive
from it, and the first flush opens the issue (or change), later flushes comment on it (a work note).
``group_title`` and ``group_facts`` are what the connectors render (:mod:`cavra.connectors.render`): the
number of events, counts by event type and by severity, the worst severity, the first subjects with their
ids (``rre_prod``) and how many more, the first event ids, the group's labels and route.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from cavra.events import SEVERITIES
from cavra.grouping.state import GROUP_EVENT_TYPE
from cavra.routing.matchers import severity_of, subject_of
from cavra.store.groups import GroupMember

#: subjects and event ids named in a message (the rest are counted: "and K more")
FIRST_N = 10


def _more(names: Sequence[str], total: int) -> str:
    shown = ", ".join(names[:FIRST_N])
    rest = total - min(len(names), FIRST_N)
    return f"{shown} and {rest} more" if rest > 0 else shown


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in counter.most_common())


def _subjects(events: Sequence[Mapping[str, Any]]) -> tuple[list[str], int]:
    seen: dict[str, None] = {}
    for event in events:
        kind, sid = subject_of(event)
        if sid:
            seen.setdefault(f"{sid} ({kind})" if kind else sid, None)
    return list(seen), len(seen)


def group_event(
    group: Mapping[str, Any], members: Sequence[GroupMember], route: str | None
) -> dict[str, Any]:
    """The event a flush of ``group`` (the flush job's ``group`` payload) sends for ``members``."""
    events = [dict(m.body.get("event") or {}) for m in members]
    worst = SEVERITIES[max((severity_of(e) for e in events), default=0)]
    types = Counter(str(e.get("event_type") or "event") for e in events)
    severities = Counter(SEVERITIES[severity_of(e)] for e in events)
    subjects, n_subjects = _subjects(events)
    ids = [m.event_id for m in members]
    labels = group.get("labels") or {}
    flush = int(group.get("flush") or 1)
    noun = "event" if len(events) == 1 else "events"
    title = f"{len(events)} CAVRA {noun} ({worst})"
    if len(types) == 1:
        title += f": {next(iter(types))}"
    if flush > 1:
        title += f" · update {flush}"
    facts: list[list[str]] = [
        ["Events", str(len(events))],
        ["By event type", _counts(types)],
        ["By severity", _counts(severities)],
        ["Worst severity", worst],
    ]
    if subjects:
        facts.append(["Subjects", _more(subjects, n_subjects)])
    facts.append(["Event ids", _more(ids, len(ids))])
    if labels:
        facts.append(["Grouped by", ", ".join(f"{k}={v or '(empty)'}" for k, v in labels.items())])
    if route:
        facts.append(["Route", route])
    return {
        "event_type": GROUP_EVENT_TYPE,
        "event_id": str(group.get("group_id")),
        "max_severity": worst,
        "group_key": str(group.get("group_key")),
        "group_title": title,
        "group_facts": facts,
        "flush": flush,
        "member_count": len(events),
        "member_event_ids": ids,
    }
