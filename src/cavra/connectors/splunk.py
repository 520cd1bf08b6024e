"""Splunk HTTP Event Collector: one JSON envelope per event to ``/services/collector/event``.

The envelope carries ``time``, ``host``, ``source``, ``sourcetype``, ``index``, the raw CAVRA event as
``event`` and a few flat indexed ``fields`` (event type, id, session, severity). Success is judged on the
HEC ``code`` in the answer, not on the HTTP status alone: ``200`` with ``code`` 0 is delivered (with the
``ackId`` as remote id when the token has indexer acknowledgement on); a 200 without code 0 is not.
503 (codes 9, 18 to 20) and 500 (code 8) are retried; 400 (codes 5 to 7, 10 to 16), 401 and 403 are
rejected with HEC's own reason and, for a bad event, its ``invalid-event-number``. Every request carries
a channel GUID (``X-Splunk-Request-Channel``), stable for the delivery, so ack-enabled tokens work too.

With ``ack: true`` (a token with indexer acknowledgement on), a ``200`` with an ``ackId`` is not the end:
the connector polls ``POST …/services/collector/ack?channel=<GUID>`` with ``{"acks": [id]}`` (step
``ack``, same ``Authorization`` and channel) every ``ack_poll_seconds`` until HEC reports the id ``true``
(delivered, proof ``indexed: HEC acknowledged ackId N``) or ``ack_timeout_seconds`` pass (pending:
accepted by HEC, indexing not yet acknowledged). At most :data:`MAX_ACK_POLLS` polls are made: the
interval is stretched to fit the timeout, as the Linux fleet connector does. Once HEC accepted the event
the delivery is never failed by a poll: 408/429/5xx answers are polled through, other answers end it as
pending with their reason.

Batching (the worker sends due jobs of one target together): envelopes are concatenated, one per line, up
to ``batch_max_events`` (100) and ``batch_max_bytes`` per request. When HEC refuses event *n* of a batch
(400 with ``invalid-event-number``) the envelopes before it were indexed: they are delivered, event *n* is
failed with HEC's reason, and only the ones after it are sent again (providers.md §1.5).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from cavra.connectors.base import (
    BaseConnector,
    BatchLimits,
    BatchVerdict,
    ConnectorSettings,
    Context,
    Delivered,
    Next,
    PayloadTooLarge,
    Pending,
    PreparedRequest,
    Reject,
    Response,
    Retry,
    Split,
    Verdict,
)
from cavra.connectors.classify import classify, retry_after
from cavra.connectors.render import severity
from cavra.connectors.spec import ProviderSpec
from cavra.errors import ConfigError
from cavra.events import event_id_of
from cavra.secretforms import clip
from cavra.secrets import Secret

#: Splunk Cloud rejects requests over about 1 MB; stay under it (providers.md §1.7)
MAX_REQUEST_BYTES = 900_000
CHANNEL_HEADER = "X-Splunk-Request-Channel"
_CHANNEL_NAMESPACE = uuid.UUID("6b0c3a52-4f0e-4d8e-9a57-2c1f0d3b7e11")
_EVENT_PATHS = ("/services/collector/event", "/services/collector/event/1.0")
RETRY_CODES = frozenset({8, 9, 18, 19, 20})
#: the most ack polls one delivery makes (the engine allows 40 steps); the interval is stretched to fit
MAX_ACK_POLLS = 30
PENDING_ACK = "accepted by HEC, indexing not yet acknowledged"
#: HEC codes that name what is wrong, for the reason
_CODE_HINTS = {
    1: "the HEC token is disabled",
    2: "no token was sent",
    3: "the Authorization header is malformed: check authorization_scheme (Splunk)",
    4: "the HEC token is not valid",
    5: "the request had no data",
    6: "the event is not in a format HEC accepts",
    7: "the index is not allowed for this HEC token: check index",
    10: "the token has indexer acknowledgement on and needs a channel",
    11: "the channel is not a valid GUID",
    12: "the envelope has no event",
    13: "the event is blank",
    14: "indexer acknowledgement is off for this token",
    15: "the indexed fields are not flat",
    16: "query-string authorization is not enabled for this token",
}


class SplunkSettings(ConnectorSettings):
    """HEC ``url`` (base, ``…/services/collector`` or ``…/event``), ``token`` and envelope metadata."""

    index: str | None = None
    source: str | None = None
    sourcetype: str | None = None
    host: str | None = None
    authorization_scheme: str | None = "Splunk"
    #: poll ``/services/collector/ack`` until the event is indexed (a token with indexer acknowledgement)
    ack: bool = False
    ack_timeout_seconds: float = Field(default=60.0, ge=0, le=3600)
    ack_poll_seconds: float = Field(default=1.0, gt=0, le=600)
    #: batching: at most this many envelopes / bytes per request (1 turns batching off)
    batch_max_events: int = Field(default=100, ge=1, le=10_000)
    batch_max_bytes: int = Field(default=MAX_REQUEST_BYTES, ge=1_000, le=MAX_REQUEST_BYTES)

    @field_validator("authorization_scheme")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or " " in value.strip()):
            raise ConfigError("splunk: authorization_scheme must be one word (Splunk)")
        return value.strip() if value else value

    @model_validator(mode="after")
    def _required(self) -> SplunkSettings:
        for name in ("url", "token"):
            if not getattr(self, name):
                raise ConfigError(f"splunk: {name} is required")
        return self


def event_url(url: str) -> str:
    """The ``/services/collector/event`` URL for a HEC URL given as a base, ``/collector`` or ``/event``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("splunk: url must be an http(s) URL of the HTTP Event Collector")
    path = parts.path.rstrip("/")
    if path.endswith(_EVENT_PATHS):
        pass
    elif path.endswith("/services/collector"):
        path += "/event"
    elif "/services/collector/" in path + "/":
        raise ConfigError("splunk: url must end with /services/collector or /services/collector/event")
    else:
        path += "/services/collector/event"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def ack_url(url: str, channel: str) -> str:
    """``…/services/collector/ack?channel=<GUID>`` for a HEC URL in any form :func:`event_url` takes."""
    parts = urlsplit(event_url(url))
    path = parts.path[: parts.path.rindex("/services/collector")] + "/services/collector/ack"
    query = "&".join(q for q in (parts.query, urlencode({"channel": channel})) if q)
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def ack_interval(settings: SplunkSettings) -> float:
    """``ack_poll_seconds``, stretched so that at most :data:`MAX_ACK_POLLS` polls fit in the timeout."""
    return max(settings.ack_poll_seconds, settings.ack_timeout_seconds / MAX_ACK_POLLS)


