"""Slack incoming-webhook connector: a Block Kit message with a ``text`` fallback (providers.md 5).

The webhook URL is the credential (``secret_url_path``): its path never appears in evidence. The message is
a header (the event's title), section fields (event type, session, decision/blocked/approval counts,
severity, …), a link when the event carries one, and a context line with the event id, every text
clipped to Block Kit's limits (header 150, field 2000, section 3000, 10 fields per section).

Slack answers in plain text. ``200 ok`` is the only success: a 200 with any other body (``invalid_token``,
…) is a failure. 400/403/404/410 are permanent and the reason names Slack's error string; 429 is retried
after ``Retry-After``; 5xx is retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import model_validator

from cavra.connectors import render
from cavra.connectors.base import (
    BaseConnector,
    ConnectorSettings,
    Context,
    Delivered,
    PreparedRequest,
    Reject,
    Response,
    Retry,
    Verdict,
)
from cavra.connectors.chatlimits import slack_problem
from cavra.connectors.classify import classify, retry_after
from cavra.connectors.spec import ProviderSpec
from cavra.errors import ConfigError
from cavra.events import event_id_of
from cavra.secretforms import clip as clip_text
from cavra.secretforms import clip_bytes
from cavra.secrets import Secret
from cavra.templates import TemplateFailure

MAX_HEADER = 150
MAX_FIELD = 2000
MAX_SECTION = 3000
MAX_FIELDS = 10
MAX_FALLBACK = 3000

#: what an operator should know about Slack's permanent errors
_HINTS = {
    "no_service": "the webhook was disabled, removed or never existed",
    "invalid_token": "the webhook was revoked",
    "channel_not_found": "the webhook's channel was deleted",
    "channel_is_archived": "the webhook's channel is archived",
    "action_prohibited": "a workspace policy forbids posting to the channel",
    "invalid_payload": "Slack refused the message body",
    "no_text": "the message had no text",
    "too_many_attachments": "more than 100 attachments",
}


class SlackSettings(ConnectorSettings):
    """``url``: the incoming webhook URL (``https://hooks.slack.com/services/T…/B…/…``), a secret."""

    @model_validator(mode="after")
    def _check(self) -> SlackSettings:
        if self.url is None:
            raise ConfigError("slack: url is required")
        return self


def escape(text: str) -> str:
    """Slack's mrkdwn control characters (``&``, ``<``, ``>``) as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut), never splitting an entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def facts(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The summary facts without the event id (it goes to the context line), plus severity if missing."""
    lines = [(label, value) for label, value in render.summary_lines(event) if label != "Event id"]
    if not any("severity" in label.lower() for label, _ in lines):
        lines.append(("Severity", render.severity(event)))
    return lines


def blocks(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Block Kit blocks for one event, within Slack's limits."""
    title = render.title(event)
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(title, MAX_HEADER), "emoji": True}}
    ]
    fields = [
        {"type": "mrkdwn", "text": clip(f"*{escape(label)}*\n{escape(value)}", MAX_FIELD)}
        for label, value in facts(event)
    ]
    for start in range(0, len(fields), MAX_FIELDS):
        out.append({"type": "section", "fields": fields[start : start + MAX_FIELDS]})
    url = render.link(event)
    if url is not None and "|" not in url and len(url) < MAX_SECTION - 40:
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{escape(url)}|Open in CAVRA>"}})
    context = f"Event id `{escape(event_id_of(event))}` · CAVRA Connectors"
    out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(context, MAX_SECTION)}]})
    return out


def fallback_text(event: Mapping[str, Any]) -> str:
    """The notification text: title, severity and the facts on one line."""
    summary = "; ".join(f"{label}: {value}" for label, value in facts(event))
    return clip(escape(f"{render.title(event)} [{render.severity(event)}] {summary}"), MAX_FALLBACK)


def message(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "text": fallback_text(event),
        "blocks": blocks(event),
        "unfurl_links": False,
        "unfurl_media": False,
    }


def templated_message(event: Mapping[str, Any], settings: SlackSettings) -> tuple[dict[str, Any], str | None]:
    """The message with the destination's templates (``text``, ``blocks``) applied, and a warning when
    they could not be (then the default message is sent): a render error or a message over Slack's limits.
    """
    compiled = settings.templates
    if compiled is None:
        return message(event), None
    try:
        bound = compiled.bind(event)
        # the default parts are built only for what the templates leave (and for a fallback)
        text = bound.render("text") if compiled.has("text") else fallback_text(event)
        shown = bound.render_json("blocks") if compiled.has("blocks") else blocks(event)
        msg = {"text": text, "blocks": shown, "unfurl_links": False, "unfurl_media": False}
        problem = slack_problem(msg)
        if problem is not None:
            raise TemplateFailure(f"templates: {problem}")
    except TemplateFailure as exc:
        return message(event), f"{exc}; the default rendering was sent"
    return msg, None


def url_secrets(url: str) -> tuple[Secret, ...]:
    """The credential parts of a webhook URL (``T…/B…/secret`` and the secret itself), for the redactor.

    The redactor already knows the whole URL; these let it scrub the path when an answer echoes it alone.
    """
    segments = [p for p in urlsplit(url).path.split("/") if p]
    found = {"/".join(segments[-3:]), segments[-1]} if segments else set()
    return tuple(Secret(part) for part in sorted(found) if len(part) >= 8)


def error_string(response: Response) -> str:
    """Slack's plain-text error string, bounded and on one line."""
    text = clip_bytes(response.body, 400).strip()
    first = text.splitlines()[0] if text else ""
    printable = "".join(ch for ch in first if ch.isprintable())
    return clip_text(printable, 120) or "(empty body)"


class SlackConnector(BaseConnector[SlackSettings]):
    """Post a Block Kit message to a Slack incoming webhook."""

    settings_model: ClassVar[type[ConnectorSettings]] = SlackSettings

    def build(self, event: Mapping[str, Any], settings: SlackSettings, ctx: Context) -> PreparedRequest:
        if settings.url is None:
            raise ConfigError("slack: url is required")
        msg, warning = templated_message(event, settings)
        body = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers: dict[str, Any] = dict(settings.headers)
        headers["Content-Type"] = "application/json; charset=utf-8"
        url = settings.url.reveal()
        return PreparedRequest(
            method="POST",
            url=url,
            headers=headers,
            body=body,
            new_secrets=url_secrets(url),
            warnings=() if warning is None else (warning,),
        )

    def judge(self, response: Response, settings: SlackSettings) -> Verdict:
        status = response.status
        error = error_string(response)
        if status == 200:
            if error == "ok":
                return Delivered(detail={"answer": "ok"})
            return Reject(f"Slack answered HTTP 200 with {error!r} instead of 'ok'", detail={"error": error})
        if status == 429:
            return Retry(f"HTTP 429 {error}: Slack rate limit", after=retry_after(response))
        if status in (400, 403, 404, 410):
            hint = _HINTS.get(error)
            reason = f"HTTP {status} {error}" + (f": {hint}" if hint else "")
            return Reject(reason, detail={"error": error})
        return classify(response, what=f"HTTP {status} {error}")


SPEC = ProviderSpec(
    name="slack",
    category="chatops",
    connector=SlackConnector,
    emulator="cavra.emulators.slack",
    rate_limit="1/4",
    secret_url_path=True,
    url_secret=True,
    example={"url_env": "SLACK_WEBHOOK_URL"},
    example_env={
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
    },
)
