"""Emulated Microsoft Entra ID token endpoint (OAuth 2.0 client credentials), from providers.md §2a/§10.

``POST /entra/{tenant}/oauth2/v2.0/token`` with an ``application/x-www-form-urlencoded`` body
(``grant_type=client_credentials``, ``client_id``, ``client_secret``, ``scope=<resource>/.default``).

* A missing form field gives ``400 invalid_request``; another grant type ``400 unsupported_grant_type``;
  a scope that does not end with ``/.default`` ``400 invalid_scope`` (AADSTS1002012: "Client credential
  flows must have a scope value with /.default suffixed to the resource identifier"); a scope naming a
  resource the tenant does not know ``400 invalid_resource`` with AADSTS500011 ("The resource principal
  named … was not found in the tenant named …", as reported from real tenants, e.g. Confluent's Entra ID
  OAuth notes quoting ``{"error":"invalid_resource","error_description":"AADSTS500011: …"}``; Microsoft
  Learn, "Microsoft Entra authentication and authorization error codes": AADSTS500011
  InvalidResourceServicePrincipalNotFound); an unknown application ``400 unauthorized_client``; a missing
  or wrong secret ``401 invalid_client``.
* Success is ``200 {"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":…}``.
  Every issued token is recorded in ``hub.tokens`` as an :class:`IssuedToken` whose ``audience`` is the
  scope's resource (``https://monitor.azure.com``, ``https://graph.microsoft.com``) and whose ``roles``
  are the ones configured for that client and resource. ``expires_at`` is wall-clock (``time.time()``).

The resource servers (the Sentinel and Graph emulators) validate Bearer tokens against ``hub.tokens``.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, IssuedToken, json_response

#: The demo tenant. Any GUID-shaped or domain tenant is accepted when ``Settings.tenants`` is empty.
DEMO_TENANT_ID = "7a3c1e52-9d4b-4f6e-8a21-0c5b7e9d3f10"

#: Monitoring Metrics Publisher on the demo DCR: what the Sentinel (Logs Ingestion) connector needs.
SENTINEL_CLIENT_ID = "3f9e2a7c-1b6d-4c8e-9f04-5a2d7b1c8e63"
SENTINEL_CLIENT_SECRET = "sentinel-demo-secret~Qx7vR2mK9pL4"
MONITORING_METRICS_PUBLISHER = "Monitoring Metrics Publisher"

#: Application permission DeviceManagementConfiguration.ReadWrite.All on Graph: what Intune needs.
INTUNE_CLIENT_ID = "b84d6f1a-2e7c-4a93-8d5b-6c1f0e9a2b74"
INTUNE_CLIENT_SECRET = "intune-demo-secret~Jw3nT8sB5vF1"
INTUNE_ROLE = "DeviceManagementConfiguration.ReadWrite.All"

#: A registered application that holds no role anywhere (for 403 paths).
NOROLE_CLIENT_ID = "e1c7a9b3-5f2d-4e60-a8b4-9d3c2f1e0a57"
NOROLE_CLIENT_SECRET = "norole-demo-secret~Hd6yP0cZ2wN7"

MONITOR_AUDIENCE = "https://monitor.azure.com"
GRAPH_AUDIENCE = "https://graph.microsoft.com"


def _default_clients() -> dict[str, dict[str, Any]]:
    return {
        SENTINEL_CLIENT_ID: {
            "secret": SENTINEL_CLIENT_SECRET,
            "roles": {MONITOR_AUDIENCE: [MONITORING_METRICS_PUBLISHER]},
        },
        INTUNE_CLIENT_ID: {"secret": INTUNE_CLIENT_SECRET, "roles": {GRAPH_AUDIENCE: [INTUNE_ROLE]}},
        NOROLE_CLIENT_ID: {"secret": NOROLE_CLIENT_SECRET, "roles": {}},
    }


def _default_resources() -> list[str]:
    return [
        MONITOR_AUDIENCE,
        "https://monitor.azure.us",
        "https://monitor.azure.cn",
        GRAPH_AUDIENCE,
    ]


@dataclass
class Settings:
    """Registered applications and the resources the tenant knows.

    ``clients`` maps a client id to ``{"secret": str, "roles": {audience: [role, ...]}}``; a token for an
    audience carries that audience's roles (none when the audience is not listed).
    """

    tenants: list[str] = field(default_factory=lambda: [DEMO_TENANT_ID])
    clients: dict[str, dict[str, Any]] = field(default_factory=_default_clients)
    resources: list[str] = field(default_factory=_default_resources)
    token_lifetime: int = 3599


def _error(status: int, error: str, code: int, description: str) -> web.Response:
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace = str(uuid.uuid4())
    return json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Timestamp: {now}",
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        },
        status=status,
    )


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _mint(tenant: str, client_id: str, audience: str, roles: list[str], lifetime: int) -> str:
    """A JWT-shaped opaque token (the signature is random: resource servers look it up in the hub)."""
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "kid": "cavra-emulator"}
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": client_id,
        "tid": tenant,
        "roles": roles,
        "ver": "1.0",
    }
    return f"{_b64url(header)}.{_b64url(claims)}.{secrets.token_urlsafe(32)}"


def resource_of(scope: str) -> str | None:
    """``https://monitor.azure.com/.default`` (or ``…//.default``) -> ``https://monitor.azure.com``."""
    if not scope.endswith("/.default"):
        return None
    return scope[: -len("/.default")].rstrip("/")