@dataclass(frozen=True)
class AckState:
    """Poll the ack endpoint for ``ack_id`` until ``deadline`` (monotonic seconds)."""

    ack_id: int
    deadline: float
    polls: int = 0


def _epoch(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number / 1000.0 if number > 1e11 else number
    if isinstance(value, str) and value.strip():
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def event_time(event: Mapping[str, Any], default: float) -> float:
    """The event's own time (``timestamp``, ``time``, ``generated_at``, ``created_at``) or ``default``."""
    for key in ("timestamp", "time", "generated_at", "created_at", "occurred_at"):
        found = _epoch(event.get(key))
        if found is not None:
            return found
    return default


def envelope(event: Mapping[str, Any], settings: SplunkSettings, now: float) -> dict[str, Any]:
    """The HEC envelope for one event: metadata, the raw event, and flat indexed fields."""
    fields = {"event_type": str(event.get("event_type", "")), "event_id": event_id_of(event)}
    if event.get("session_id") is not None:
        fields["session_id"] = str(event["session_id"])
    fields["severity"] = severity(event)
    env: dict[str, Any] = {"time": round(event_time(event, now), 3)}
    if settings.host:
        env["host"] = settings.host
    env["source"] = settings.source or "cavra"
    env["sourcetype"] = settings.sourcetype or "_json"
    if settings.index:
        env["index"] = settings.index
    env["event"] = dict(event)
    env["fields"] = fields
    return env


def _hec_answer(response: Response) -> tuple[int | None, str, dict[str, Any]]:
    data = response.json_or_none()
    if not isinstance(data, dict):
        return None, "", {}
    code = data.get("code")
    text = data.get("text")
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        clip(text, 200) if isinstance(text, str) else "",
        data,
    )


