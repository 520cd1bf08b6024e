"""What the Jira connector writes: the dedup label, the summary, the description and comments (each
with the destination's templates, when it has them).

Cloud (REST v3) rich text is Atlassian Document Format; Data Center (REST v2) takes wiki markup. Both carry
the same facts (:func:`cavra.connectors.render.summary_lines`), a link when the event has one, and the event
itself as JSON when it is small enough to be readable in a ticket.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cavra.connectors import render
from cavra.connectors.jira.settings import JiraSettings
from cavra.templates import TemplateFailure

#: Jira refuses summaries of 255 characters or more
MAX_SUMMARY = 254
#: the event is attached as JSON only up to this size (the description field holds 32 767 characters)
MAX_EVENT_JSON = 8000
#: Jira's description field holds 32 767 characters
MAX_DESCRIPTION = 32_767
#: a comment body is refused over 32 767 characters (docs/provider-facts.md)
MAX_COMMENT = 32_767
_WIKI_SPECIAL = re.compile(r"([\\{}\[\]*_|^~+\-#!?])")


def dedup_label(delivery_key: str) -> str:
    """The label that identifies this event at this target: ``cavra-<16 hex>``, no spaces."""
    return "cavra-" + hashlib.sha256(delivery_key.encode("utf-8")).hexdigest()[:16]


def summary(event: Mapping[str, Any]) -> str:
    """One line under 255 characters (Jira rejects newlines and longer summaries)."""
    text = " ".join(render.title(event).split())
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def _event_json(event: Mapping[str, Any]) -> str | None:
    text = json.dumps(dict(event), indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_EVENT_JSON else None


def stamp(now: float) -> str:
    """When a comment says the event was delivered again (``delivered_at`` in its template)."""
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- Atlassian Document Format (Cloud, v3) ------------------------------------------------------------------
def _text(text: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    if marks:
        node["marks"] = list(marks)
    return node


def _paragraph(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": [n for n in nodes if n.get("text")]}


def _facts_adf(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = [
        {
            "type": "listItem",
            "content": [_paragraph(_text(f"{label}: ", {"type": "strong"}), _text(value or "-"))],
        }
        for label, value in render.summary_lines(event)
    ]
    blocks: list[dict[str, Any]] = [{"type": "bulletList", "content": items}] if items else []
    url = render.link(event)
    if url:
        blocks.append(_paragraph(_text("Details: "), _text(url, {"type": "link", "attrs": {"href": url}})))
    return blocks


def adf_description(event: Mapping[str, Any], label: str) -> dict[str, Any]:
    content = [
        _paragraph(_text("CAVRA governance event, delivered by CAVRA Connectors.")),
        *_facts_adf(event),
    ]
    raw = _event_json(event)
    if raw is not None:
        content.append({"type": "codeBlock", "attrs": {"language": "json"}, "content": [_text(raw)]})
    content.append(_paragraph(_text(f"Deduplication label: {label}", {"type": "code"})))
    return {"type": "doc", "version": 1, "content": content}


def adf_comment(event: Mapping[str, Any], label: str, now: float) -> dict[str, Any]:
    intro = f"CAVRA delivered this event again at {stamp(now)} (label {label}); no new issue was created."
    return {"type": "doc", "version": 1, "content": [_paragraph(_text(intro)), *_facts_adf(event)]}


# -- wiki markup (Data Center, v2) --------------------------------------------------------------------------
def _wiki_escape(text: str) -> str:
    return _WIKI_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _facts_wiki(event: Mapping[str, Any]) -> list[str]:
    lines = [
        f"* *{_wiki_escape(label)}:* {_wiki_escape(value) or '-'}"
        for label, value in render.summary_lines(event)
    ]
    url = render.link(event)
    if url:
        lines.append(f"Details: [{url.replace(']', '%5D').replace('|', '%7C')}]")
    return lines


def wiki_description(event: Mapping[str, Any], label: str) -> str:
    lines = ["CAVRA governance event, delivered by CAVRA Connectors.", "", *_facts_wiki(event)]
    raw = _event_json(event)
    if raw is not None:
        lines += ["", "{code:json}", raw.replace("{code", "{ code"), "{code}"]
    lines += ["", f"Deduplication label: {{{{{label}}}}}"]
    return "\n".join(lines)


def wiki_comment(event: Mapping[str, Any], label: str, now: float) -> str:
    intro = f"CAVRA delivered this event again at {stamp(now)} (label {label}); no new issue was created."
    return "\n".join([intro, "", *_facts_wiki(event)])


# -- request bodies ---------------------------------------------------------------------------------------
def issue_fields(event: Mapping[str, Any], settings: JiraSettings, label: str) -> dict[str, Any]:
    """The ``fields`` of the create request."""
    fields: dict[str, Any] = dict(settings.custom_fields)
    fields.update(
        project={"key": settings.project_key},
        issuetype={"name": settings.issue_type},
        summary=summary(event),
        description=adf_description(event, label)
        if settings.deployment == "cloud"
        else wiki_description(event, label),
        labels=list(dict.fromkeys([*settings.labels, label])),
    )
    priority = settings.priority_for(render.severity(event))
    if priority:
        fields["priority"] = {"name": priority}
    return fields


def text_adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: one paragraph per blank-line-separated block, hard breaks between
    its lines."""
    content = []
    for block in (b for b in text.split("\n\n") if b.strip()):
        nodes: list[dict[str, Any]] = []
        for n, line in enumerate(block.split("\n")):
            if n:
                nodes.append({"type": "hardBreak"})
            if line:
                nodes.append(_text(line))
        content.append({"type": "paragraph", "content": nodes})
    return {"type": "doc", "version": 1, "content": content}


