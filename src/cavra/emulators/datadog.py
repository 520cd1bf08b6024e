"""Emulated Datadog Logs intake v2, from providers.md §3 ("What an emulator must check").

``POST /datadog/api/v2/logs`` (any other method 405, any other path 404):

1. ``DD-API-KEY`` missing: 401; unknown: 403; both with the ``{"errors":[{status,title,detail}]}`` shape.
2. ``Content-Type`` must be JSON (400 otherwise); ``Content-Encoding`` gzip and deflate are decoded,
   identity passes, anything else is 415.
3. The decoded body over ``max_payload_bytes`` (5,000,000) is 413; invalid JSON or a body that is neither an
   object nor an array of objects is 400; more than ``max_entries`` (1000) entries answers
   ``too_many_entries_status`` (400 by default, 413 configurable).
4. An entry over ``max_entry_bytes`` (1,000,000) is truncated (its ``message`` is cut) and still accepted.
5. Success: ``202 {}``. Failure statuses (408, 429, 500, 503) come from the framework's scripted faults.

Accepted logs are kept in :func:`state` for tests.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from cavra.emulators.framework import BodyEncodingError, EmulatorHub, decode_body, json_response

DEMO_API_KEY = "5d1f0a9c3b7e4d2a8f6c1e0b9a7d3f52"


@dataclass
class Settings:
    """API keys (key -> name), limits and the status for an array over the entry limit."""

    api_keys: dict[str, str] = field(default_factory=lambda: {DEMO_API_KEY: "cavra-demo"})
    max_payload_bytes: int = 5_000_000
    max_entries: int = 1000
    max_entry_bytes: int = 1_000_000
    too_many_entries_status: int = 400


@dataclass
class StoredLog:
    """One accepted log entry (after truncation) and whether it was truncated."""

    entry: dict[str, Any]
    truncated: bool
    api_key_name: str


@dataclass
class DatadogState:
    """Accepted log entries."""

    logs: list[StoredLog] = field(default_factory=list)

    def clear(self) -> None:
        self.logs.clear()


_STATES: WeakKeyDictionary[EmulatorHub, DatadogState] = WeakKeyDictionary()


def state(hub: EmulatorHub) -> DatadogState:
    """The Datadog emulator's state on this hub."""
    found = _STATES.get(hub)
    if found is None:
        found = DatadogState()
        _STATES[hub] = found
    return found


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
}


def _error(status: int, detail: str) -> web.Response:
    return json_response(
        {"errors": [{"status": str(status), "title": _TITLES.get(status, "Error"), "detail": detail}]},
        status=status,
    )


def _decode(encoding: str, raw: bytes, limit: int) -> bytes | web.Response:
    """The body as sent (the server does not decompress), decoded; 413 over ``limit`` once decoded."""
    try:
        return decode_body(raw, encoding, limit, accepted=("gzip", "deflate"))
    except BodyEncodingError as exc:
        if exc.reason == "too_large":
            return _error(413, f"Payload exceeds the limit of {limit} bytes uncompressed.")
        if exc.reason == "unsupported":
            return _error(415, f"Content-Encoding '{encoding}' is not supported.")
        return _error(400, f"The {encoding} body cannot be decompressed.")


def _truncate(entry: dict[str, Any], limit: int) -> tuple[dict[str, Any], bool]:
    size = len(json.dumps(entry, ensure_ascii=False).encode("utf-8"))
    if size <= limit:
        return entry, False
    cut = dict(entry)
    message = str(cut.get("message", ""))
    excess = size - limit
    keep = max(0, len(message.encode("utf-8")) - excess - 64)
    cut["message"] = message.encode("utf-8")[:keep].decode("utf-8", errors="ignore") + "...TRUNCATED..."
    if len(json.dumps(cut, ensure_ascii=False).encode("utf-8")) > limit:
        # the attributes themselves are too large: keep only the reserved fields and a cut message
        cut = {
            k: cut[k] for k in ("message", "ddsource", "ddtags", "hostname", "service", "status") if k in cut
        }
        cut["message"] = str(cut.get("message", ""))[: limit // 2] + "...TRUNCATED..."
    return cut, True


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The logs intake, mounted at ``/datadog``."""
    app = web.Application()
    st = state(hub)
    hub.reset_hooks.append(st.clear)

    async def logs(request: web.Request) -> web.Response:
        given = request.headers.get("DD-API-KEY")
        if not given:
            return _error(401, "API key is missing")
        name = next(
            (n for k, n in settings.api_keys.items() if secrets.compare_digest(given.encode(), k.encode())),
            None,
        )
        if name is None:
            return _error(403, "API key is invalid")
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _error(400, "Content-Type must be application/json.")
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        body = _decode(encoding, await request.read(), settings.max_payload_bytes)
        if isinstance(body, web.Response):
            return body
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return _error(400, "The body is not valid JSON.")
        entries = data if isinstance(data, list) else [data]
        if not isinstance(data, list | dict) or not all(isinstance(e, dict) for e in entries):
            return _error(400, "The body must be a log object or an array of log objects.")
        if len(entries) > settings.max_entries:
            return _error(
                settings.too_many_entries_status,
                f"The array has {len(entries)} entries; at most {settings.max_entries} are allowed.",
            )
        for entry in entries:
            kept, truncated = _truncate(entry, settings.max_entry_bytes)
            st.logs.append(StoredLog(kept, truncated, name))
        return json_response({}, status=202)

    async def not_allowed(request: web.Request) -> web.Response:
        return _error(405, f"The method {request.method} is not allowed.")

    async def unknown(request: web.Request) -> web.Response:
        return _error(404, "Not found.")

    app.router.add_post("/api/v2/logs", logs)
    app.router.add_route("*", "/api/v2/logs", not_allowed)
    app.router.add_route("*", "/{tail:.*}", unknown)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Point the Datadog connector at this emulator."""
    key = next(iter(settings.api_keys), DEMO_API_KEY)
    entry: dict[str, Any] = {
        "url_env": "DATADOG_LOGS_URL",
        "api_key_env": "DATADOG_API_KEY",
        "service": "cavra",
        "ddsource": "cavra",
        "tags": ["env:demo"],
        "allow_http": True,
    }
    return entry, {"DATADOG_LOGS_URL": base_url + "/datadog/api/v2/logs", "DATADOG_API_KEY": key}