class SplunkConnector(BaseConnector[SplunkSettings]):
    """Splunk HEC event endpoint."""

    settings_model: ClassVar[type[ConnectorSettings]] = SplunkSettings

    def prepare(
        self, event: Mapping[str, Any], settings: SplunkSettings, ctx: Context, state: Any
    ) -> PreparedRequest:
        if isinstance(state, AckState):
            return self._ack_request(settings, ctx, state)
        return self.build(event, settings, ctx)

    def build(self, event: Mapping[str, Any], settings: SplunkSettings, ctx: Context) -> PreparedRequest:
        return self._send(self.encode(event, settings, ctx), settings, ctx)

    def encode(self, event: Mapping[str, Any], settings: SplunkSettings, ctx: Context) -> bytes:
        body = json.dumps(envelope(event, settings, ctx.now), ensure_ascii=False, default=str).encode("utf-8")
        if len(body) > MAX_REQUEST_BYTES:
            raise PayloadTooLarge(
                f"splunk: the HEC envelope is {len(body)} bytes, over the {MAX_REQUEST_BYTES}-byte "
                "request cap (Splunk Cloud refuses requests over about 1 MB)"
            )
        return body

    def batch_limits(self, settings: SplunkSettings) -> BatchLimits:
        return BatchLimits(settings.batch_max_events, settings.batch_max_bytes, overhead=0, separator=1)

    def prepare_batch(
        self, items: list[bytes], settings: SplunkSettings, ctx: Context, state: Any
    ) -> PreparedRequest:
        if isinstance(state, AckState):
            return self._ack_request(settings, ctx, state)
        return self._send(b"\n".join(items), settings, ctx)

    def interpret_batch(
        self, request: PreparedRequest, response: Response, settings: SplunkSettings, ctx: Context, state: Any
    ) -> BatchVerdict:
        verdict = self.interpret(request, response, settings, ctx, state)
        if isinstance(state, AckState) or not isinstance(verdict, Reject):
            return verdict
        bad = verdict.detail.get("invalid_event_number")
        count = request.body.count(b"\n") + 1
        if isinstance(bad, bool) or not isinstance(bad, int) or not 0 <= bad < count:
            return verdict
        return Split(
            reason=verdict.reason,
            delivered=tuple(range(bad)),
            rejected={bad: verdict.reason},
            detail={"hec_code": 0, "indexed_before_invalid_event": bad},
        )

    def _send(self, body: bytes, settings: SplunkSettings, ctx: Context) -> PreparedRequest:
        if settings.url is None:
            raise ConfigError("splunk: url is required")
        url = event_url(settings.url.reveal())
        return PreparedRequest(method="POST", url=url, headers=self._headers(settings, ctx), body=body)

    def _ack_request(self, settings: SplunkSettings, ctx: Context, state: AckState) -> PreparedRequest:
        if settings.url is None:
            raise ConfigError("splunk: url is required")
        body = json.dumps({"acks": [state.ack_id]}).encode("utf-8")
        url = ack_url(settings.url.reveal(), channel_of(ctx))
        return PreparedRequest(
            method="POST", url=url, headers=self._headers(settings, ctx), body=body, step="ack"
        )

    def _headers(self, settings: SplunkSettings, ctx: Context) -> dict[str, str | Secret]:
        if settings.token is None:
            raise ConfigError("splunk: token is required")
        scheme = settings.authorization_scheme or "Splunk"
        return {
            "Content-Type": "application/json",
            "Accept": "application/json",
            CHANNEL_HEADER: channel_of(ctx),
            **settings.headers,
            "Authorization": Secret(f"{scheme} {settings.token.reveal()}", source="splunk:authorization"),
        }

    def judge(self, response: Response, settings: SplunkSettings) -> Verdict:
        return judge_hec(response)

    def interpret(
        self, request: PreparedRequest, response: Response, settings: SplunkSettings, ctx: Context, state: Any
    ) -> Verdict:
        if isinstance(state, AckState):
            return judge_ack(response, settings, state)
        verdict = self.judge(response, settings)
        if not settings.ack or not isinstance(verdict, Delivered):
            return verdict
        ack_id = verdict.detail.get("ack_id")
        if isinstance(ack_id, bool) or not isinstance(ack_id, int) or ack_id < 0:
            return replace(
                verdict,
                detail={
                    **verdict.detail,
                    "ack": "no ackId in HEC's answer: indexer acknowledgement is off for this token",
                },
            )
        interval = ack_interval(settings)
        polling = AckState(ack_id=ack_id, deadline=response.received_clock + settings.ack_timeout_seconds)
        accepted = f"{PENDING_ACK} (ackId {ack_id})"
        remote = f"ackId:{ack_id}"
        if settings.ack_timeout_seconds < interval:  # the timeout leaves no time to wait: poll once at once
            return Next(polling, accepted=accepted, remote_id=remote)
        return Next(polling, after=interval, accepted=accepted, remote_id=remote)


