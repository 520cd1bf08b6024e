"""Datadog Logs intake v2: one log entry per event, ``POST {intake}/api/v2/logs`` with ``DD-API-KEY``.

The entry carries a readable ``message``, ``ddsource``, ``ddtags`` (configured tags plus the event type
and severity), ``hostname``, ``service``, ``status`` (from the event's severity) and the event's own fields
as attributes (a field that would shadow a reserved attribute is kept as ``cavra_<name>``). Success is
``202``. Datadog's limits (5,000,000 bytes per payload, 1000 entries, 1,000,000 bytes per entry) are
checked before sending: over them the delivery fails unsent (Datadog would silently truncate a big entry).
401 (key missing) and 403 (key invalid) are rejected, not retried; 408, 429 and 5xx are retried; 400
and 413 are rejected.

Batching (the worker sends due jobs of one target together): entries go as one JSON array of at most
``batch_max_events`` (1000) entries and ``batch_max_bytes`` (4,250,000, under the 5,000,000-byte limit, as
Vector does) per request; Datadog accepts or refuses a payload whole.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from cavra.connectors.base import (
    BaseConnector,
    BatchLimits,
    ConnectorSettings,
    Context,
    Delivered,
    PayloadTooLarge,
    PreparedRequest,
    Reject,
    Response,
    Verdict,
    json_array,
)
from cavra.connectors.classify import classify
from cavra.connectors.render import severity, summary_lines, title
from cavra.connectors.spec import ProviderSpec
from cavra.errors import ConfigError
from cavra.events import event_id_of
from cavra.secretforms import clip
from cavra.secrets import Secret

MAX_PAYLOAD_BYTES = 5_000_000
MAX_ENTRY_BYTES = 1_000_000
MAX_ENTRIES = 1000
LOGS_PATH = "/api/v2/logs"
#: CAVRA severity -> Datadog log status
STATUS_OF = {"critical": "critical", "high": "error", "medium": "warn", "low": "notice", "info": "info"}
RESERVED = frozenset(
    {"message", "ddsource", "ddtags", "hostname", "host", "service", "status", "date", "timestamp", "source"}
)


class DatadogSettings(ConnectorSettings):
    """``url`` (the logs intake URL) or ``site``; ``api_key``; entry metadata."""

    site: str = "datadoghq.com"
    service: str | None = None
    ddsource: str | None = None
    tags: list[str] = Field(default_factory=list)
    hostname: str | None = None
    #: batching: at most this many entries / bytes per request (1 turns batching off)
    batch_max_events: int = Field(default=MAX_ENTRIES, ge=1, le=MAX_ENTRIES)
    batch_max_bytes: int = Field(default=4_250_000, ge=MAX_ENTRY_BYTES + 2, le=MAX_PAYLOAD_BYTES)

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        site = value.strip().lower()
        if not site or "/" in site or " " in site:
            raise ConfigError("datadog: site must be a Datadog site such as datadoghq.com or datadoghq.eu")
        return site

    @model_validator(mode="after")
    def _required(self) -> DatadogSettings:
        if not self.api_key:
            raise ConfigError("datadog: api_key is required")
        return self


def intake_url(settings: DatadogSettings) -> str:
    """The logs intake URL: the configured ``url`` (``/api/v2/logs`` added to a bare base) or the site's."""
    if settings.url is None:
        return f"https://http-intake.logs.{settings.site}{LOGS_PATH}"
    parts = urlsplit(settings.url.reveal())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("datadog: url must be an http(s) URL of the logs intake")
    path = parts.path.rstrip("/")
    if not path.endswith(LOGS_PATH):
        path += LOGS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def message_of(event: Mapping[str, Any]) -> str:
    """One readable line: the event's title and its main facts."""
    facts = [f"{label} {value}" for label, value in summary_lines(event) if label not in ("Event", "Session")]
    return f"{title(event)} ({', '.join(facts)})" if facts else title(event)


