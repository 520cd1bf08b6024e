"""Emulated Splunk HTTP Event Collector, written from providers.md §1 ("What an emulator must check").

Routes (at ``/splunk``): ``POST /services/collector{,/event,/event/1.0,/raw,/raw/1.0}``, ``POST …/ack``,
``GET …/health{,/1.0}``; another method 405, an unknown path 404 (``{"text", "code": 404}`` bodies).

Auth: ``Authorization: Splunk <token>`` (or Basic with the token as password, or ``?token=`` where the token
allows it). No header 401 code 2; malformed 401 code 3; unknown 403 code 4; disabled 403 code 1; a query
token where not allowed 400 code 16.

Bodies are a stream of concatenated JSON envelopes. The first bad one answers 400 with its code (6, 7, 12,
13 or 15) and ``invalid-event-number``; the envelopes before it are indexed, it and the rest are dropped.
An empty body is 400 code 5. gzip is accepted; deflate (and any other encoding) is 415. A body over
``max_content_length`` bytes (before or after gunzip) is 413. ``failure`` switches the collector into
503 code 9 / 18 / 19 / 20 or 500 code 8. Indexed events are kept in :func:`state` for tests. Tests script
a bad event in a batch with ``unparsable_event_ids``: an envelope whose event carries such an ``event_id``
is refused as HEC refuses one it cannot parse (400 code 6 with its ``invalid-event-number``).

Indexer acknowledgement (a token with ``"ack": true``): each accepted request answers an ``ackId`` counting
up per channel; ``POST …/ack`` with ``{"acks": [ids]}`` answers ``{"acks": {"id": bool}}``. An id is
reported true on its ``ack_after_polls``-th poll (default 1; 0 never), then forgotten (false again).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from cavra.emulators.framework import BodyEncodingError, EmulatorHub, decode_body, json_response
from cavra.emulators.splunk_stream import BodyError, parse_event_stream, parse_raw

DEMO_TOKEN = "c0ffee00-cafe-4bad-b0a7-5e1f00d0a000"
CHANNEL_HEADER = "X-Splunk-Request-Channel"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

#: failure switch -> (HTTP status, HEC code, text)
FAILURES: dict[str, tuple[int, int, str]] = {
    "busy": (503, 9, "Server is busy"),
    "internal": (500, 8, "Internal server error"),
    "queues_full": (503, 18, "HEC is unhealthy, queues are full"),
    "ack_unavailable": (503, 19, "HEC is unhealthy, ack service unavailable"),
    "queues_full_ack_unavailable": (503, 20, "HEC is unhealthy, queues are full, ack service unavailable"),
}


def _default_tokens() -> dict[str, dict[str, Any]]:
    return {DEMO_TOKEN: {"name": "cavra-demo", "indexes": ["main", "cavra", "security"]}}


@dataclass
class Settings:
    """HEC tokens and switches.

    ``tokens`` maps a token GUID to ``{"name": str, "disabled": bool, "indexes": [allowed, ...] or None (any),
    "default_index": "main", "sourcetype": "httpevent", "ack": bool, "allow_query_string": bool}``.
    ``failure`` is one of :data:`FAILURES` (or ``None``) and may be changed while serving.
    """

    tokens: dict[str, dict[str, Any]] = field(default_factory=_default_tokens)
    max_content_length: int = 1_000_000
    failure: str | None = None
    #: an ackId is reported true on its Nth poll (1: indexed at once); 0 never acknowledges (a stuck indexer)
    ack_after_polls: int = 1
    #: scripted: envelopes whose event has one of these ``event_id`` values are refused with code 6
    unparsable_event_ids: frozenset[str] = frozenset()


@dataclass
class IndexedEvent:
    """One event as the emulated indexer stored it."""

    token_name: str
    index: str
    sourcetype: str
    source: str
    host: str | None
    time: float
    event: Any
    fields: dict[str, Any]
    channel: str | None


@dataclass
class SplunkState:
    """What the emulated indexer holds: indexed events and per-channel acknowledgements.

    ``pending_acks`` maps a channel to its unacknowledged ackIds and how often each was polled.
    """

    events: list[IndexedEvent] = field(default_factory=list)
    next_ack: dict[str, int] = field(default_factory=dict)
    pending_acks: dict[str, dict[int, int]] = field(default_factory=dict)

    def clear(self) -> None:
        self.events.clear()
        self.next_ack.clear()
        self.pending_acks.clear()


_STATES: WeakKeyDictionary[EmulatorHub, SplunkState] = WeakKeyDictionary()


def state(hub: EmulatorHub) -> SplunkState:
    """The Splunk emulator's state on this hub (indexed events, acks)."""
    found = _STATES.get(hub)
    if found is None:
        found = SplunkState()
        _STATES[hub] = found
    return found


