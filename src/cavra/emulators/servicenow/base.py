"""Shared parts of the ServiceNow emulator: settings, the failure envelope, auth, headers, the rate rule."""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response

#: the audience of the tokens ``/oauth_token.do`` records in ``hub.tokens``
AUDIENCE = "servicenow"
DEMO_CLIENT_ID = "7f3c9a0e2b5d4c18a6e1f0b9d8c7a654"
DEMO_CLIENT_SECRET = "sn-demo-client-secret~Qw7Rt2Zx"
NOT_AUTHENTICATED = {
    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
    "status": "failure",
}


@dataclass
class Settings:
    """Demo credentials and switches of the ServiceNow emulator (all overridable by keyword)."""

    users: dict[str, str] = field(default_factory=lambda: {"cavra.integration": "sn-demo-password-2b9d"})
    #: OAuth access tokens the instance accepts as ``Authorization: Bearer …`` (besides those it issues)
    bearer_tokens: list[str] = field(default_factory=lambda: ["sn-demo-oauth-token-8e4c"])
    #: OAuth application registry entries (client_id -> client_secret) that ``/oauth_token.do`` knows
    oauth_clients: dict[str, str] = field(default_factory=lambda: {DEMO_CLIENT_ID: DEMO_CLIENT_SECRET})
    #: the user client-credentials tokens act as (the OAuth Application User; empty: none is set)
    oauth_user: str = "cavra.oauth"
    #: OAuth applications whose registry entry is inactive (their token requests are refused)
    inactive_clients: list[str] = field(default_factory=list)
    #: seconds an issued access token lives (``expires_in``; ServiceNow's default is 1799)
    token_lifetime: float = 1799
    #: inbound rate rule: this many requests per window, then 429 (0 disables)
    rate_limit_requests: int = 0
    rate_limit_window_seconds: float = 3600.0
    rate_limit_rule: str = "Table API"


def failure(status: int, message: str, detail: str | None) -> web.Response:
    """ServiceNow's error envelope."""
    return json_response({"error": {"message": message, "detail": detail}, "status": "failure"}, status)


def token_user(hub: EmulatorHub, value: str) -> str | None:
    """The user a token issued by ``/oauth_token.do`` acts as, while it is valid; else None."""
    issued = hub.tokens.get(value)
    if issued is None or issued.audience != AUDIENCE or issued.expires_at <= time.time():
        return None
    return next((r[5:] for r in issued.roles if r.startswith("user:")), issued.client_id)


class Gate:
    """Auth, required headers, JSON bodies and the inbound rate rule, applied to every API request."""

    def __init__(self, settings: Settings, hub: EmulatorHub | None = None) -> None:
        self.settings = settings
        self.hub = hub
        self._window_start = 0.0
        self._count = 0

    def reset(self) -> None:
        self._window_start = 0.0
        self._count = 0

    def _user(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            if sep and self.settings.users.get(user) == password:
                return user
        elif scheme.lower() == "bearer" and value:
            if value in self.settings.bearer_tokens:
                return "oauth.user"
            if self.hub is not None:
                return token_user(self.hub, value)
        return None

    # -- rate rule -------------------------------------------------------------------------------------------
    def _reset_at(self) -> float:
        return self._window_start + self.settings.rate_limit_window_seconds

    def _rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.settings.rate_limit_requests),
            "X-RateLimit-Reset": str(math.ceil(self._reset_at())),
            "X-RateLimit-Rule": self.settings.rate_limit_rule,
        }

    def _throttled(self) -> web.Response | None:
        limit = self.settings.rate_limit_requests
        if limit <= 0:
            return None
        now = time.time()
        if now >= self._reset_at():
            self._window_start, self._count = now, 0
        if self._count >= limit:
            per = self.settings.rate_limit_window_seconds
            period = "hour" if per == 3600 else f"{per:g} seconds"
            response = failure(
                429,
                "Rate limit exceeded",
                f"Rate limit of {limit} requests per {period} for {self.settings.rate_limit_rule} exceeded",
            )
            response.headers.update(self._rate_headers())
            response.headers["Retry-After"] = str(max(1, math.ceil(self._reset_at() - now)))
            return response
        self._count += 1
        return None

    def stamp(self, response: web.Response) -> web.Response:
        """Add the ``X-RateLimit-*`` headers every answer carries while a rate rule is active."""
        if self.settings.rate_limit_requests > 0:
            response.headers.update(self._rate_headers())
        return response

    # -- entry points ----------------------------------------------------------------------------------------
    def read(self, request: web.Request) -> tuple[str, web.Response | None]:
        user = self._user(request)
        if user is None:
            return "", json_response(NOT_AUTHENTICATED, 401)
        return user, self._throttled()

    async def write(self, request: web.Request) -> tuple[str, dict[str, Any], web.Response | None]:
        """Auth, rate rule, ``Accept`` + ``Content-Type`` and a JSON object body, in that order."""
        user, denied = self.read(request)
        if denied is not None:
            return user, {}, denied
        accept = request.headers.get("Accept", "")
        if not accept or not request.headers.get("Content-Type"):
            return (
                user,
                {},
                self.stamp(
                    failure(
                        400,
                        "Requested URI does not represent any resource",
                        "Accept and Content-Type required",
                    )
                ),
            )
        if not any(t in accept for t in ("application/json", "*/*", "application/*")):
            return user, {}, self.stamp(failure(406, "Not Acceptable", f"Cannot produce {accept}"))
        if request.content_type != "application/json":
            return user, {}, self.stamp(failure(415, "Unsupported Media Type", request.content_type))
        raw = await request.read()
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return (
                user,
                {},
                self.stamp(failure(400, "Exception while reading request", "The payload is not valid JSON.")),
            )
        return user, body, None
