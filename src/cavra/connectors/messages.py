"""What people read, as each ChatOps/ITSM connector (and the webhook's extra fields) would render it for
one event and destination: for ``cavra routes test`` and for checking templates when the config loads.
A Jira or ServiceNow destination with a ``comment`` / ``work_notes`` template also shows the comment or
work note a later delivery of the event would add.

Pure, like the connectors: it calls their own rendering functions (with the destination's templates), and
says whether the message keeps the provider's limits (Slack's Block Kit limits, Teams' card size).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cavra.connectors import slack, teams, webhook
from cavra.connectors.base import ConnectorSettings
from cavra.connectors.chatlimits import slack_problem
from cavra.connectors.jira.content import dedup_label, templated_comment_body, templated_issue_fields
from cavra.connectors.jira.settings import JiraSettings
from cavra.connectors.servicenow.settings import (
    ServiceNowSettings,
    templated_record_fields,
    templated_work_note,
)

#: providers whose rendering :func:`rendered` shows
RENDERED = ("slack", "teams", "jira", "servicenow", "webhook")


def rendered(
    provider: str, event: Mapping[str, Any], settings: ConnectorSettings, delivery_key: str, now: float = 0.0
) -> dict[str, Any] | None:
    """``{message, limits, template_warning?}`` for ``provider``, or ``None`` for a provider whose
    requests carry the event as data (SIEM, endpoint management). ``limits`` is ``ok`` or why the
    provider would refuse the message."""
    message: Any
    warning: str | None
    limits = "ok"
    if provider == "slack" and isinstance(settings, slack.SlackSettings):
        message, warning = slack.templated_message(event, settings)
        limits = slack_problem(message) or "ok"
    elif provider == "teams" and isinstance(settings, teams.TeamsSettings):
        body, warning = teams.templated_body(event, settings)
        message = json.loads(body)
        if len(body) > teams.MAX_BYTES:
            limits = f"the card is {len(body)} bytes, over Teams' limit of {teams.MAX_BYTES}"
    elif provider == "jira" and isinstance(settings, JiraSettings):
        label = dedup_label(delivery_key)
        fields, warning = templated_issue_fields(event, settings, label)
        message = {"summary": fields["summary"], "description": fields["description"]}
        if settings.templates is not None and settings.templates.has("comment"):
            key = f"{settings.project_key}-1"  # the issue a later delivery would comment on
            message["comment"], late = templated_comment_body(event, settings, label, now, key)
            warning = warning or late
    elif provider == "servicenow" and isinstance(settings, ServiceNowSettings):
        record, warning = templated_record_fields(event, settings, delivery_key)
        message = {"short_description": record["short_description"], "description": record["description"]}
        if settings.templates is not None and settings.templates.has("work_notes"):
            number = "CHG0000001" if settings.table == "change_request" else "REC0000001"
            message["work_notes"], late = templated_work_note(event, settings, delivery_key, now, number)
            warning = warning or late
    elif provider == "webhook" and isinstance(settings, webhook.WebhookSettings):
        document, warning = webhook.templated_envelope(event, settings, now)
        message = {k: v for k, v in document.items() if k not in ("data", "timestamp")}
    else:
        return None
    out: dict[str, Any] = {"message": message, "limits": limits}
    if warning is not None:
        out["template_warning"] = warning
    return out
