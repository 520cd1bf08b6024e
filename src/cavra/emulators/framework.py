"""What every emulator shares: request recording and scripted faults, applied by one middleware.

Each provider is an aiohttp sub-application mounted under ``/<provider>`` (``/splunk``, ``/slack``, …).
Provider modules only implement the provider's behaviour; this module records every request and applies
scripted faults before the provider sees the request:

* ``POST /_emulator/faults``  ``{"provider": "splunk", "status": 503, "count": 2, "body": "...",
  "headers": {"Retry-After": "1"}, "delay": 0.0, "drop": false}``: the next ``count`` requests to that
  provider get this answer instead (``drop`` closes the connection without answering; ``delay`` waits
  first and, with no ``status``, then lets the provider answer; ``after_handler`` with ``drop`` lets
  the provider act, then drops the answer, the "lost response" case).
* ``"echo": true`` in a fault: the provider answers ``status`` (default 400) with a JSON body that echoes
  everything it received (every header, credential headers first, the URL, query and body), each in raw,
  URL-encoded and base64 form (``"echo": "raw"``, ``"url"`` or ``"base64"``: that form only), in every
  field a connector reads error text from (``text``, ``message``, ``detail``, ``error.message``,
  ``errors[].detail``, ``errorMessages``); ``body`` is put before the echo.
* ``DELETE /_emulator/faults?provider=splunk``: drop the faults still queued (all providers' without
  ``provider``). Real services
  do echo what they received (validation errors quoting a header or a field, proxies reflecting a request),
  so this is how the tests prove that no secret survives in evidence, errors or logs.
* ``GET /_emulator/requests?provider=splunk``: what was received (method, path, query, headers, body, status).
  Bodies are recorded as sent on the wire: the server does not decompress them (``auto_decompress=False``
  in :mod:`cavra.emulators.server`), so a ``Content-Encoding: gzip`` body is recorded compressed, and an
  emulator that accepts an encoding decodes it with :func:`decode_body`, which enforces its size limit.
* ``POST /_emulator/reset``: forget requests and faults, and reset provider state.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import json
import time
import zlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Fault:
    status: int | None = None
    count: int = 1
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    after_handler: bool = False
    content_type: str = "application/json"
    #: answer with an echo of the request: ``true`` (every form), ``"raw"``, ``"url"`` or ``"base64"``
    echo: bool | str = False


#: header names whose values are credentials: echoed first, so a bounded excerpt of the answer holds them
_CREDENTIAL_HINTS = ("authorization", "key", "token", "cookie", "secret", "signature")
#: the encodings an echo can use
ECHO_FORMS = ("raw", "url", "base64")


def echo_text(request: web.Request, body: bytes, forms: str | bool = True) -> str:
    """Everything a request carried (credential headers first, then the URL, the other headers and the
    body), in the forms asked for: ``raw``, ``url`` (URL-encoded), ``base64``, or all of them."""
    headers = sorted(
        request.headers.items(), key=lambda kv: not any(h in kv[0].lower() for h in _CREDENTIAL_HINTS)
    )
    parts = [f"{name}: {value}" for name, value in headers]
    parts += [value for _, value in headers]
    parts += [request.method + " " + str(request.url), request.path_qs, request.query_string]
    parts.append(body.decode("utf-8", errors="replace"))
    wanted = ECHO_FORMS if forms is True or forms == "all" else (str(forms),)
    out: list[str] = []
    for form in wanted:
        for part in parts:
            if not part:
                continue
            if form == "raw":
                out.append(part)
            elif form == "url":
                out.append(quote(part, safe=""))
            else:
                out.append(base64.b64encode(part.encode("utf-8")).decode("ascii"))
    return " | ".join(out)


def _echo(request: web.Request, body: bytes, fault: Fault) -> web.Response:
    text = (f"{fault.body} | " if fault.body else "") + echo_text(request, body, fault.echo)
    data = {
        "code": 6,
        "text": text,
        "message": text,
        "detail": text,
        "error": {"code": "Echo", "message": text, "detail": text},
        "errors": [{"detail": text}],
        "errorMessages": [text],
    }
    return web.Response(
        status=fault.status or 400,
        text=json.dumps(data),
        content_type="application/json",
        headers=fault.headers,
    )


@dataclass
class ReceivedRequest:
    """One request as received: ``body`` is the raw body (still compressed when it was sent compressed)."""

    provider: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        try:
            text: str | None = self.body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": text,
            "body_base64": None if text is not None else base64.b64encode(self.body).decode(),
            "status": self.status,
            "at": self.at,
        }


@dataclass
class IssuedToken:
    """An access token issued by an emulated identity provider (Entra ID, Jamf), for the resource servers."""

    value: str
    client_id: str
    audience: str
    roles: tuple[str, ...]
    expires_at: float


class EmulatorHub:
    """Recorded requests, scripted faults, issued tokens and reset hooks shared by all mounted emulators."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.faults: dict[str, list[Fault]] = {}
        self.reset_hooks: list[Callable[[], None]] = []
        self.tokens: dict[str, IssuedToken] = {}
        #: the emulators mounted on this server (faults for others are refused)
        self.serving: list[str] = []

    def add_fault(self, provider: str, fault: Fault) -> None:
        self.faults.setdefault(provider, []).append(fault)

    def take_fault(self, provider: str) -> Fault | None:
        queue = self.faults.get(provider)
        if not queue:
            return None
        fault = queue[0]
        fault.count -= 1
        if fault.count <= 0:
            queue.pop(0)
        return fault

    def received(self, provider: str | None = None) -> list[ReceivedRequest]:
        return [r for r in self.requests if provider is None or r.provider == provider]

    def reset(self) -> None:
        self.requests.clear()
        self.faults.clear()
        self.tokens.clear()
        for hook in self.reset_hooks:
            hook()


