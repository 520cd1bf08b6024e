"""Emulated Jamf Pro, written from providers.md §9 ("What an emulator must check") and the sources cited in
:mod:`~cavra.emulators.jamf.payloads` (profile rewriting, ghost copies, entities) and
:mod:`~cavra.emulators.jamf.cluster` (Jamf Cloud sticky sessions).

Routes (mounted at ``/jamf``):

* ``POST /api/v1/oauth/token`` and the deprecated ``POST /api/oauth/token``: API-client credentials,
  form-encoded (``grant_type=client_credentials``, ``client_id``, ``client_secret``). Not form-encoded or
  another grant: 400 ``invalid_request`` / ``unsupported_grant_type``; unknown client or wrong secret: 401
  ``invalid_client``. Success: ``{"access_token", "scope", "token_type": "Bearer", "expires_in"}``.
  Current clients use the versioned path and call the other deprecated (macadmins/jamf-pro-sdk-python
  PR 66, 2025: "the /oauth/token endpoint has been deprecated", citing developer.jamf.com/jamf-pro/
  reference/postoauthtoken; grahampugh/jamf-upload moved in 2025-11). ``legacy_oauth_removed`` models its
  removal: the old path answers 404.
* ``POST /api/v1/auth/token`` with HTTP Basic (a user account): ``{"token", "expires"}``;
  ``POST /api/v1/auth/keep-alive`` rotates the Bearer token; ``POST /api/v1/auth/invalidate-token`` is 204.
* Every other route needs ``Authorization: Bearer <token>`` that this emulator issued and that has not
  expired (``token_lifetime`` seconds, short in tests), else 401. Basic on ``/JSSResource`` is 401, as
  from Jamf Pro 11.5.
* Classic API ``/JSSResource/osxconfigurationprofiles``: ``GET`` (list), ``GET id/{id}``,
  ``GET name/{name}``, ``POST`` (and ``POST id/0``), ``PUT id/{id}``, ``PUT name/{name}``,
  ``DELETE id/{id}``. Bodies are XML (``text/xml`` or ``application/xml``, else 415); malformed XML, a
  wrong root element or ``payloads`` that are not a property list give 400 HTML; payloads that hold a bare
  ``&`` or ``<`` after one more entity decode give 409 ``Unable to update the database``; ``general/name``
  is required (400); a duplicate name is 409 with ``<p>Error: Duplicate name</p>``; create and update
  answer 201 with ``<os_x_configuration_profile><id>N</id></os_x_configuration_profile>``. Errors are HTML
  pages. Stored payloads are rewritten as Jamf does (new identifiers, added keys, re-indented); an update
  that does not carry back the stored top-level PayloadUUID / PayloadIdentifier adds a ghost instance
  (``Profile.instances``, ``Profile.ghost_copies``).
* ``cluster_nodes`` > 1 models Jamf Cloud: reads come from the node the request landed on, which sees
  another node's writes only ``cluster_refresh`` seconds later, unless the request carries the
  sticky cookie (``cluster_cookie``, default ``APBALANCEID``) an earlier answer set
  (``state(hub).cluster``: ``routed``, ``refresh_all()``).
* ``max_concurrent`` > 0 caps requests in flight: more give 503 (Jamf recommends at most 5 connections);
  ``response_delay`` holds each request that long, so the cap can be exercised.

Issued tokens are recorded in ``hub.tokens`` with audience ``"jamf"`` and wall-clock ``expires_at``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, IssuedToken, json_response
from cavra.emulators.jamf import profiles
from cavra.emulators.jamf.model import (
    JamfState,
    Profile,
    api_error,
    classic_error,
    parse_profile,
    state,
)

__all__ = ["JamfState", "Profile", "Settings", "create_app", "demo_config", "parse_profile", "state"]

DEMO_CLIENT_ID = "0c6f3a9e-41d2-4b7e-9a85-3e2d1f7c6b08"
DEMO_CLIENT_SECRET = "jamf-demo-secret~Zp4Lw9Qe2Rt7Yx1M"
DEMO_USERNAME = "cavra-api"
DEMO_PASSWORD = "jamf-demo-password~Vb8Nc3Kd6"
AUDIENCE = "jamf"
OAUTH_PATH = "/api/v1/oauth/token"
LEGACY_OAUTH_PATH = "/api/oauth/token"


@dataclass
class Settings:
    """Demo API client and user account, token lifetime and back-pressure switches."""

    clients: dict[str, str] = field(default_factory=lambda: {DEMO_CLIENT_ID: DEMO_CLIENT_SECRET})
    users: dict[str, str] = field(default_factory=lambda: {DEMO_USERNAME: DEMO_PASSWORD})
    #: seconds an access token lives (``expires_in``); fractions are allowed for tests
    token_lifetime: float = 599
    #: 0 = no cap; otherwise more requests in flight than this get 503
    max_concurrent: int = 0
    #: seconds each API request is held before it is answered
    response_delay: float = 0.0
    #: Jamf Cloud web apps behind a sticky load balancer (1 = a single server, no cookie); see ``cluster``
    cluster_nodes: int = 1
    #: seconds before a node sees a write made on another node (Jamf: "the cluster refresh, which occurs
    #: every minute")
    cluster_refresh: float = 60.0
    #: the load balancer's sticky cookie: ``APBALANCEID`` (documented), ``AWSALB`` or ``jpro-ingress``
    cluster_cookie: str = "APBALANCEID"
    #: model the removal of the deprecated ``/api/oauth/token``: it answers 404, only ``/api/v1/oauth/token``
    #: issues API-client tokens
    legacy_oauth_removed: bool = False


def _form(request: web.Request, raw: bytes) -> dict[str, str] | None:
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return None


def _mint(hub: EmulatorHub, subject: str, lifetime: float) -> str:
    now = int(time.time())
    claims = f'{{"sub":"{subject}","aud":"{AUDIENCE}","iat":{now},"exp":{now + int(lifetime)}}}'
    body = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
    value = f"eyJhbGciOiJIUzI1NiJ9.{body}.{secrets.token_urlsafe(24)}"
    hub.tokens[value] = IssuedToken(
        value=value,
        client_id=subject,
        audience=AUDIENCE,
        roles=("api-role:1",),
        expires_at=time.time() + lifetime,
    )
    return value


def _seconds(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _bearer(hub: EmulatorHub, request: web.Request) -> str | None:
    """The request's valid Jamf token, or None."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    issued = hub.tokens.get(value.strip())
    if issued is None or issued.audience != AUDIENCE or issued.expires_at <= time.time():
        return None
    return issued.value


