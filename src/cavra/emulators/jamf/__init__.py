"""Emulated Jamf Pro, written from providers.md §9 ("What an emulator must check").

Routes (mounted at ``/jamf``):

* ``POST /api/oauth/token`` and ``POST /api/v1/oauth/token``: API-client credentials, form-encoded
  (``grant_type=client_credentials``, ``client_id``, ``client_secret``). Not form-encoded or another grant:
  400 ``invalid_request`` / ``unsupported_grant_type``; unknown client or wrong secret: 401
  ``invalid_client``. Success: ``{"access_token", "scope", "token_type": "Bearer", "expires_in"}``.
* ``POST /api/v1/auth/token`` with HTTP Basic (a user account): ``{"token", "expires"}``;
  ``POST /api/v1/auth/keep-alive`` rotates the Bearer token; ``POST /api/v1/auth/invalidate-token`` is 204.
* Every other route needs ``Authorization: Bearer <token>`` that this emulator issued and that has not
  expired (``token_lifetime`` seconds, short in tests), else 401. Basic on ``/JSSResource`` is 401, as
  from Jamf Pro 11.5.
* Classic API ``/JSSResource/osxconfigurationprofiles``: ``GET`` (list), ``GET id/{id}``,
  ``GET name/{name}``, ``POST`` (and ``POST id/0``), ``PUT id/{id}``, ``PUT name/{name}``,
  ``DELETE id/{id}``. Bodies are XML (``text/xml`` or ``application/xml``, else 415); malformed XML, a
  wrong root element or ``payloads`` that are not a property list give 400 HTML; ``general/name`` is
  required (400); a duplicate name is 409 with ``<p>Error: Duplicate name</p>``; create and update answer
  201 with ``<os_x_configuration_profile><id>N</id></os_x_configuration_profile>``. Errors are HTML pages.
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
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, IssuedToken, json_response
from cavra.emulators.jamf.model import (
    JamfState,
    Profile,
    api_error,
    classic_error,
    id_answer,
    parse_profile,
    state,
    stored_profile,
    xml_answer,
)

__all__ = ["JamfState", "Profile", "Settings", "create_app", "demo_config", "parse_profile", "state"]

DEMO_CLIENT_ID = "0c6f3a9e-41d2-4b7e-9a85-3e2d1f7c6b08"
DEMO_CLIENT_SECRET = "jamf-demo-secret~Zp4Lw9Qe2Rt7Yx1M"
DEMO_USERNAME = "cavra-api"
DEMO_PASSWORD = "jamf-demo-password~Vb8Nc3Kd6"
AUDIENCE = "jamf"


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


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The Jamf Pro routes, mounted at ``/jamf``."""
    st = state(hub)
    hub.reset_hooks.append(st.clear)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if settings.max_concurrent and st.in_flight >= settings.max_concurrent:
            return classic_error(503, "Too many concurrent requests")
        st.in_flight += 1
        try:
            if settings.response_delay:
                await asyncio.sleep(settings.response_delay)
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            st.in_flight = max(0, st.in_flight - 1)

    app = web.Application(middlewares=[guard])

    async def oauth_token(request: web.Request) -> web.Response:
        form = _form(request, await request.read())
        if form is None:
            return json_response({"error": "invalid_request"}, status=400)
        if form.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, status=400)
        client_id, given = form.get("client_id", ""), form.get("client_secret", "")
        expected = settings.clients.get(client_id)
        if expected is None or not given or not secrets.compare_digest(given.encode(), expected.encode()):
            return json_response({"error": "invalid_client"}, status=401)
        value = _mint(hub, client_id, settings.token_lifetime)
        return json_response(
            {
                "access_token": value,
                "scope": "api-role:1",
                "token_type": "Bearer",
                "expires_in": _seconds(settings.token_lifetime),
            }
        )

    def _expires() -> str:
        when = datetime.fromtimestamp(time.time() + settings.token_lifetime, UTC)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    async def user_token(request: web.Request) -> web.Response:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        user = password = ""
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = ""
        expected = settings.users.get(user)
        if expected is None or not secrets.compare_digest(password.encode(), expected.encode()):
            return api_error(401, "INVALID_CREDENTIALS", "Unauthorized")
        return json_response({"token": _mint(hub, user, settings.token_lifetime), "expires": _expires()})

    async def keep_alive(request: web.Request) -> web.Response:
        old = _bearer(hub, request)
        if old is None:
            return api_error(401, "INVALID_TOKEN", "Unauthorized")
        subject = hub.tokens.pop(old).client_id
        return json_response({"token": _mint(hub, subject, settings.token_lifetime), "expires": _expires()})

    async def invalidate(request: web.Request) -> web.Response:
        old = _bearer(hub, request)
        if old is None:
            return api_error(401, "INVALID_TOKEN", "Unauthorized")
        hub.tokens.pop(old, None)
        return web.Response(status=204)

    def authorised(request: web.Request) -> web.Response | None:
        if _bearer(hub, request) is None:
            return classic_error(401, "The request requires user authentication")
        return None

    def xml_body_error(request: web.Request) -> web.Response | None:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in ("text/xml", "application/xml"):
            return classic_error(415, "Unsupported Media Type: send text/xml or application/xml")
        return None

    def find(request: web.Request) -> Profile | web.Response | None:
        key, value = request.match_info["key"], request.match_info["value"]
        if key == "id":
            try:
                return st.profiles.get(int(value))
            except ValueError:
                return classic_error(400, f"Invalid id {value}")
        if key == "name":
            return st.by_name(value)
        return classic_error(404, "The server has not found anything matching the request URI")

    async def list_profiles(request: web.Request) -> web.Response:
        denied = authorised(request)
        if denied is not None:
            return denied
        root = ET.Element("os_x_configuration_profiles")
        ET.SubElement(root, "size").text = str(len(st.profiles))
        for profile in st.profiles.values():
            item = ET.SubElement(root, "os_x_configuration_profile")
            ET.SubElement(item, "id").text = str(profile.id)
            ET.SubElement(item, "name").text = profile.name
        return xml_answer(root)

    async def get_profile(request: web.Request) -> web.Response:
        denied = authorised(request)
        if denied is not None:
            return denied
        found = find(request)
        if isinstance(found, web.Response):
            return found
        if found is None:
            return classic_error(404, "The server has not found anything matching the request URI")
        return xml_answer(stored_profile(found))

    async def create_profile(request: web.Request) -> web.Response:
        denied = authorised(request) or xml_body_error(request)
        if denied is not None:
            return denied
        if request.match_info.get("key", "id") != "id":
            return classic_error(400, "Create by id only (id/0)")
        root, error = parse_profile(await request.read())
        if root is None:
            return classic_error(400, error or "Bad Request")
        name = (root.findtext("general/name") or "").strip()
        if st.by_name(name) is not None:
            return classic_error(409, "Duplicate name")
        profile = Profile(id=st.next_id, name=name, element=root)
        st.next_id += 1
        st.profiles[profile.id] = profile
        return id_answer(profile.id)

    async def update_profile(request: web.Request) -> web.Response:
        denied = authorised(request) or xml_body_error(request)
        if denied is not None:
            return denied
        found = find(request)
        if isinstance(found, web.Response):
            return found
        if found is None:
            return classic_error(404, "The server has not found anything matching the request URI")
        root, error = parse_profile(await request.read())
        if root is None:
            return classic_error(400, error or "Bad Request")
        name = (root.findtext("general/name") or "").strip()
        clash = st.by_name(name)
        if clash is not None and clash.id != found.id:
            return classic_error(409, "Duplicate name")
        found.name, found.element = name, root
        return id_answer(found.id)

    async def delete_profile(request: web.Request) -> web.Response:
        denied = authorised(request)
        if denied is not None:
            return denied
        found = find(request)
        if isinstance(found, web.Response):
            return found
        if found is None:
            return classic_error(404, "The server has not found anything matching the request URI")
        del st.profiles[found.id]
        return id_answer(found.id)

    for path in ("/api/oauth/token", "/api/v1/oauth/token"):
        app.router.add_post(path, oauth_token)
    app.router.add_post("/api/v1/auth/token", user_token)
    app.router.add_post("/api/v1/auth/keep-alive", keep_alive)
    app.router.add_post("/api/v1/auth/invalidate-token", invalidate)
    base = "/JSSResource/osxconfigurationprofiles"
    app.router.add_get(base, list_profiles)
    app.router.add_post(base, create_profile)
    app.router.add_get(base + "/{key}/{value}", get_profile)
    app.router.add_post(base + "/{key}/{value}", create_profile)
    app.router.add_put(base + "/{key}/{value}", update_profile)
    app.router.add_delete(base + "/{key}/{value}", delete_profile)
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