HUB_KEY: web.AppKey[EmulatorHub] = web.AppKey("cavra_emulator_hub", EmulatorHub)


def _provider_of(path: str) -> str:
    parts = path.split("/", 2)
    return parts[1] if len(parts) > 1 else ""


def _drop(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp still wants a response object; the connection is already gone.
    raise asyncio.CancelledError


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    hub = request.config_dict[HUB_KEY]
    provider = _provider_of(request.path)
    if provider in ("", "_emulator"):
        return await handler(request)
    body = await request.read()
    record = ReceivedRequest(
        provider=provider,
        method=request.method,
        path=request.path,
        query=request.query_string,
        headers={k: v for k, v in request.headers.items()},
        body=body,
    )
    hub.requests.append(record)
    fault = hub.take_fault(provider)
    if fault is not None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.drop and not fault.after_handler:
            record.status = None
            return _drop(request)
        if fault.echo:
            record.status = fault.status or 400
            return _echo(request, body, fault)
        if fault.status is not None:
            record.status = fault.status
            return web.Response(
                status=fault.status,
                text=fault.body if fault.body is not None else "",
                headers=fault.headers,
                content_type=fault.content_type,
            )
    response = await handler(request)
    record.status = response.status
    if fault is not None and fault.drop and fault.after_handler:
        record.status = None
        return _drop(request)
    return response


#: each fault field: (the types it takes, what the error says it expects)
_FAULT_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "status": ((int, type(None)), "an HTTP status from 100 to 599, or null"),
    "count": ((int,), "a whole number of requests, at least 1"),
    "body": ((str, type(None)), "a string, or null"),
    "headers": ((dict,), "an object of header names to string values"),
    "delay": ((int, float), "seconds, 0 or more"),
    "drop": ((bool,), "true or false"),
    "after_handler": ((bool,), "true or false"),
    "content_type": ((str,), "a media type"),
    "echo": ((bool, str), f"true, false or one of {', '.join(ECHO_FORMS)}"),
}