class _Routes:
    """The routes of :func:`create_app`, sharing its state."""

    def __init__(self, hub: EmulatorHub, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings

    async def oauth_token(self, request: web.Request) -> web.Response:
        form = _form(request, await request.read())
        if form is None:
            return json_response({"error": "invalid_request"}, status=400)
        if form.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, status=400)
        client_id, given = form.get("client_id", ""), form.get("client_secret", "")
        expected = self.settings.clients.get(client_id)
        if expected is None or not given or not secrets.compare_digest(given.encode(), expected.encode()):
            return json_response({"error": "invalid_client"}, status=401)
        value = _mint(self.hub, client_id, self.settings.token_lifetime)
        return json_response(
            {
                "access_token": value,
                "scope": "api-role:1",
                "token_type": "Bearer",
                "expires_in": _seconds(self.settings.token_lifetime),
            }
        )

    def _expires(self) -> str:
        when = datetime.fromtimestamp(time.time() + self.settings.token_lifetime, UTC)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    async def user_token(self, request: web.Request) -> web.Response:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        user = password = ""
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = ""
        expected = self.settings.users.get(user)
        if expected is None or not secrets.compare_digest(password.encode(), expected.encode()):
            return api_error(401, "INVALID_CREDENTIALS", "Unauthorized")
        return json_response(
            {"token": _mint(self.hub, user, self.settings.token_lifetime), "expires": self._expires()}
        )

    async def keep_alive(self, request: web.Request) -> web.Response:
        old = _bearer(self.hub, request)
        if old is None:
            return api_error(401, "INVALID_TOKEN", "Unauthorized")
        subject = self.hub.tokens.pop(old).client_id
        return json_response(
            {"token": _mint(self.hub, subject, self.settings.token_lifetime), "expires": self._expires()}
        )

    async def invalidate(self, request: web.Request) -> web.Response:
        old = _bearer(self.hub, request)
        if old is None:
            return api_error(401, "INVALID_TOKEN", "Unauthorized")
        self.hub.tokens.pop(old, None)
        return web.Response(status=204)

    def authorised(self, request: web.Request) -> web.Response | None:
        if _bearer(self.hub, request) is None:
            return classic_error(401, "The request requires user authentication")
        return None

    async def legacy_oauth_token(self, request: web.Request) -> web.Response:
        if self.settings.legacy_oauth_removed:
            await request.read()
            return api_error(404, "NOT_FOUND", "Not Found")
        return await self.oauth_token(request)


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The Jamf Pro routes, mounted at ``/jamf``."""
    st = state(hub)
    st.cluster.configure(settings.cluster_nodes, settings.cluster_refresh, settings.cluster_cookie)
    hub.reset_hooks.append(st.clear)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        node = st.cluster.route(request)
        if settings.max_concurrent and st.in_flight >= settings.max_concurrent:
            st.cluster.done(request)
            return classic_error(503, "Too many concurrent requests")
        st.in_flight += 1
        try:
            if settings.response_delay:
                await asyncio.sleep(settings.response_delay)
            response: web.StreamResponse = await handler(request)
            st.cluster.stamp(response, node)
            return response
        finally:
            st.in_flight = max(0, st.in_flight - 1)
            st.cluster.done(request)

    app = web.Application(middlewares=[guard])

    routes = _Routes(hub, settings)
    app.router.add_post(LEGACY_OAUTH_PATH, routes.legacy_oauth_token)
    app.router.add_post(OAUTH_PATH, routes.oauth_token)
    app.router.add_post("/api/v1/auth/token", routes.user_token)
    app.router.add_post("/api/v1/auth/keep-alive", routes.keep_alive)
    app.router.add_post("/api/v1/auth/invalidate-token", routes.invalidate)
    profiles.add_routes(app, st, routes.authorised)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Point the Jamf connector at this emulator with the first API client."""
    client_id, secret = next(iter(settings.clients.items()), (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
    entry: dict[str, Any] = {
        "url_env": "JAMF_URL",
        "client_id": client_id,
        "client_secret_env": "JAMF_CLIENT_SECRET",
        "allow_http": True,
    }
    return entry, {"JAMF_URL": base_url + "/jamf", "JAMF_CLIENT_SECRET": secret}
