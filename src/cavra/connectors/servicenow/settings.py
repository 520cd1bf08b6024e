"""ServiceNow connector settings (the ``servicenow`` keys of docs/configuration.md) and what it writes.

Severity sets ``impact`` (1 High … 3 Low) and ``risk`` (2 High, 3 Moderate, 4 Low). ``correlation_id`` is the
delivery key (stable for this event and target): the dedup key; ``correlation_display`` names the event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import model_validator

from cavra.connectors import render
from cavra.connectors.base import ConnectorSettings
from cavra.errors import ConfigError
from cavra.events import event_id_of
from cavra.secrets import Secret
from cavra.templates import TemplateFailure

#: severity -> (impact, risk) choice values of change_request
IMPACT_RISK: dict[str, tuple[str, str]] = {
    "critical": ("1", "2"),
    "high": ("1", "2"),
    "medium": ("2", "3"),
    "low": ("3", "4"),
    "info": ("3", "4"),
}
MAX_SHORT_DESCRIPTION = 160
MAX_DESCRIPTION = 4000
MAX_CORRELATION = 100
#: a work note is cut here: 4000 is ServiceNow's default for multi-line text (docs/provider-facts.md)
MAX_WORK_NOTES = 4000
_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,79}$")


class ServiceNowSettings(ConnectorSettings):
    """One way to authenticate: Basic (``username`` + ``password``), a Bearer ``token`` obtained outside
    CAVRA, or OAuth client credentials (``client_id`` + ``client_secret``, exchanged at
    ``{url}/oauth_token.do``); Table API (default) or Change API."""

    username: str | None = None
    password: Secret | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    api: Literal["table", "change"] = "table"
    table: str = "change_request"
    type: Literal["normal", "standard", "emergency"] = "normal"
    category: str | None = None
    assignment_group: str | None = None

    @property
    def oauth_client(self) -> bool:
        """Whether the connector fetches its own token (OAuth client credentials)."""
        return self.client_secret is not None

    @model_validator(mode="after")
    def _check(self) -> ServiceNowSettings:
        if self.url is None:
            raise ConfigError(
                "servicenow: url is required (the instance base, e.g. https://acme.service-now.com)"
            )
        self._check_credentials()
        if not _TABLE.match(self.table):
            raise ConfigError(f"servicenow: table {self.table!r} is not a table name (e.g. change_request)")
        if self.api == "change":
            if self.table != "change_request":
                raise ConfigError(
                    "servicenow: api change writes change_request; remove table or use api table"
                )
            if self.type == "standard":
                raise ConfigError(
                    "servicenow: type standard needs a standard change template; use api table for it"
                )
        return self

    def _check_credentials(self) -> None:
        if self.client_id is not None and not self.client_id.strip():
            raise ConfigError("servicenow: client_id must not be empty")
        if self.client_id and self.client_secret is None:
            raise ConfigError("servicenow: client_secret is required with client_id (use client_secret_env)")
        if self.client_secret is not None and not self.client_id:
            raise ConfigError("servicenow: client_id is required with client_secret")
        given = [
            name
            for name, value in (
                ("password", self.password),
                ("token", self.token),
                ("client_secret", self.client_secret),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise ConfigError(
                f"servicenow: give password (Basic), token (OAuth Bearer) or client_id + client_secret "
                f"(OAuth client credentials), not both {given[0]} and {given[1]}"
            )
        if not given:
            raise ConfigError(
                "servicenow: credentials are required: username + password, token, "
                "or client_id + client_secret"
            )
        if self.password is not None and not self.username:
            raise ConfigError("servicenow: username is required with password")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def correlation_display(event: Mapping[str, Any]) -> str:
    return _clip(f"CAVRA {event_id_of(event)}", MAX_CORRELATION)


def _facts(event: Mapping[str, Any]) -> list[str]:
    lines = [f"{label}: {value}" for label, value in render.summary_lines(event)]
    url = render.link(event)
    if url:
        lines.append(f"Details: {url}")
    return lines


def description(event: Mapping[str, Any], correlation_id: str) -> str:
    lines = ["CAVRA governance event, delivered by CAVRA Connectors.", "", *_facts(event)]
    footer = ["", f"correlation_id: {correlation_id}"]
    text = "\n".join(lines + footer)
    raw = json.dumps(dict(event), indent=2, sort_keys=True, ensure_ascii=False, default=str)
    with_event = "\n".join([*lines, "", "Event:", raw, *footer])
    return with_event if len(with_event) <= MAX_DESCRIPTION else _clip(text, MAX_DESCRIPTION)


def stamp(now: float) -> str:
    """When a work note says the event was delivered again (``delivered_at`` in its template)."""
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def work_note(event: Mapping[str, Any], correlation_id: str, now: float) -> str:
    intro = (
        f"CAVRA delivered this event again at {stamp(now)} (correlation_id {correlation_id}); "
        "no new record was created."
    )
    return _clip("\n".join([intro, "", *_facts(event)]), MAX_WORK_NOTES)


def templated_work_note(
    event: Mapping[str, Any], settings: ServiceNowSettings, correlation_id: str, now: float, number: str
) -> tuple[str, str | None]:
    """The work note with the destination's ``work_notes`` template applied (cut to
    :data:`MAX_WORK_NOTES`), and a warning when it could not be (then the default note is sent).
    ``number`` is the record's number, for the template."""
    default = work_note(event, correlation_id, now)
    compiled = settings.templates
    if compiled is None or not compiled.has("work_notes"):
        return default, None
    try:
        text = compiled.render(
            "work_notes", event, correlation_id=correlation_id, delivered_at=stamp(now), number=number
        )
        if not text.strip():  # ServiceNow adds no journal entry for an empty note
            raise TemplateFailure("templates: work_notes rendered empty")
    except TemplateFailure as exc:
        return default, f"{exc}; the default rendering was sent"
    return _clip(text, MAX_WORK_NOTES), None


def templated_record_fields(
    event: Mapping[str, Any], settings: ServiceNowSettings, correlation_id: str
) -> tuple[dict[str, str], str | None]:
    """The new record's fields with the destination's templates (``short_description``, ``description``)
    applied, and a warning when they could not be (then the default fields are sent)."""
    fields = record_fields(event, settings, correlation_id)
    compiled = settings.templates
    if compiled is None:
        return fields, None
    try:
        out = dict(fields)
        bound = compiled.bind(event, correlation_id=correlation_id)
        if compiled.has("short_description"):
            text = " ".join(bound.render("short_description").split())
            if not text:
                raise TemplateFailure("templates: short_description rendered empty")
            out["short_description"] = _clip(text, MAX_SHORT_DESCRIPTION)
        if compiled.has("description"):
            text = bound.render("description")
            out["description"] = _clip(text, MAX_DESCRIPTION)
    except TemplateFailure as exc:
        return fields, f"{exc}; the default rendering was sent"
    return out, None


def record_fields(
    event: Mapping[str, Any], settings: ServiceNowSettings, correlation_id: str
) -> dict[str, str]:
    """The fields of the new record; ``type`` for a change request (Table API and model-based Change API)."""
    impact, risk = IMPACT_RISK[render.severity(event)]
    fields = {
        "short_description": _clip(" ".join(render.title(event).split()), MAX_SHORT_DESCRIPTION),
        "description": description(event, correlation_id),
        "impact": impact,
        "risk": risk,
        "correlation_id": correlation_id,
        "correlation_display": correlation_display(event),
    }
    if settings.table == "change_request":
        fields["type"] = settings.type
    if settings.category:
        fields["category"] = settings.category
    if settings.assignment_group:
        fields["assignment_group"] = settings.assignment_group
    return fields
