"""The render context of a template, built lazily: only the names a template uses.

Each name has a builder from the event, the destination's name and provider, and its non-secret settings
(captured at load). :func:`context` builds the names asked for (all by default); a compiled template knows
the names it reads (:func:`jinja2.meta.find_undeclared_variables`, at load), so a render builds only those
(``event_json``, an indented dump of the event, is built only for a template that prints it). A template
can only reach a value by naming it, so what it does not name it could never see.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cavra.connectors import render
from cavra.events import event_id_of

Builder = Callable[[Mapping[str, Any], str, str, Mapping[str, Any]], Any]


def chat_facts(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The facts of a chat message: the summary without the event id, plus the severity if missing."""
    lines = [(label, value) for label, value in render.summary_lines(event) if label != "Event id"]
    if not any("severity" in label.lower() for label, _ in lines):
        lines.append(("Severity", render.severity(event)))
    return lines


def _subject(event: Mapping[str, Any]) -> dict[str, str]:
    from cavra.routing import subject_of  # routing imports the connectors, which import this

    kind, ident = subject_of(event)
    return {"kind": kind, "id": ident}


BUILDERS: dict[str, Builder] = {
    "event": lambda e, d, p, s: json.loads(json.dumps(dict(e), default=str)),
    "subject": lambda e, d, p, s: _subject(e),
    "destination": lambda e, d, p, s: {"name": d, "provider": p},
    # the captured settings themselves: plain values, and the sandbox refuses to change them
    "settings": lambda e, d, p, s: s,
    "event_id": lambda e, d, p, s: event_id_of(e),
    "event_type": lambda e, d, p, s: str(e.get("event_type", "")),
    "title": lambda e, d, p, s: render.title(e),
    "severity": lambda e, d, p, s: render.severity(e),
    "summary": lambda e, d, p, s: [list(pair) for pair in render.summary_lines(e)],
    "facts": lambda e, d, p, s: [list(pair) for pair in chat_facts(e)],
    "link": lambda e, d, p, s: render.link(e),
    "event_json": lambda e, d, p, s: json.dumps(
        dict(e), indent=2, sort_keys=True, ensure_ascii=False, default=str
    ),
}


def context(
    event: Mapping[str, Any],
    destination: str,
    provider: str,
    settings: Mapping[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Everything a template can see (or only ``names`` of it): the event and what is derived from it,
    the destination's name, provider and non-secret settings. Built from plain values only."""
    wanted = BUILDERS if names is None else [n for n in names if n in BUILDERS]
    return {name: BUILDERS[name](event, destination, provider, settings) for name in wanted}
