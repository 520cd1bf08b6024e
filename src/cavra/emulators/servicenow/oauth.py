"""The ServiceNow emulator's OAuth endpoint, ``POST /oauth_token.do`` (providers.md §8.1).

* The body must be form-encoded (``application/x-www-form-urlencoded``), else 400 ``invalid_request``.
* ``grant_type=client_credentials`` with ``client_id`` + ``client_secret``, or ``grant_type=password`` with
  ``client_id`` + ``client_secret`` + ``username`` + ``password``; another grant is 400
  ``unsupported_grant_type``.
* An unknown client, a wrong client secret or an inactive OAuth application (``Settings.inactive_clients``)
  is ``401 {"error_description":"access_denied","error":"server_error"}``: ServiceNow does not answer
  RFC 6749's ``invalid_client`` here (observed against real instances: demisto/content-docs issue 1301,
  "Error in API call [401] - Unauthorized {"error_description": "access_denied", "error": "server_error"}").
* A client-credentials request for an OAuth application without an OAuth Application User
  (``Settings.oauth_user`` empty) is 401 ``unauthorized_client``: ServiceNow documents that "if the OAuth
  Application User isn't selected on the OAuth client record or the Client Credentials property is set to
  false, then the token request will fail" (ServiceNow docs, "Add the OAuth Application User", Yokohama);
  the ``unauthorized_client`` code is from third-party reports (⚠ the exact body is unconfirmed).
* A wrong user or password (password grant) is 401 ``invalid_grant``.
* Success: ``{"access_token", "scope", "token_type": "Bearer", "expires_in": 1799}`` (the password grant adds
  a ``refresh_token``). Issued tokens are recorded in ``hub.tokens`` with audience ``"servicenow"`` and a
  wall-clock ``expires_at``; the Table and Change APIs accept them as ``Authorization: Bearer …`` until then.

Client-credentials tokens act as ``Settings.oauth_user`` (the OAuth application user of the instance);
password-grant tokens act as the user who asked.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qsl

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, IssuedToken, json_response
from cavra.emulators.servicenow.base import AUDIENCE, Settings


def oauth_error(status: int, error: str, description: str) -> web.Response:
    return json_response({"error": error, "error_description": description}, status)


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and bool(given) and secrets.compare_digest(given.encode(), expected.encode())


class OAuthEndpoint:
    """``/oauth_token.do``: issues Bearer tokens to the configured OAuth clients."""

    def __init__(self, hub: EmulatorHub, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings

    def _mint(self, client_id: str, user: str, scope: str) -> str:
        value = secrets.token_urlsafe(64)
        self.hub.tokens[value] = IssuedToken(
            value=value,
            client_id=client_id,
            audience=AUDIENCE,
            roles=(f"user:{user}", f"scope:{scope}"),
            expires_at=time.time() + self.settings.token_lifetime,
        )
        return value

    async def token(self, request: web.Request) -> web.Response:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
        try:
            form = dict(parse_qsl((await request.read()).decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return oauth_error(400, "invalid_request", "the body is not UTF-8")
        grant = form.get("grant_type", "")
        if grant not in ("client_credentials", "password"):
            return oauth_error(
                400, "unsupported_grant_type", f"grant_type {grant[:40]!r} is not supported by this endpoint"
            )
        client_id = form.get("client_id", "")
        known = _same(form.get("client_secret", ""), self.settings.oauth_clients.get(client_id))
        if not known or client_id in self.settings.inactive_clients:
            return oauth_error(401, "server_error", "access_denied")
        lifetime = self.settings.token_lifetime
        expires_in = int(lifetime) if float(lifetime).is_integer() else lifetime
        if grant == "client_credentials":
            if not self.settings.oauth_user:
                return oauth_error(401, "unauthorized_client", "access_denied")
            scope = form.get("scope") or "useraccount"
            value = self._mint(client_id, self.settings.oauth_user, scope)
            return json_response(
                {"access_token": value, "scope": scope, "token_type": "Bearer", "expires_in": expires_in}
            )
        username = form.get("username", "")
        if not _same(form.get("password", ""), self.settings.users.get(username)):
            return oauth_error(401, "invalid_grant", "the resource owner credentials are not valid")
        value = self._mint(client_id, username, "useraccount")
        return json_response(
            {
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": expires_in,
                "refresh_token": secrets.token_urlsafe(64),
                "access_token": value,
            }
        )
