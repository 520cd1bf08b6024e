"""The HTTP transport: the only place that unwraps secrets and talks to the network.

aiohttp behind a small :class:`Transport` protocol (tests may swap in their own). Safety rules:

* TLS verification on by default (a CA bundle can be configured);
* redirects are never followed (a 3xx comes back as a response and is recorded as a failure);
* plain ``http://`` needs ``allow_http``; link-local destinations (169.254.0.0/16 with the cloud metadata
  address, fe80::/10) are refused, after name resolution too, unless ``allow_link_local``;
* response bodies are read up to a bound;
* a destination may send through an HTTP proxy (``proxy``: a :class:`Secret`, since its user-info is a
  credential, sent as ``Proxy-Authorization``), or take it from ``HTTPS_PROXY`` / ``HTTP_PROXY`` /
  ``NO_PROXY`` when ``trust_env`` is set; otherwise the environment's proxy variables are ignored.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import yarl
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
    #: an HTTP proxy for this destination (``http://user:pass@host:port``)
    proxy: Secret | None = None
    #: use ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` from the environment (when ``proxy`` is unset)
    trust_env: bool = False


def _proxy(options: SendOptions) -> tuple[str | None, dict[str, str] | None]:
    """The proxy URL without its user-info, and the ``Proxy-Authorization`` header its user-info makes
    (sent in the CONNECT request of an https:// destination, in the request itself for http://)."""
    if options.proxy is None:
        return None, None
    url = yarl.URL(options.proxy.reveal())
    if url.user is None:
        return str(url), None
    pair = f"{url.user}:{url.password or ''}".encode()
    return str(url.with_user(None)), {
        "Proxy-Authorization": "Basic " + base64.b64encode(pair).decode("ascii")
    }


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


class AiohttpTransport:
    """Pooled aiohttp sessions, one per (TLS settings, link-local allowance)."""

    def __init__(self, *, limit: int = 100, limit_per_host: int = 32) -> None:
        self._sessions: dict[tuple[Any, ...], aiohttp.ClientSession] = {}
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._lock = asyncio.Lock()

    async def _session(self, options: SendOptions) -> aiohttp.ClientSession:
        key = (options.verify_tls, options.ca_bundle, options.allow_link_local, options.trust_env)
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
                connector=connector, auto_decompress=True, trust_env=options.trust_env
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
            proxy, proxy_headers = _proxy(options)
            if proxy_headers and request.url.startswith("http://"):  # no CONNECT: the proxy reads the request
                headers = {**headers, **proxy_headers}
                proxy_headers = None
            async with session.request(
                request.method,
                request.url,
                data=request.body if request.body else None,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
                proxy=proxy,
                proxy_headers=proxy_headers,
            ) as resp:
                body = await resp.content.read(options.max_response_bytes + 1)
                truncated = len(body) > options.max_response_bytes
                body = body[: options.max_response_bytes]
                resp_headers: Mapping[str, str] = {k.lower(): v for k, v in resp.headers.items()}
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
        except aiohttp.ClientHttpProxyError as exc:
            raise TransportError("connect", f"the proxy refused the tunnel (HTTP {exc.status})") from None
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
