"""Generic webhook connector: the CAVRA envelope, signed with Standard Webhooks v1 (providers.md 4).

The body is the documented envelope (``docs/schemas/webhook-envelope.md``)::

    {"type": "<event_type>", "timestamp": "<ISO-8601>", "schema": "cavra.webhook.evidence.v1",
     "event_id": "…", "session_id": "…", "data": {<the event>}}

With ``signing_secret`` (``whsec_…``) each attempt carries ``webhook-id`` (derived from the delivery key, so
it is the same on every retry and every redelivery of this event to this target: the receiver's idempotency
key), ``webhook-timestamp`` (this attempt's Unix seconds) and ``webhook-signature`` (``v1,<base64 HMAC>``),
computed with the ``standardwebhooks`` reference library. ``token`` or ``authorization`` add an
``Authorization`` header.

Secret rotation: ``signing_secrets`` (``signing_secrets_env: [NEW, OLD]``) holds several secrets, and the
``webhook-signature`` header carries one signature per secret, space-separated, as the Standard Webhooks
specification allows ("the signature header can contain multiple signatures ... to support zero-downtime
secret rotation", standard-webhooks spec.md, "Signature scheme"): a receiver that knows either secret
accepts the message, so it can switch secrets without a gap.

Answers: 2xx delivered; 410 rejected (the receiver asked to be disabled); 3xx rejected (redirects are never
followed); 408, 429 and 5xx (but 501) retried, honouring ``Retry-After``; other 4xx rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import model_validator
from standardwebhooks import Webhook

from cavra.connectors.base import (
    BaseConnector,
    ConnectorSettings,
    Context,
    Delivered,
    PreparedRequest,
    Reject,
    Response,
    Verdict,
)
from cavra.connectors.classify import classify
from cavra.connectors.spec import ProviderSpec
from cavra.errors import ConfigError
from cavra.events import WEBHOOK_SCHEMA, event_id_of
from cavra.secrets import Secret
from cavra.templates import TemplateFailure

SECRET_PREFIX = "whsec_"


class WebhookSettings(ConnectorSettings):
    """``url`` (secret), ``signing_secret`` (``whsec_…``), optional ``token`` or ``authorization``."""

    signing_secret: Secret | None = None
    #: several signing secrets (rotation): one signature per secret, in this order, after signing_secret's
    signing_secrets: tuple[Secret, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> WebhookSettings:
        if self.url is None:
            raise ConfigError("webhook: url is required")
        for key, secret in [("signing_secret", self.signing_secret)] + [
            (f"signing_secrets[{i}]", s) for i, s in enumerate(self.signing_secrets)
        ]:
            if secret is not None and not _valid_secret(secret.reveal()):
                raise ConfigError(
                    f"webhook: {key} must be a Standard Webhooks secret: whsec_ followed by the base64 "
                    "of at least 16 random bytes (24 to 64 recommended)"
                )
        if self.token is not None and self.authorization is not None:
            raise ConfigError("webhook: give token or authorization, not both")
        return self


def _valid_secret(value: str) -> bool:
    if not value.startswith(SECRET_PREFIX):
        return False
    raw = value[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(key) >= 16


def webhook_id(delivery_key: str) -> str:
    """The ``webhook-id`` for a delivery key: stable, opaque, and free of ``.`` as the spec requires."""
    return "msg_" + hashlib.sha256(delivery_key.encode("utf-8")).hexdigest()[:32]


def sign(secret: Secret, msg_id: str, timestamp: int, body: str) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{msg_id}.{timestamp}.{body}``, by the reference library."""
    signer = Webhook(secret.reveal())
    return str(signer.sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body))