def _templated_description(text: str, settings: JiraSettings) -> Any:
    if settings.deployment != "cloud":
        return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"
    if text.lstrip().startswith("{"):  # an ADF document; anything else is text
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("type") == "doc" and isinstance(doc.get("content"), list):
            return doc
    return text_adf(text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…")


def templated_issue_fields(
    event: Mapping[str, Any], settings: JiraSettings, label: str
) -> tuple[dict[str, Any], str | None]:
    """The create request's ``fields`` with the destination's templates (``summary``, ``description``)
    applied, and a warning when they could not be (then the default fields are sent)."""
    fields = issue_fields(event, settings, label)
    compiled = settings.templates
    if compiled is None:
        return fields, None
    try:
        out = dict(fields)
        bound = compiled.bind(event, dedup_label=label)
        if compiled.has("summary"):
            text = " ".join(bound.render("summary").split())
            if not text:
                raise TemplateFailure("templates: summary rendered empty")
            out["summary"] = text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"
        if compiled.has("description"):
            rendered = bound.render("description")
            out["description"] = _templated_description(rendered, settings)
    except TemplateFailure as exc:
        return fields, f"{exc}; the default rendering was sent"
    return out, None


def comment_body(event: Mapping[str, Any], settings: JiraSettings, label: str, now: float) -> Any:
    return (
        adf_comment(event, label, now) if settings.deployment == "cloud" else wiki_comment(event, label, now)
    )


def _templated_comment(text: str, settings: JiraSettings) -> Any:
    """The rendered ``comment`` as a comment body: wiki text on Data Center; on Cloud an ADF document
    as rendered (refused over :data:`MAX_COMMENT` characters of JSON), or text made ADF."""
    if not text.strip():
        raise TemplateFailure("templates: comment rendered empty")
    clipped = text if len(text) <= MAX_COMMENT else text[: MAX_COMMENT - 1] + "…"
    if settings.deployment != "cloud":
        return clipped
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("type") == "doc" and isinstance(doc.get("content"), list):
            size = len(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
            if size > MAX_COMMENT:
                raise TemplateFailure(
                    f"templates: the comment is {size} characters of ADF, over Jira's limit of {MAX_COMMENT}"
                )
            return doc
    return text_adf(clipped)


def templated_comment_body(
    event: Mapping[str, Any], settings: JiraSettings, label: str, now: float, key: str
) -> tuple[Any, str | None]:
    """The comment body with the destination's ``comment`` template applied, and a warning when it could
    not be (then the default comment is sent). ``key`` is the issue's key, for the template."""
    default = comment_body(event, settings, label, now)
    compiled = settings.templates
    if compiled is None or not compiled.has("comment"):
        return default, None
    try:
        text = compiled.render("comment", event, dedup_label=label, delivered_at=stamp(now), issue_key=key)
        return _templated_comment(text, settings), None
    except TemplateFailure as exc:
        return default, f"{exc}; the default rendering was sent"
