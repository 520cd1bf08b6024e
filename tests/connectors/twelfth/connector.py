"""Twelfth: an imaginary SIEM intake, the smallest connector the guide describes.

``POST {url}/ingest`` with ``Authorization: Bearer <token>`` and the event as JSON; ``Idempotency-Key`` is
the delivery key. ``202 {"id": …}`` delivers; every other answer takes the default classification.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from cavra.connectors.base import (
    BaseConnector,
    ConnectorSettings,
    Context,
    Delivered,
    PreparedRequest,
    Response,
    Verdict,
)
from cavra.connectors.classify import classify
from cavra.connectors.spec import ProviderSpec
from cavra.errors import ConfigError
from cavra.secrets import Secret


class TwelfthSettings(ConnectorSettings):
    """``url`` (the intake's base URL) and ``token``; ``source`` names the sender."""

    source: str = "cavra"


class TwelfthConnector(BaseConnector[TwelfthSettings]):
    """One event per request."""

    settings_model: ClassVar[type[ConnectorSettings]] = TwelfthSettings

    def build(self, event: Mapping[str, Any], settings: TwelfthSettings, ctx: Context) -> PreparedRequest:
        if settings.url is None or settings.token is None:
            raise ConfigError("twelfth: url and token are required")
        body = json.dumps({"source": settings.source, "event": dict(event)}, default=str).encode()
        headers: dict[str, str | Secret] = {
            "Content-Type": "application/json",
            "Idempotency-Key": ctx.delivery_key,
            "Authorization": Secret(f"Bearer {settings.token.reveal()}", source="twelfth:token"),
        }
        url = settings.url.reveal().rstrip("/") + "/ingest"
        return PreparedRequest(method="POST", url=url, headers=headers, body=body)

    def judge(self, response: Response, settings: TwelfthSettings) -> Verdict:
        verdict = classify(response)
        data = response.json_or_none()
        if isinstance(verdict, Delivered) and isinstance(data, dict) and isinstance(data.get("id"), str):
            return Delivered(remote_id=data["id"])
        return verdict


SPEC = ProviderSpec(
    name="twelfth",
    category="siem",
    connector=TwelfthConnector,
    emulator="tests.connectors.twelfth.emulator",
    mount="twelfth",
    rate_limit="5/10",
    example={"url_env": "TWELFTH_URL", "token_env": "TWELFTH_TOKEN", "source": "cavra"},
    example_env={"TWELFTH_URL": "https://intake.twelfth.example", "TWELFTH_TOKEN": "twelfth-token-0001"},
)