def parse_fault(data: object, serving: Collection[str]) -> tuple[str, Fault]:
    """``(provider, fault)`` from a ``POST /_emulator/faults`` body; ValueError naming the field."""
    if not isinstance(data, dict):
        raise ValueError('body: expected a JSON object such as {"provider": "splunk", "status": 503}')
    provider = data.get("provider")
    if not isinstance(provider, str) or not provider:
        raise ValueError("provider: required, the emulator to fail (e.g. splunk)")
    if serving and provider not in serving:
        raise ValueError(f"provider: unknown emulator {provider!r}; serving: {', '.join(serving)}")
    fields = {k: v for k, v in data.items() if k != "provider"}
    for name, value in fields.items():
        if name not in _FAULT_FIELDS:
            near = difflib.get_close_matches(name, list(_FAULT_FIELDS), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"{name}: unknown field{hint} (fields: provider, {', '.join(_FAULT_FIELDS)})")
        types, expected = _FAULT_FIELDS[name]
        bad_bool = isinstance(value, bool) and bool not in types
        if not isinstance(value, types) or bad_bool or not _in_range(name, value):
            raise ValueError(f"{name}: expected {expected}, got {json.dumps(value)[:60]}")
    return provider, Fault(**fields)


def _in_range(name: str, value: Any) -> bool:
    if name == "status":
        return value is None or 100 <= value <= 599
    if name == "count":
        return bool(value >= 1)
    if name == "delay":
        return bool(value >= 0)
    if name == "headers":
        return all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if name == "echo" and isinstance(value, str):
        return value in ECHO_FORMS
    return True


async def _faults(request: web.Request) -> web.Response:
    hub = request.config_dict[HUB_KEY]
    try:
        data = await request.json()
    except ValueError:
        return web.json_response({"error": "body: not valid JSON"}, status=422)
    try:
        provider, fault = parse_fault(data, hub.serving)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=422)
    hub.add_fault(provider, fault)
    return web.json_response({"ok": True, "provider": provider})


async def _clear_faults(request: web.Request) -> web.Response:
    hub = request.config_dict[HUB_KEY]
    provider = request.query.get("provider")
    if provider is None:
        hub.faults.clear()
    else:
        hub.faults.pop(provider, None)
    return web.json_response({"ok": True})


async def _requests(request: web.Request) -> web.Response:
    hub = request.config_dict[HUB_KEY]
    provider = request.query.get("provider")
    return web.json_response([r.to_dict() for r in hub.received(provider)])


async def _reset(request: web.Request) -> web.Response:
    request.config_dict[HUB_KEY].reset()
    return web.json_response({"ok": True})


def control_routes(app: web.Application) -> None:
    app.router.add_post("/_emulator/faults", _faults)
    app.router.add_delete("/_emulator/faults", _clear_faults)
    app.router.add_get("/_emulator/requests", _requests)
    app.router.add_post("/_emulator/reset", _reset)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(data), content_type="application/json", headers=headers or {}
    )


class BodyEncodingError(ValueError):
    """A body an emulator cannot use: ``reason`` is ``unsupported``, ``corrupt`` or ``too_large``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_body(
    raw: bytes, content_encoding: str | None, limit: int, *, accepted: Collection[str] = ("gzip",)
) -> bytes:
    """The body decoded per its ``Content-Encoding``, at most ``limit`` bytes once decoded.

    ``gzip`` may hold several members; ``deflate`` is zlib-wrapped (RFC 9110), raw deflate is accepted too.
    Decompression stops one byte past ``limit``, so a small body that inflates hugely costs no memory.
    Raises :class:`BodyEncodingError`.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(raw) > limit:
            raise BodyEncodingError("too_large", f"the body is over {limit} bytes")
        return raw
    if encoding not in accepted or encoding not in ("gzip", "deflate"):
        raise BodyEncodingError("unsupported", f"Content-Encoding {encoding!r} is not supported")
    for wbits in (31,) if encoding == "gzip" else (15, -15):
        try:
            return _inflate(raw, wbits, limit)
        except zlib.error:
            continue
    raise BodyEncodingError("corrupt", f"the {encoding} body cannot be decompressed")


def _inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    out = bytearray()
    data = raw
    while True:
        inflater = zlib.decompressobj(wbits=wbits)
        out += inflater.decompress(data, limit + 1 - len(out))
        if len(out) > limit or inflater.unconsumed_tail:
            raise BodyEncodingError("too_large", f"the body is over {limit} bytes once decompressed")
        if not inflater.eof:
            raise zlib.error("truncated stream")
        data = inflater.unused_data
        if not data:
            return bytes(out)
        if wbits != 31 or not data.startswith(b"\x1f\x8b"):  # only gzip may hold further members
            raise zlib.error("data after the end of the stream")
