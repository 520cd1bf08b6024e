"""Microsoft Teams connector: Workflows (Power Automate) webhooks, or the retired O365 connector.

Wire formats: providers.md section 6.

``card_format: adaptive`` (default) posts an Adaptive Card 1.4 in the Workflows message envelope
(``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", …}]}``):
a title coloured by severity, a FactSet with the event's facts, an "Open in CAVRA" action when the event
carries a link, and a subtle line with the event id. ``card_format: messagecard`` posts an O365
``MessageCard`` instead, and only to a legacy connector URL: Workflows support Adaptive Cards only (Microsoft
Learn, "Create and send messages", known issues); a MessageCard sent there is accepted (202) and never
posted, so the configuration is refused when it is loaded.

The URL is the credential (``secret_url_path``; the Workflows ``sig`` query value is redacted too).
Workflows answers 202 (200 also accepted): that only means the flow run was queued. The legacy connector
answers 200 with body ``1``; a 200 whose body mentions HTTP error 429 is its throttling and is retried; any
other 200 body is a failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import model_validator

from cavra.connectors import render
from cavra.connectors.base import (
    BaseConnector,
    ConnectorSettings,
    Context,
    Delivered,
    PayloadTooLarge,
    PreparedRequest,
    Reject,
    Response,
    Retry,
    Verdict,
)
from cavra.connectors.classify import classify
from cavra.connectors.spec import ProviderSpec
from cavra.errors import ConfigError
from cavra.events import event_id_of
from cavra.secretforms import clip as clip_text
from cavra.secretforms import clip_bytes
from cavra.secrets import Secret
from cavra.templates import TemplateFailure

ADAPTIVE = "application/vnd.microsoft.card.adaptive"
#: Teams refuses messages over about 28 KB
MAX_BYTES = 28_000
MAX_VALUE = 1000
MAX_TITLE = 200
#: the legacy connector's tightest rate window is 4 requests per second
LEGACY_THROTTLE_WAIT = 1.0

#: Adaptive Card text colours and MessageCard theme colours per severity
ADAPTIVE_COLOR = {
    "critical": "Attention",
    "high": "Attention",
    "medium": "Warning",
    "low": "Accent",
    "info": "Good",
}
THEME_COLOR = {"critical": "A4262C", "high": "D83B01", "medium": "FFB900", "low": "0078D4", "info": "107C10"}
_LEGACY_HOSTS = ("webhook.office.com", "outlook.office.com", "outlook.office365.com")


class TeamsSettings(ConnectorSettings):
    """``url`` (Workflows URL or legacy connector URL, a secret) and ``card_format``."""

    card_format: Literal["adaptive", "messagecard"] = "adaptive"

    @model_validator(mode="after")
    def _check(self) -> TeamsSettings:
        if self.url is None:
            raise ConfigError("teams: url is required")
        if self.card_format == "messagecard" and not is_legacy(self.url.reveal()):
            raise ConfigError(
                "teams: card_format messagecard needs a legacy connector URL (…/webhookb2/…); Workflows "
                "post Adaptive Cards only and silently drop a MessageCard: use card_format adaptive"
            )
        return self


def is_legacy(url: str) -> bool:
    """A retired Office 365 connector URL (``…/webhookb2/…``), as opposed to a Workflows trigger URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return "/webhookb2/" in parts.path or host.endswith(_LEGACY_HOSTS)