def _resource_error(scope: str, tenant: str, settings: Settings) -> web.Response | None:
    """``invalid_scope`` (no ``/.default``) or ``invalid_resource`` (a resource the tenant does not know)."""
    resource = resource_of(scope)
    if resource is None:
        return _error(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier (application ID URI).",
        )
    if resource not in settings.resources:
        return _error(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named {tenant}. This "
            "can happen if the application has not been installed by the administrator of the tenant or "
            "consented to by any user in the tenant. You might have sent your authentication request to "
            "the wrong tenant.",
        )
    return None


def _client_error(form: dict[str, str], settings: Settings) -> web.Response | None:
    """``unauthorized_client`` (unknown application) or ``invalid_client`` (missing or wrong secret)."""
    client = settings.clients.get(form["client_id"])
    if client is None:
        return _error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{form['client_id']}' was not found in the directory.",
        )
    given = form.get("client_secret", "")
    if not given:
        return _error(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' "
            "grant type.",
        )
    if not secrets.compare_digest(given.encode(), str(client.get("secret", "")).encode()):
        return _error(
            401,
            "invalid_client",
            7000215,
            f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
            f"secret value, not the client secret ID, for a secret added to app '{form['client_id']}'.",
        )
    return None


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The token endpoint, mounted at ``/entra``."""
    app = web.Application()

    async def token(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if settings.tenants and tenant not in settings.tenants:
            return _error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return _error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        raw = await request.read()
        try:
            form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return _error(400, "invalid_request", 900144, "The request body is not valid form data.")
        for name in ("grant_type", "client_id", "scope"):
            if not form.get(name):
                return _error(
                    400,
                    "invalid_request",
                    900144,
                    f"The request body must contain the following parameter: '{name}'.",
                )
        if form["grant_type"] != "client_credentials":
            return _error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        refused = _resource_error(form["scope"], tenant, settings) or _client_error(form, settings)
        if refused is not None:
            return refused
        resource = str(resource_of(form["scope"]))
        client = settings.clients[form["client_id"]]
        role_map: dict[str, list[str]] = client.get("roles") or {}
        roles = list(role_map.get(resource, []))
        value = _mint(tenant, form["client_id"], resource, roles, settings.token_lifetime)
        hub.tokens[value] = IssuedToken(
            value=value,
            client_id=form["client_id"],
            audience=resource,
            roles=tuple(roles),
            expires_at=time.time() + settings.token_lifetime,
        )
        return json_response(
            {
                "token_type": "Bearer",
                "expires_in": settings.token_lifetime,
                "ext_expires_in": settings.token_lifetime,
                "access_token": value,
            }
        )

    async def not_allowed(request: web.Request) -> web.Response:
        return _error(405, "invalid_request", 900561, "The endpoint only accepts POST requests.")

    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_route("*", "/{tenant}/oauth2/v2.0/token", not_allowed)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Entra is not a delivery target: no connector entry of its own."""
    return None, {}