def _iso(value: float) -> str:
    return datetime.fromtimestamp(value, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_time(event: Mapping[str, Any], fallback: float) -> str:
    for key in ("timestamp", "generated_at", "created_at", "occurred_at"):
        value = event.get(key)
        if isinstance(value, str) and value.strip():
            try:
                parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                continue
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return _iso(parsed.timestamp())
    return _iso(fallback)


def envelope(event: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The CAVRA webhook envelope (``cavra.webhook.evidence.v1``) around one event."""
    session = event.get("session_id")
    return {
        "type": str(event.get("event_type", "")),
        "timestamp": _event_time(event, now),
        "schema": WEBHOOK_SCHEMA,
        "event_id": event_id_of(event),
        "session_id": None if session is None else str(session),
        "data": dict(event),
    }


def templated_envelope(
    event: Mapping[str, Any], settings: WebhookSettings, now: float
) -> tuple[dict[str, Any], str | None]:
    """The envelope with the destination's extra ``fields`` templates added (after the envelope's own
    keys), and a warning when they could not be rendered (then the plain envelope is sent)."""
    body = envelope(event, now)
    compiled = settings.templates
    if compiled is None or not compiled.field_names():
        return body, None
    try:
        bound = compiled.bind(event)
        extra = {name: bound.render(f"fields.{name}") for name in compiled.field_names()}
    except TemplateFailure as exc:
        return body, f"{exc}; the envelope was sent without its extra fields"
    return {**body, **extra}, None


def _authorization(settings: WebhookSettings) -> Secret | None:
    scheme = settings.authorization_scheme or "Bearer"
    if settings.token is not None:
        return Secret(f"{scheme} {settings.token.reveal()}")
    if settings.authorization is not None:
        value = settings.authorization.reveal()
        if " " in value.strip():  # already "<scheme> <credentials>"
            return Secret(value.strip())
        return Secret(f"{scheme} {value}")
    return None


class WebhookConnector(BaseConnector[WebhookSettings]):
    """POST the CAVRA envelope to any HTTPS endpoint, Standard Webhooks signed when a secret is set."""

    settings_model: ClassVar[type[ConnectorSettings]] = WebhookSettings

    def build(self, event: Mapping[str, Any], settings: WebhookSettings, ctx: Context) -> PreparedRequest:
        if settings.url is None:
            raise ConfigError("webhook: url is required")
        document, warning = templated_envelope(event, settings, ctx.now)
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)
        raw = body.encode("utf-8")
        msg_id = webhook_id(ctx.delivery_key)
        headers: dict[str, str | Secret] = dict(settings.headers)
        headers["Content-Type"] = "application/json"
        stamp = int(ctx.attempt_at)  # per attempt: receivers check it against a ±5 minute tolerance
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(stamp)
        keys = ([settings.signing_secret] if settings.signing_secret is not None else []) + list(
            settings.signing_secrets
        )
        if keys:  # one signature per secret, space-separated (rotation)
            when = datetime.fromtimestamp(stamp, tz=UTC)
            headers["webhook-signature"] = " ".join(
                str(Webhook(key.reveal()).sign(msg_id, when, body)) for key in keys
            )
        authorization = _authorization(settings)
        if authorization is not None:
            headers["Authorization"] = authorization
        return PreparedRequest(
            method="POST",
            url=settings.url.reveal(),
            headers=headers,
            body=raw,
            warnings=() if warning is None else (warning,),
        )

    def interpret(
        self,
        request: PreparedRequest,
        response: Response,
        settings: WebhookSettings,
        ctx: Context,
        state: Any,
    ) -> Verdict:
        msg_id = str(request.headers.get("webhook-id", ""))
        if 200 <= response.status < 300:
            return Delivered(remote_id=msg_id, detail={"webhook_id": msg_id, "status": response.status})
        if response.status == 410:
            return Reject(
                "HTTP 410 Gone: the endpoint asked to be disabled (Standard Webhooks); "
                "stop sending to it and check the receiver's configuration",
                detail={"disable_endpoint": True},
            )
        return classify(response)


SPEC = ProviderSpec(
    name="webhook",
    category="siem",
    connector=WebhookConnector,
    emulator="cavra.emulators.webhook",
    secret_url_path=True,
    example={"url_env": "WEBHOOK_URL", "signing_secret_env": "WEBHOOK_SIGNING_SECRET"},
    example_env={
        "WEBHOOK_URL": "https://hooks.example/cavra",
        "WEBHOOK_SIGNING_SECRET": "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    },
)