def hec(text: str, code: int, status: int, **extra: Any) -> web.Response:
    return json_response({"text": text, "code": code, **extra}, status=status)


def _not_found(status: int = 404) -> web.Response:
    return hec("The requested URL was not found on this server.", 404, status)


def _authenticate(request: web.Request, settings: Settings) -> dict[str, Any] | web.Response:
    """The token's settings, or HEC's answer to a request it does not authenticate."""
    header = request.headers.get("Authorization")
    query_token = request.query.get("token")
    token: str | None = None
    from_query = False
    if header is None:
        if query_token is None:
            return hec("Token is required", 2, 401)
        token, from_query = query_token, True
    else:
        scheme, _, rest = header.strip().partition(" ")
        rest = rest.strip()
        if scheme.lower() == "splunk" and rest:
            token = rest
        elif scheme.lower() == "basic" and rest:
            try:
                decoded = base64.b64decode(rest, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return hec("Invalid authorization", 3, 401)
            _, sep, password = decoded.partition(":")
            if not sep or not password:
                return hec("Invalid authorization", 3, 401)
            token = password
        else:
            return hec("Invalid authorization", 3, 401)
    spec = settings.tokens.get(token)
    if spec is None:
        return hec("Invalid token", 4, 403)
    if from_query and not spec.get("allow_query_string", False):
        return hec("Query string authorization is not enabled", 16, 400)
    if spec.get("disabled", False):
        return hec("Token disabled", 1, 403)
    return spec


def _channel(request: web.Request) -> str | None:
    return request.headers.get(CHANNEL_HEADER) or request.query.get("channel")


def _require_channel(channel: str | None) -> str | web.Response:
    if not channel:
        return hec("Data channel is missing", 10, 400)
    return channel if _GUID.match(channel) else hec("Invalid data channel", 11, 400)


def _decoded_body(request: web.Request, raw: bytes, limit: int) -> bytes | web.Response:
    """The body as sent (the server does not decompress), gunzipped; 413 over ``limit`` before or after."""
    if len(raw) > limit:
        return hec(f"Content-Length of {len(raw)} too large (maximum is {limit})", 413, 413)
    try:
        return decode_body(raw, request.headers.get("Content-Encoding"), limit, accepted=("gzip",))
    except BodyEncodingError as exc:
        if exc.reason == "unsupported":
            return web.Response(
                status=415,
                text="<!doctype html><html><head><title>415 Unsupported Media Type</title></head><body>"
                "<h1>Unsupported Media Type</h1><p>Unsupported Content-Encoding.</p></body></html>",
                content_type="text/html",
            )
        if exc.reason == "too_large":
            return hec(f"Content-Length of decompressed body too large (maximum is {limit})", 413, 413)
        return hec("Invalid data format", 6, 400)


class _Routes:
    """The routes of :func:`create_app`, sharing its state."""

    def __init__(self, settings: Settings, st: SplunkState) -> None:
        self.settings = settings
        self.st = st

    def failure(self) -> web.Response | None:
        if self.settings.failure is None:
            return None
        status, code, text = FAILURES[self.settings.failure]
        return hec(text, code, status)

    async def ingest(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return _not_found(405)
        spec = _authenticate(request, self.settings)
        if isinstance(spec, web.Response):
            return spec
        broken = self.failure()
        if broken is not None:
            return broken
        channel = _channel(request)
        if spec.get("ack", False) and isinstance(checked := _require_channel(channel), web.Response):
            return checked
        body = _decoded_body(request, await request.read(), self.settings.max_content_length)
        if isinstance(body, web.Response):
            return body
        defaults = {
            "index": str(spec.get("default_index", "main")),
            "sourcetype": str(spec.get("sourcetype", "httpevent")),
            "source": f"http:{spec.get('name', 'token')}",
        }
        allowed = spec.get("indexes")
        raw_route = request.path.rstrip("/").endswith(("/raw", "/raw/1.0"))
        if raw_route:
            query = {
                k: request.query[k] for k in ("index", "sourcetype", "source", "host") if k in request.query
            }
            envelopes, error = parse_raw(body, query, allowed)
        else:
            envelopes, error = parse_event_stream(body, allowed, self.settings.unparsable_event_ids)
        for env in envelopes:
            self.st.events.append(
                IndexedEvent(
                    token_name=str(spec.get("name", "")),
                    index=str(env.get("index", defaults["index"])),
                    sourcetype=str(env.get("sourcetype", defaults["sourcetype"])),
                    source=str(env.get("source", defaults["source"])),
                    host=env.get("host"),
                    time=float(env["time"]) if "time" in env else time.time(),
                    event=env.get("event"),
                    fields=dict(env.get("fields") or {}),
                    channel=channel,
                )
            )
        if error is not None:
            return _body_error(error)
        if spec.get("ack", False) and channel:
            ack_id = self.st.next_ack.get(channel, 0)
            self.st.next_ack[channel] = ack_id + 1
            self.st.pending_acks.setdefault(channel, {})[ack_id] = 0
            return json_response({"text": "Success", "code": 0, "ackId": ack_id})
        return hec("Success", 0, 200)

    async def ack(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return _not_found(405)
        spec = _authenticate(request, self.settings)
        if isinstance(spec, web.Response):
            return spec
        if not spec.get("ack", False):
            return hec("ACK is disabled", 14, 400)
        channel = _require_channel(_channel(request))
        if isinstance(channel, web.Response):
            return channel
        try:
            data = json.loads(await request.read())
            ids = [int(i) for i in data["acks"]]
        except (ValueError, KeyError, TypeError):
            return hec("Invalid data format", 6, 400)
        pending = self.st.pending_acks.get(channel, {})
        answer: dict[str, bool] = {}
        for ack_id in ids:
            if ack_id not in pending:  # unknown, or already reported true (then forgotten): false
                answer[str(ack_id)] = False
                continue
            pending[ack_id] += 1
            done = self.settings.ack_after_polls > 0 and pending[ack_id] >= self.settings.ack_after_polls
            answer[str(ack_id)] = done
            if done:
                del pending[ack_id]
        return json_response({"acks": answer})

    async def health(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            return _not_found(405)
        if self.settings.failure in ("queues_full", "ack_unavailable", "queues_full_ack_unavailable"):
            status, code, text = FAILURES[self.settings.failure]
            return hec(text, code, status)
        return hec("HEC is healthy", 17, 200)

    async def unknown(self, request: web.Request) -> web.Response:
        return _not_found(404)


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The HEC routes, mounted at ``/splunk``."""
    app = web.Application()
    st = state(hub)
    hub.reset_hooks.append(st.clear)

    routes = _Routes(settings, st)
    for path in ("", "/event", "/event/1.0", "/raw", "/raw/1.0"):
        app.router.add_route("*", "/services/collector" + path, routes.ingest)
    app.router.add_route("*", "/services/collector/ack", routes.ack)
    for path in ("/health", "/health/1.0"):
        app.router.add_route("*", "/services/collector" + path, routes.health)
    app.router.add_route("*", "/{tail:.*}", routes.unknown)
    return app


def _body_error(error: BodyError) -> web.Response:
    if error.code == 5:
        return hec("No data", 5, 400)
    return hec(error.text, error.code, 400, **{"invalid-event-number": error.index})


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Point the Splunk connector at this emulator with the first enabled token."""
    token = next((t for t, spec in settings.tokens.items() if not spec.get("disabled")), DEMO_TOKEN)
    entry: dict[str, Any] = {
        "url_env": "SPLUNK_HEC_URL",
        "token_env": "SPLUNK_HEC_TOKEN",
        "index": "main",
        "sourcetype": "cavra:evidence",
        "allow_http": True,
    }
    env = {"SPLUNK_HEC_URL": base_url + "/splunk/services/collector", "SPLUNK_HEC_TOKEN": token}
    return entry, env
