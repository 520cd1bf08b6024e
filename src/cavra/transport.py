"""The HTTP transport: the only place that unwraps secrets and talks to the network.

aiohttp behind a small :class:`Transport` protocol; :class:`MockTransport` answers from a handler function
instead (tests, no sockets). Safety rules:

* TLS verification on by default (a CA bundle can be configured);
* redirects are never followed (a 3xx comes back as a response and is recorded as a failure);
* plain ``http://`` needs ``allow_http``; link-local destinations (169.254.0.0/16 with the cloud metadata
  address, fe80::/10) are refused, after name resolution too, unless ``allow_link_local``;
* response bodies are read up to a bound;
* no cookie jar: a cookie set by one answer is never sent on a later request by the transport (a connector
  that needs one, such as Jamf Cloud's sticky session, carries it in its own flow state, so nothing leaks
  between deliveries or targets that share a host). Repeated ``Set-Cookie`` headers reach the connector
  joined by newlines.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from cavra.connectors.base import PreparedRequest, Response
from cavra.secrets import Secret


class TransportError(Exception):
    """The request got no HTTP answer. ``kind``: timeout, connect, refused_destination, protocol."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class SendOptions:
    timeout: float = 10.0
    max_response_bytes: int = 1_048_576
    allow_http: bool = False
    allow_link_local: bool = False
    verify_tls: bool = True
    ca_bundle: str | None = None


class Transport(Protocol):
    async def send(self, request: PreparedRequest, options: SendOptions) -> Response: ...

    async def close(self) -> None: ...


def _is_link_local(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_link_local


class _GuardedResolver(AbstractResolver):
    """Resolves names, then refuses link-local answers (DNS cannot be used to reach the metadata service)."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if not _is_link_local(r["host"])]
        if not allowed:
            raise OSError(f"{host} resolves only to link-local addresses, which are refused")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def check_destination(url: str, options: SendOptions) -> None:
    """Refuse a destination the options do not allow, before anything is sent."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise TransportError("refused_destination", "the URL cannot be parsed") from None
    if parts.scheme not in ("http", "https"):
        raise TransportError("refused_destination", f"URL scheme {parts.scheme or '(none)'!r} is not http(s)")
    if parts.scheme == "http" and not options.allow_http:
        raise TransportError(
            "refused_destination",
            "plain http:// is refused; set allow_http: true for this connector to allow it",
        )
    host = parts.hostname or ""
    if not host:
        raise TransportError("refused_destination", "the URL has no host")
    if not options.allow_link_local and _is_link_local(host):
        raise TransportError(
            "refused_destination",
            "link-local destinations (cloud metadata) are refused; see allow_link_local",
        )


def _headers(items: Any) -> dict[str, str]:
    """Lower-case names; a repeated ``Set-Cookie`` is kept whole (joined by newlines), others last-wins."""
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key == "set-cookie" and key in out:
            out[key] += "\n" + value
        else:
            out[key] = value
    return out


class AiohttpTransport:
    """Pooled aiohttp sessions, one per (TLS settings, link-local allowance)."""

    def __init__(self, *, limit: int = 100, limit_per_host: int = 32) -> None:
        self._sessions: dict[tuple[Any, ...], aiohttp.ClientSession] = {}
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._lock = asyncio.Lock()

    async def _session(self, options: SendOptions) -> aiohttp.ClientSession:
        key = (options.verify_tls, options.ca_bundle, options.allow_link_local)
        session = self._sessions.get(key)
        if session is not None and not session.closed:
            return session
        async with self._lock:
            session = self._sessions.get(key)
            if session is not None and not session.closed:
                return session
            ssl_arg: ssl.SSLContext | bool
            if not options.verify_tls:
                ssl_arg = False
            elif options.ca_bundle:
                ssl_arg = ssl.create_default_context(cafile=options.ca_bundle)
            else:
                ssl_arg = True
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                ssl=ssl_arg,
                resolver=None if options.allow_link_local else _GuardedResolver(),
                ttl_dns_cache=60,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._sessions[key] = session
            return session

    async def send(self, request: PreparedRequest, options: SendOptions) -> Response:
        check_destination(request.url, options)
        session = await self._session(options)
        headers = {k: (v.reveal() if isinstance(v, Secret) else v) for k, v in request.headers.items()}
        timeout = aiohttp.ClientTimeout(total=options.timeout)
        started = time.monotonic()
        try:
            async with session.request(
                request.method,
                request.url,
                data=request.body if request.body else None,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
            ) as resp:
                body = await resp.content.read(options.max_response_bytes + 1)
                truncated = len(body) > options.max_response_bytes
                body = body[: options.max_response_bytes]
                resp_headers: Mapping[str, str] = _headers(resp.headers.items())
                if truncated:
                    resp_headers = {**resp_headers, "x-cavra-truncated": "true"}
                return Response(
                    status=resp.status, headers=resp_headers, body=body, elapsed=time.monotonic() - started
                )
        except TimeoutError:
            raise TransportError("timeout", f"no answer within {options.timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc.os_error)
            raise TransportError("connect", f"cannot connect: {reason}") from None
        except aiohttp.ServerDisconnectedError:
            raise TransportError("connect", "the server closed the connection without answering") from None
        except aiohttp.ClientPayloadError:
            raise TransportError("protocol", "the answer's body was cut off") from None
        except aiohttp.ClientResponseError as exc:
            raise TransportError("protocol", f"invalid HTTP answer ({exc.status})") from None
        except aiohttp.ClientOSError as exc:
            raise TransportError(
                "connect", f"connection error: {exc.strerror or type(exc).__name__}"
            ) from None
        except aiohttp.InvalidURL:
            raise TransportError("refused_destination", "the URL is invalid") from None
        except aiohttp.ClientError as exc:
            raise TransportError("protocol", f"HTTP client error: {type(exc).__name__}") from None
        except OSError as exc:
            raise TransportError(
                "connect", f"connection error: {exc.strerror or type(exc).__name__}"
            ) from None

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def __aenter__(self) -> AiohttpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


#: what a :class:`MockTransport` handler may be: plain or async, answering a request or raising
#: :class:`TransportError` (a timeout, a refused connection) as the real transport would
MockHandler = Callable[[PreparedRequest], "Response | Awaitable[Response]"]


class MockTransport:
    """A :class:`Transport` that calls ``handler(request)`` instead of the network, like httpx's.

    For tests and tools: no sockets, no event-loop timers. The destination rules of the real transport
    (:func:`check_destination`) still apply unless ``check=False``, so a refused destination is refused the
    same way; header values that are :class:`~cavra.secrets.Secret` reach the handler as they are (the
    handler sees what the connector prepared, as the real transport does before unwrapping). Each request is
    kept in :attr:`requests`, in order.
    """

    def __init__(self, handler: MockHandler, *, check: bool = True) -> None:
        self._handler = handler
        self._check = check
        self.requests: list[PreparedRequest] = []
        self.closed = False

    async def send(self, request: PreparedRequest, options: SendOptions) -> Response:
        if self._check:
            check_destination(request.url, options)
        self.requests.append(request)
        answer = self._handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> MockTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
