"""Shared parts of the Jira emulator: settings, credentials, the burst rule, JSON bodies, error shape."""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from cavra.emulators.framework import json_response
from cavra.emulators.jira.model import Issue, JiraStore

AUTH_FAILED = "Client must be authenticated to access this resource."
REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
NO_ISSUE = "Issue does not exist or you do not have permission to see it."


@dataclass
class Settings:
    """Demo credentials and switches of the Jira emulator (all overridable by keyword)."""

    deployment: str = "cloud"  # "cloud" or "datacenter"
    accounts: dict[str, str] = field(
        default_factory=lambda: {"cavra-bot@example.com": "jira-demo-api-token-7f3a"}
    )
    pats: list[str] = field(default_factory=lambda: ["jira-demo-pat-5c1e"])
    projects: dict[str, list[str]] = field(
        default_factory=lambda: {"OPS": ["Task", "Bug", "Story", "Incident"], "SEC": ["Task", "Incident"]}
    )
    priorities: list[str] = field(default_factory=lambda: ["Highest", "High", "Medium", "Low", "Lowest"])
    custom_fields: dict[str, str] = field(default_factory=lambda: {"customfield_10042": "CAVRA session"})
    #: new issues show up in search only after this many seconds (Cloud search is eventually consistent)
    search_lag_seconds: float = 0.0
    #: anonymous searches answer 200 with no issues (Jira's behaviour); False makes them 401
    anonymous_search: bool = True
    #: burst rule: more than this many requests within the window get 429 (0 disables)
    rate_limit_requests: int = 0
    rate_limit_window_seconds: float = 60.0
    retry_after_seconds: int = 1


def error_response(
    status: int, messages: list[str] | None = None, errors: dict[str, str] | None = None
) -> web.Response:
    return json_response({"errorMessages": messages or [], "errors": errors or {}}, status=status)


class JiraBase:
    """State and the cross-cutting checks every Jira route applies."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = JiraStore(settings.projects)
        self._hits: list[float] = []

    @property
    def cloud(self) -> bool:
        return self.settings.deployment != "datacenter"

    def reset(self) -> None:
        self.store = JiraStore(self.settings.projects)
        self._hits.clear()

    # -- checks ----------------------------------------------------------------------------
    def _who(self, request: web.Request) -> str | None:
        """``"anonymous"``, an account name, or ``None`` for credentials that are present but wrong."""
        header = request.headers.get("Authorization")
        if not header:
            return "anonymous"
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            email, sep, token = decoded.partition(":")
            if sep and email in self.settings.accounts and self.settings.accounts[email] == token:
                return email
            return None
        if scheme.lower() == "bearer" and not self.cloud and value.strip() in self.settings.pats:
            return "pat-user"
        return None

    def _throttled(self) -> web.Response | None:
        limit = self.settings.rate_limit_requests
        if limit <= 0:
            return None
        now = time.monotonic()
        window = self.settings.rate_limit_window_seconds
        self._hits = [t for t in self._hits if now - t < window]
        if len(self._hits) >= limit:
            reset = datetime.now(UTC) + timedelta(seconds=self.settings.retry_after_seconds)
            return json_response(
                {"errorMessages": ["Rate limit exceeded."], "errors": {}},
                status=429,
                headers={
                    "Retry-After": str(self.settings.retry_after_seconds),
                    "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
                    "RateLimit-Reason": "jira-burst-based",
                },
            )
        self._hits.append(now)
        return None

    def _gate(self, request: web.Request, *, search: bool = False) -> tuple[str | None, web.Response | None]:
        throttled = self._throttled()
        if throttled is not None:
            return None, throttled
        who = self._who(request)
        if who is None or (who == "anonymous" and not (search and self.settings.anonymous_search)):
            return None, error_response(401, [AUTH_FAILED])
        return who, None

    def _version(self, request: web.Request) -> int | web.Response:
        version = int(request.match_info["version"])
        if not self.cloud and version == 3:
            return web.Response(status=404, text="Not Found")
        return version

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
        if request.content_type != "application/json":
            return web.Response(status=415, text="Unsupported Media Type")
        try:
            data = await request.json()
        except ValueError:
            return error_response(400, ["Unexpected character: the request body is not valid JSON."])
        if not isinstance(data, dict):
            return error_response(400, ["Can not deserialize the request out of a non-object token."])
        return data

    def _self(self, request: web.Request, version: int, issue: Issue) -> str:
        return f"{request.url.origin()}/jira/rest/api/{version}/issue/{issue.id}"

    # -- create --------------------------------------------------------------------------------------------
