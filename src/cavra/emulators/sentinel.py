"""Emulated Azure Monitor Logs Ingestion API (Microsoft Sentinel), from providers.md §2a and §2.x.

``POST /sentinel/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`` checks, in order:

1. ``Authorization: Bearer <token>`` issued by the Entra emulator (``hub.tokens``): missing, unknown or
   expired token, or a token for another audience, gives 401.
2. ``api-version=2023-01-01`` (400 ``MissingApiVersionParameter`` / ``InvalidApiVersionParameter``).
3. A known DCR immutable id and stream name (404).
4. The app holds ``Monitoring Metrics Publisher`` on the DCR (403 ``OperationFailed``).
5. ``Content-Type: application/json`` (415); ``Content-Encoding: gzip`` is gunzipped; more than 1,048,576
   bytes before or after decompression gives 413.
6. The body is a JSON array of objects (400), whose column names follow the rules and are declared by the
   stream (400 ``InvalidColumn``); optionally the value types match the declaration (400).
7. Success: ``204`` with no body. ``throttle_retry_after`` answers 429 with ``Retry-After``; ``unavailable``
   answers 503.

It also serves the seed's "plain ingestion endpoint authenticated by an API-key header":
``POST /sentinel/api/logs`` with ``x-api-key`` (missing 401, unknown 403), a JSON array or object body of at
most 1,048,576 bytes, answering ``200 {"accepted": N}``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from cavra.emulators.entra import DEMO_TENANT_ID, MONITOR_AUDIENCE, MONITORING_METRICS_PUBLISHER
from cavra.emulators.entra import SENTINEL_CLIENT_ID as DEMO_CLIENT_ID
from cavra.emulators.entra import SENTINEL_CLIENT_SECRET as DEMO_CLIENT_SECRET
from cavra.emulators.framework import BodyEncodingError, EmulatorHub, IssuedToken, decode_body, json_response

DEMO_DCR = "dcr-6f1e0c9a8b7d4e3fa2b1c0d9e8f7a6b5"
DEMO_STREAM = "Custom-CavraEvents"
DEMO_API_KEY = "sentinel-ingest-key-9Lq2Zr7Xw4Tn"
API_VERSION = "2023-01-01"
MAX_BODY = 1_048_576
RESERVED = frozenset({"_ResourceId", "id", "_SubscriptionId", "TenantId", "Type", "UniqueId", "Title"})
_COLUMN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,44}$")


def _default_dcrs() -> dict[str, dict[str, dict[str, str]]]:
    return {
        DEMO_DCR: {
            DEMO_STREAM: {
                "TimeGenerated": "datetime",
                "EventId": "string",
                "EventType": "string",
                "SessionId": "string",
                "Severity": "string",
                "EventData": "dynamic",
            }
        }
    }


@dataclass
class Settings:
    """DCRs with their streams' column declarations (column -> type), and switches.

    Types: ``string``, ``int``, ``long``, ``real``, ``boolean``, ``datetime``, ``dynamic``. ``check_types``
    makes a value of the wrong JSON type a 400. ``api_keys`` serve the API-key mode (key -> name).
    """

    dcrs: dict[str, dict[str, dict[str, str]]] = field(default_factory=_default_dcrs)
    audience: str = MONITOR_AUDIENCE
    required_role: str = MONITORING_METRICS_PUBLISHER
    tenant_id: str = DEMO_TENANT_ID
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    check_types: bool = True
    max_body_bytes: int = MAX_BODY
    throttle_retry_after: int | None = None
    unavailable: bool = False
    api_keys: dict[str, str] = field(default_factory=lambda: {DEMO_API_KEY: "cavra-demo"})
    api_key_header: str = "x-api-key"


@dataclass
class SentinelState:
    """Rows ingested per (DCR, stream), and rows received by the API-key endpoint."""

    rows: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    api_rows: list[dict[str, Any]] = field(default_factory=list)

    def clear(self) -> None:
        self.rows.clear()
        self.api_rows.clear()


_STATES: WeakKeyDictionary[EmulatorHub, SentinelState] = WeakKeyDictionary()


def state(hub: EmulatorHub) -> SentinelState:
    """The Sentinel emulator's state on this hub."""
    found = _STATES.get(hub)
    if found is None:
        found = SentinelState()
        _STATES[hub] = found
    return found


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def _bearer(request: web.Request, hub: EmulatorHub, settings: Settings) -> IssuedToken | web.Response:
    challenge = {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common"'}
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return _error(401, "InvalidAuthenticationToken", "An authentication token is required.", challenge)
    token = hub.tokens.get(value.strip())
    if token is None or token.expires_at <= time.time():
        return _error(
            401, "InvalidAuthenticationToken", "The access token is invalid or has expired.", challenge
        )
    if token.audience.rstrip("/") != settings.audience.rstrip("/"):
        return _error(
            401,
            "InvalidAuthenticationTokenAudience",
            f"The access token has an invalid audience; expected '{settings.audience}'. Check that the token "
            "scope matches the cloud of the ingestion endpoint.",
            challenge,
        )
    return token


def _body(request: web.Request, raw: bytes, limit: int) -> bytes | web.Response:
    """The body as sent (the server does not decompress), gunzipped; 413 over ``limit`` before or after."""
    too_large = _error(
        413, "ContentLengthLimitExceeded", f"The request body exceeds the limit of {limit} bytes."
    )
    if len(raw) > limit:
        return too_large
    encoding = request.headers.get("Content-Encoding")
    try:
        return decode_body(raw, encoding, limit, accepted=("gzip",))
    except BodyEncodingError as exc:
        if exc.reason == "too_large":
            return too_large
        if exc.reason == "unsupported":
            return _error(
                415,
                "UnsupportedContentEncoding",
                f"Content-Encoding '{(encoding or '').strip().lower()}' is not supported.",
            )
        return _error(400, "InvalidContentEncoding", "The gzip body cannot be decompressed.")


def _type_ok(kind: str, value: Any) -> bool:
    if value is None or kind == "dynamic":
        return True
    if kind in ("string", "datetime", "guid"):
        return isinstance(value, str)
    if kind in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "real":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return True


def check_rows(rows: list[Any], columns: dict[str, str], check_types: bool) -> str | None:
    """Why the rows do not fit the stream declaration, or ``None``."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"Record {i} is not a JSON object."
        for name, value in row.items():
            if not _COLUMN.match(name) or name in RESERVED:
                return f"Record {i}: column name '{name}' is not valid."
            if name not in columns:
                return f"Record {i}: column '{name}' is not declared by the stream."
            if check_types and not _type_ok(columns[name], value):
                return f"Record {i}: column '{name}' expects type {columns[name]}."
    return None


class _Routes:
    """The routes of :func:`create_app`, sharing its state."""

    def __init__(self, hub: EmulatorHub, settings: Settings, st: SentinelState) -> None:
        self.hub = hub
        self.settings = settings
        self.st = st

    async def ingest(self, request: web.Request) -> web.Response:
        token = _bearer(request, self.hub, self.settings)
        if isinstance(token, web.Response):
            return token
        version = request.query.get("api-version")
        if version is None:
            return _error(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
        if version != API_VERSION:
            return _error(400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid.")
        dcr, stream = request.match_info["dcr"], request.match_info["stream"]
        streams = self.settings.dcrs.get(dcr)
        if streams is None or stream not in streams:
            return _error(404, "NotFound", "The data collection rule or stream was not found.")
        if self.settings.required_role not in token.roles:
            return _error(
                403,
                "OperationFailed",
                "The authentication token provided does not have access to ingest data for the data "
                f"collection rule with immutable Id '{dcr}'.",
            )
        if self.settings.throttle_retry_after is not None:
            return _error(
                429,
                "TooManyRequests",
                "Rate limit exceeded.",
                {"Retry-After": str(self.settings.throttle_retry_after)},
            )
        if self.settings.unavailable:
            return _error(503, "ServiceUnavailable", "The service is unavailable.")
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _error(415, "UnsupportedMediaType", "Content-Type must be application/json.")
        body = _body(request, await request.read(), self.settings.max_body_bytes)
        if isinstance(body, web.Response):
            return body
        try:
            rows = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return _error(400, "InvalidRequestBody", "The request body is not valid JSON.")
        if not isinstance(rows, list):
            return _error(400, "InvalidRequestBody", "The request body must be a JSON array of records.")
        problem = check_rows(rows, streams[stream], self.settings.check_types)
        if problem is not None:
            return _error(400, "InvalidColumn", problem)
        self.st.rows.setdefault((dcr, stream), []).extend(rows)
        return web.Response(status=204)

    async def api_logs(self, request: web.Request) -> web.Response:
        given = request.headers.get(self.settings.api_key_header)
        if not given:
            return _error(401, "Unauthorized", f"The {self.settings.api_key_header} header is required.")
        if not any(secrets.compare_digest(given.encode(), k.encode()) for k in self.settings.api_keys):
            return _error(403, "Forbidden", "The API key is not valid.")
        if self.settings.unavailable:
            return _error(503, "ServiceUnavailable", "The service is unavailable.")
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _error(415, "UnsupportedMediaType", "Content-Type must be application/json.")
        body = _body(request, await request.read(), self.settings.max_body_bytes)
        if isinstance(body, web.Response):
            return body
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return _error(400, "InvalidRequestBody", "The request body is not valid JSON.")
        records = data if isinstance(data, list) else [data]
        if not records or not all(isinstance(r, dict) for r in records):
            return _error(400, "InvalidRequestBody", "The body must be a JSON object or an array of objects.")
        self.st.api_rows.extend(records)
        return json_response({"accepted": len(records), "requestId": str(uuid.uuid4())})

    async def not_allowed(self, request: web.Request) -> web.Response:
        return _error(405, "MethodNotAllowed", f"The method {request.method} is not allowed.")

    async def unknown(self, request: web.Request) -> web.Response:
        return _error(404, "NotFound", "The requested resource was not found.")


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The Logs Ingestion and API-key routes, mounted at ``/sentinel``."""
    app = web.Application()
    st = state(hub)
    hub.reset_hooks.append(st.clear)

    ingest_path = "/dataCollectionRules/{dcr}/streams/{stream}"
    routes = _Routes(hub, settings, st)
    app.router.add_post(ingest_path, routes.ingest)
    app.router.add_route("*", ingest_path, routes.not_allowed)
    app.router.add_post("/api/logs", routes.api_logs)
    app.router.add_route("*", "/api/logs", routes.not_allowed)
    app.router.add_route("*", "/{tail:.*}", routes.unknown)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Point the Sentinel connector (Logs Ingestion mode) at this emulator, with Entra at ``/entra``."""
    dcr = next(iter(settings.dcrs), DEMO_DCR)
    stream = next(iter(settings.dcrs.get(dcr, {})), DEMO_STREAM)
    entry: dict[str, Any] = {
        "mode": "logs_ingestion",
        "url_env": "SENTINEL_DCE_URL",
        "dcr_immutable_id": dcr,
        "stream_name": stream,
        "tenant_id": settings.tenant_id,
        "client_id": settings.client_id,
        "client_secret_env": "SENTINEL_CLIENT_SECRET",
        "authority_url": base_url + "/entra",
        "allow_http": True,
    }
    env = {"SENTINEL_DCE_URL": base_url + "/sentinel", "SENTINEL_CLIENT_SECRET": settings.client_secret}
    return entry, env