def log_entry(event: Mapping[str, Any], settings: DatadogSettings) -> dict[str, Any]:
    """The Datadog log entry for one event."""
    sev = severity(event)
    event_type = str(event.get("event_type", ""))
    tags = [*settings.tags, f"event_type:{event_type}", f"severity:{sev}"]
    entry: dict[str, Any] = {
        "message": message_of(event),
        "ddsource": settings.ddsource or "cavra",
        "ddtags": ",".join(t.strip() for t in tags if t.strip()),
        "service": settings.service or "cavra",
        "status": STATUS_OF.get(sev, "info"),
    }
    if settings.hostname:
        entry["hostname"] = settings.hostname
    for key, value in event.items():
        entry[f"cavra_{key}" if key in RESERVED else key] = value
    entry["event_id"] = event_id_of(event)
    return entry


def _errors_detail(response: Response) -> str:
    data = response.json_or_none()
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            first = errors[0]
            if isinstance(first, dict):
                return clip(str(first.get("detail") or first.get("title") or ""), 200)
            return clip(str(first), 200)
        if isinstance(data.get("detail"), str):
            return clip(str(data["detail"]), 200)
    return ""


class DatadogConnector(BaseConnector[DatadogSettings]):
    """Datadog Logs intake v2."""

    settings_model: ClassVar[type[ConnectorSettings]] = DatadogSettings

    def build(self, event: Mapping[str, Any], settings: DatadogSettings, ctx: Context) -> PreparedRequest:
        return self.prepare_batch([self.encode(event, settings, ctx)], settings, ctx, None)

    def encode(self, event: Mapping[str, Any], settings: DatadogSettings, ctx: Context) -> bytes:
        entry = json.dumps(log_entry(event, settings), ensure_ascii=False, default=str).encode("utf-8")
        if len(entry) > MAX_ENTRY_BYTES:
            raise PayloadTooLarge(
                f"datadog: a log entry is {len(entry)} bytes, over the limit of {MAX_ENTRY_BYTES} bytes "
                "per log (Datadog would truncate it)"
            )
        return entry

    def batch_limits(self, settings: DatadogSettings) -> BatchLimits:
        return BatchLimits(settings.batch_max_events, settings.batch_max_bytes)

    def prepare_batch(
        self, items: list[bytes], settings: DatadogSettings, ctx: Context, state: Any
    ) -> PreparedRequest:
        if settings.api_key is None:
            raise ConfigError("datadog: api_key is required")
        if len(items) > MAX_ENTRIES:
            raise PayloadTooLarge(
                f"datadog: {len(items)} log entries, over the limit of {MAX_ENTRIES} per request"
            )
        body = json_array(items)
        if len(body) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(
                f"datadog: the payload is {len(body)} bytes, over the limit of {MAX_PAYLOAD_BYTES} bytes "
                "uncompressed"
            )
        headers: dict[str, str | Secret] = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "DD-EVP-ORIGIN": "cavra-connectors",
            **settings.headers,
            "DD-API-KEY": Secret(settings.api_key.reveal(), source="datadog:api_key"),
        }
        return PreparedRequest(method="POST", url=intake_url(settings), headers=headers, body=body)

    def interpret_batch(
        self,
        request: PreparedRequest,
        response: Response,
        settings: DatadogSettings,
        ctx: Context,
        state: Any,
    ) -> Verdict:
        return judge_intake(response)

    def judge(self, response: Response, settings: DatadogSettings) -> Verdict:
        return judge_intake(response)


def judge_intake(response: Response) -> Verdict:
    """The intake's answer -> verdict (providers.md §3)."""
    status = response.status
    detail = _errors_detail(response)
    described = f"HTTP {status}" + (f" ({detail})" if detail else "")
    if 200 <= status < 300:
        return Delivered(detail={"status": status})
    if status == 401:
        return Reject(f"{described}: Datadog did not receive an API key; check api_key")
    if status == 403:
        return Reject(
            f"{described}: Datadog refused the API key; check api_key and that it belongs to the site "
            "of the intake URL"
        )
    if status == 413:
        return Reject(f"{described}: the payload is over Datadog's 5 MB limit")
    if status == 400:
        return Reject(f"{described}: Datadog refused the payload")
    return classify(response, what=described)


SPEC = ProviderSpec(
    name="datadog",
    category="siem",
    connector=DatadogConnector,
    emulator="cavra.emulators.datadog",
    example={
        "site": "datadoghq.com",
        "api_key_env": "DATADOG_API_KEY",
        "service": "cavra",
        "ddsource": "cavra",
        "tags": ["env:prod", "team:security"],
    },
    example_env={"DATADOG_API_KEY": "0123456789abcdef0123456789abcdef"},
)