def channel_of(ctx: Context) -> str:
    """The channel GUID of a delivery: derived from the delivery key, so retries and ack polls share it."""
    return str(uuid.uuid5(_CHANNEL_NAMESPACE, ctx.delivery_key))


def judge_ack(response: Response, settings: SplunkSettings, state: AckState) -> Verdict:
    """An ack poll's answer: delivered when the id is reported true, else poll again or end pending."""
    polls = state.polls + 1
    remote_id = f"ackId:{state.ack_id}"
    status = response.status
    code, text, data = _hec_answer(response)
    described = (
        f"HTTP {status}" + (f" code {code}" if code is not None else "") + (f" ({text})" if text else "")
    )
    wait = ack_interval(settings)
    if status == 200:
        acks = data.get("acks")
        if not isinstance(acks, dict):
            return Pending(
                f"{PENDING_ACK}: the ack poll for ackId {state.ack_id} answered HTTP 200 without an acks "
                "object; check the url",
                remote_id=remote_id,
            )
        if acks.get(str(state.ack_id)) is True:
            return Delivered(
                remote_id=remote_id,
                detail={"hec_code": 0, "ack_id": state.ack_id, "ack_polls": polls},
                proof=f"indexed: HEC acknowledged ackId {state.ack_id}",
            )
        why = "not yet indexed"
    elif status in (408, 429) or (status >= 500 and status != 501):
        why = f"the ack poll answered {described}"
        after = retry_after(response)
        wait = max(wait, after or 0.0)
    else:
        hint = _CODE_HINTS.get(code) if code is not None else None
        return Pending(
            f"{PENDING_ACK}: the ack poll for ackId {state.ack_id} was refused with {described}"
            + (f": {hint}" if hint else ""),
            remote_id=remote_id,
        )
    if polls >= MAX_ACK_POLLS or response.received_clock + wait > state.deadline:
        return Pending(
            f"{PENDING_ACK} (ackId {state.ack_id}: {why} after {polls} polls in "
            f"{settings.ack_timeout_seconds:g} s)",
            remote_id=remote_id,
        )
    return Next(replace(state, polls=polls), after=wait)


def judge_hec(response: Response) -> Verdict:
    """HEC's answer -> verdict, read from its ``code`` field (providers.md §1.5, §1.8)."""
    status = response.status
    code, text, data = _hec_answer(response)
    described = (
        f"HTTP {status}" + (f" code {code}" if code is not None else "") + (f" ({text})" if text else "")
    )
    if 200 <= status < 300:
        if code == 0:
            ack = data.get("ackId")
            detail: dict[str, Any] = {"hec_code": 0}
            if ack is not None:
                detail["ack_id"] = ack
            return Delivered(remote_id=None if ack is None else f"ackId:{ack}", detail=detail)
        return Reject(f"{described}: HEC did not confirm the event (success is code 0); check the url")
    if code in RETRY_CODES or (code is None and status in (500, 503)):
        return Retry(described, after=retry_after(response))
    hint = _CODE_HINTS.get(code) if code is not None else None
    if "invalid-event-number" in data:
        return Reject(
            f"{described}: HEC rejected event number {data['invalid-event-number']} of the request"
            + (f": {hint}" if hint else ""),
            detail={"hec_code": code, "invalid_event_number": data["invalid-event-number"]},
        )
    if status == 413:
        return Reject(f"{described}: the request is over HEC's max_content_length")
    if status == 404:
        return Reject(f"{described}: no HEC endpoint at this url")
    if status in (400, 401, 403):
        return Reject(f"{described}: {hint}" if hint else described, detail={"hec_code": code})
    verdict = classify(response, what=described)
    return verdict


SPEC = ProviderSpec(
    name="splunk",
    category="siem",
    connector=SplunkConnector,
    emulator="cavra.emulators.splunk",
    example={
        "url_env": "SPLUNK_HEC_URL",
        "token_env": "SPLUNK_HEC_TOKEN",
        "index": "cavra",
        "source": "cavra-connectors",
        "sourcetype": "cavra:evidence",
    },
    example_env={
        "SPLUNK_HEC_URL": "https://splunk.example/services/collector",
        "SPLUNK_HEC_TOKEN": "3f9c1e2a-5b7d-4c8e-9a0b-1d2e3f4a5b6c",
    },
)