def url_secrets(url: str) -> tuple[Secret, ...]:
    """The credential parts of the URL (the ``sig`` value; a legacy connector's path), for the redactor."""
    parts = urlsplit(url)
    found = set(parse_qs(parts.query).get("sig", []))
    if is_legacy(url):
        path = parts.path.strip("/")
        found |= {path, path.split("/webhookb2/", 1)[-1]}
        found |= {seg for seg in path.split("/") if len(seg) >= 32}
    return tuple(Secret(v) for v in sorted(found) if len(v) >= 8)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def card_facts(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The summary facts, values clipped; the event id goes to its own line, severity is added if missing."""
    lines = [
        (label, clip(value, MAX_VALUE)) for label, value in render.summary_lines(event) if label != "Event id"
    ]
    if not any("severity" in label.lower() for label, _ in lines):
        lines.append(("Severity", render.severity(event)))
    return lines


@dataclass(frozen=True)
class CardParts:
    """What people read on a card: its title, the small text line and the facts."""

    title: str
    text: str
    facts: list[tuple[str, str]]


def default_parts(event: Mapping[str, Any]) -> CardParts:
    return CardParts(
        title=clip(render.title(event), MAX_TITLE),
        text=f"Event id {event_id_of(event)}",
        facts=card_facts(event),
    )


def adaptive_card(event: Mapping[str, Any], parts: CardParts | None = None) -> dict[str, Any]:
    """An Adaptive Card 1.4 for the event (no ``Action.Submit``: webhooks cannot receive it)."""
    sev = render.severity(event)
    got = parts or default_parts(event)
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": got.title,
            "weight": "Bolder",
            "size": "Medium",
            "color": ADAPTIVE_COLOR.get(sev, "Default"),
            "wrap": True,
            "style": "heading",
        },
        {
            "type": "FactSet",
            "facts": [{"title": label, "value": value} for label, value in got.facts],
        },
        {
            "type": "TextBlock",
            "text": got.text,
            "isSubtle": True,
            "size": "Small",
            "wrap": True,
        },
    ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    }
    link = render.link(event)
    if link is not None:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in CAVRA", "url": link}]
    return card


def message_card(event: Mapping[str, Any], parts: CardParts | None = None) -> dict[str, Any]:
    """An O365 connector ``MessageCard`` for the event."""
    sev = render.severity(event)
    got = parts or default_parts(event)
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "summary": got.title,
        "title": got.title,
        "themeColor": THEME_COLOR.get(sev, THEME_COLOR["info"]),
        "sections": [
            {
                "activityTitle": got.title,
                "activitySubtitle": f"Severity: {sev}",
                "facts": [{"name": label, "value": value} for label, value in got.facts],
                "text": got.text,
                "markdown": False,
            }
        ],
    }
    link = render.link(event)
    if link is not None:
        card["potentialAction"] = [
            {"@type": "OpenUri", "name": "Open in CAVRA", "targets": [{"os": "default", "uri": link}]}
        ]
    return card


def payload(event: Mapping[str, Any], card_format: str, parts: CardParts | None = None) -> dict[str, Any]:
    """The request body: a bare MessageCard (legacy connectors only), or the Adaptive Card message."""
    if card_format == "messagecard":
        return message_card(event, parts)
    return {
        "type": "message",
        "attachments": [
            {"contentType": ADAPTIVE, "contentUrl": None, "content": adaptive_card(event, parts)}
        ],
    }


def _facts_of(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        raise TemplateFailure("templates: facts must render a JSON list")
    out = []
    for i, item in enumerate(value):
        if (
            isinstance(item, dict)
            and isinstance(item.get("title"), str)
            and isinstance(item.get("value"), str)
        ):
            out.append((item["title"], item["value"]))
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item):
            out.append((item[0], item[1]))
        else:
            raise TemplateFailure(f'templates: facts[{i}] must be {{"title": text, "value": text}}')
    return out


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def templated_body(event: Mapping[str, Any], settings: TeamsSettings) -> tuple[bytes, str | None]:
    """The request body with the destination's templates (``title``, ``text``, ``facts``) applied, and a
    warning when they could not be (then the default card is sent): a render error, or a card over Teams'
    size limit."""
    default = encode(payload(event, settings.card_format))
    compiled = settings.templates
    if compiled is None:
        return default, None
    try:
        parts = default_parts(event)
        if compiled.has("title"):
            parts = replace(parts, title=compiled.render("title", event))
        if compiled.has("text"):
            parts = replace(parts, text=compiled.render("text", event))
        if compiled.has("facts"):
            parts = replace(parts, facts=_facts_of(compiled.render_json("facts", event)))
        body = encode(payload(event, settings.card_format, parts))
        if len(body) > MAX_BYTES:
            raise TemplateFailure(
                f"templates: the card is {len(body)} bytes, over Teams' limit of {MAX_BYTES}"
            )
    except TemplateFailure as exc:
        return default, f"{exc}; the default rendering was sent"
    return body, None


def _error_code(response: Response) -> str:
    data = response.json_or_none()
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        code = data["error"].get("code")
        if isinstance(code, str):
            return clip_text(code, 120)
    text = clip_bytes(response.body, 200).strip()
    return clip_text("".join(ch for ch in (text.splitlines() or [""])[0] if ch.isprintable()), 120)


class TeamsConnector(BaseConnector[TeamsSettings]):
    """Post an Adaptive Card (or MessageCard) to a Teams Workflows or legacy connector webhook."""

    settings_model: ClassVar[type[ConnectorSettings]] = TeamsSettings

    def build(self, event: Mapping[str, Any], settings: TeamsSettings, ctx: Context) -> PreparedRequest:
        if settings.url is None:
            raise ConfigError("teams: url is required")
        url = settings.url.reveal()
        body, warning = templated_body(event, settings)
        if len(body) > MAX_BYTES:
            raise PayloadTooLarge(
                f"the Teams card is {len(body)} bytes, over Teams' limit of {MAX_BYTES} bytes"
            )
        headers: dict[str, Any] = dict(settings.headers)
        headers["Content-Type"] = "application/json"
        step = "legacy_connector" if is_legacy(url) else "workflow"
        return PreparedRequest(
            method="POST",
            url=url,
            headers=headers,
            body=body,
            step=step,
            new_secrets=url_secrets(url),
            warnings=() if warning is None else (warning,),
        )

    def interpret(
        self, request: PreparedRequest, response: Response, settings: TeamsSettings, ctx: Context, state: Any
    ) -> Verdict:
        if is_legacy(request.url):
            return self._legacy(response)
        status = response.status
        if status in (200, 202):
            return Delivered(detail={"answer": f"HTTP {status}", "note": "the flow run was queued"})
        return classify(response, what=f"HTTP {status} {_error_code(response)}".rstrip())

    def _legacy(self, response: Response) -> Verdict:
        text = response.body[:400].decode("utf-8", errors="replace").strip()
        if response.status == 200:
            if text == "1":
                return Delivered(detail={"answer": "1"})
            if "429" in text:
                return Retry(
                    "Teams connector throttled: HTTP 200 with HTTP error 429 in the body",
                    after=LEGACY_THROTTLE_WAIT,
                )
            return Reject(
                f"Teams connector answered HTTP 200 without the success body '1': {_error_code(response)!r}"
            )
        return classify(response, what=f"HTTP {response.status} {_error_code(response)}".rstrip())


SPEC = ProviderSpec(
    name="teams",
    category="chatops",
    connector=TeamsConnector,
    emulator="cavra.emulators.teams",
    secret_url_path=True,
    url_secret=True,
    example={"url_env": "TEAMS_WEBHOOK_URL", "card_format": "adaptive"},
    example_env={
        "TEAMS_WEBHOOK_URL": "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=xyz"
    },
)
