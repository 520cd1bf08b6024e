"""The HTTP transport: the only place that unwraps secrets and talks to the network.

aiohttp behind a small :class:`Transport` protocol; :class:`MockTransport` answers from a handler function
instead (tests, no sockets). Safety rules:

* TLS verification on by default (a CA bundle can be configured);
* redirects are never followed (a 3xx comes back as a response and is recorded as a failure);
* plain ``http://`` needs ``allow_http``; link-local destinations (169.254.0.0/16, fe80::/10) and the cloud
  metadata and platform-credential addresses of :data:`METADATA_ADDRESSES` (several are not link-local:
  AWS's and Google's IPv6 ones, Alibaba's, Oracle's, Azure's WireServer) are refused, whether the URL names
  them or a host name resolves to them (IPv4-mapped, NAT64 and 6to4 IPv6 forms too), before any connection
  is made, unless ``allow_link_local``;
* response bodies are read up to a bound;
* no cookie jar: a cookie set by one answer is never sent on a later request by the transport (a connector
  that needs one, such as Jamf Cloud's sticky session, carries it in its own flow state, so nothing leaks
  between deliveries or targets that share a host). Repeated ``Set-Cookie`` headers reach the connector
  joined by newlines;
* a destination may send through an HTTP proxy (``proxy``: a :class:`Secret`, since its user-info is a
  credential, sent as ``Proxy-Authorization``), or take it from ``HTTPS_PROXY`` / ``HTTP_PROXY`` /
  ``NO_PROXY`` when ``trust_env`` is set; otherwise the environment's proxy variables are ignored.
"""

from __future__ import annotations

import asyncio
import base64
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


#: Cloud instance-metadata and platform-credential addresses, refused as destinations (with the link-local
#: ranges) unless ``allow_link_local``: what answers there hands out the machine's credentials. Each with the
#: provider documentation that names it.
METADATA_ADDRESSES: dict[str, str] = {
    "169.254.169.254": "AWS EC2 IMDS (docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval"
    ".html), Azure IMDS (learn.microsoft.com/azure/virtual-machines/instance-metadata-service), Google "
    "Compute Engine (cloud.google.com/compute/docs/metadata/querying-metadata), Oracle OCI "
    "(docs.oracle.com/iaas/Content/Compute/Tasks/gettingmetadata.htm); link-local",
    "fd00:ec2::254": "AWS EC2 IMDS over IPv6 (docs.aws.amazon.com/AWSEC2/latest/UserGuide/"
    "instancedata-data-retrieval.html); unique-local, not link-local",
    "169.254.170.2": "AWS ECS task metadata and task-role credentials (docs.aws.amazon.com/AmazonECS/latest/"
    "developerguide/task-iam-roles.html); link-local",
    "169.254.170.23": "AWS EKS Pod Identity Agent credentials (docs.aws.amazon.com/eks/latest/userguide/"
    "pod-id-agent-setup.html); link-local",
    "fd00:ec2::23": "AWS EKS Pod Identity Agent over IPv6 (docs.aws.amazon.com/eks/latest/userguide/"
    "pod-id-agent-setup.html); unique-local",
    "fd20:ce::254": "Google Compute Engine metadata server over IPv6 (cloud.google.com/compute/docs/metadata/"
    "querying-metadata); unique-local",
    "100.100.100.200": "Alibaba Cloud ECS instance metadata (alibabacloud.com/help/en/ecs/user-guide/"
    "view-instance-metadata); shared address space 100.64.0.0/10, not link-local",
    "192.0.0.192": "Oracle Cloud Infrastructure Classic instance metadata (docs.oracle.com/en/cloud/"
    "iaas-classic/compute-iaas-cloud/stcsg/retrieving-instance-metadata.html); IETF special-purpose "
    "192.0.0.0/24",
    "fd00:c1::a9fe:a9fe": "Oracle OCI instance metadata over IPv6 (docs.oracle.com/iaas/Content/Compute/"
    "Tasks/gettingmetadata.htm); unique-local",
    "168.63.129.16": "Azure platform address, WireServer: the VM agent's channel for extension settings and "
    "certificates (learn.microsoft.com/azure/virtual-network/what-is-ip-address-168-63-129-16); public space",
}
_METADATA = frozenset(ipaddress.ip_address(a) for a in METADATA_ADDRESSES)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, NAT64 well-known prefix, 6to4), if any."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr.sixtofour


def refused_address(host: str) -> str | None:
    """Why a literal address may not be a destination (``None``: it may, or ``host`` is a name)."""
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    candidates = [addr]
    if isinstance(addr, ipaddress.IPv6Address) and (inner := _embedded_v4(addr)) is not None:
        candidates.append(inner)
    if any(a in _METADATA for a in candidates):
        return "a cloud metadata address"
    if any(a.is_link_local for a in candidates):
        return "a link-local address"
    return None


class RefusedAddress(OSError):
    """A host name resolved only to addresses that are refused (see :func:`refused_address`)."""


class _GuardedResolver(AbstractResolver):
    """Resolves names, then drops refused answers (DNS cannot be used to reach the metadata service); a name
    that resolves only to refused addresses fails before any connection is attempted. ``inner`` is the
    resolver asked (the system's by default; tests give their own)."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if refused_address(r["host"]) is None]
        if not allowed:
            raise RefusedAddress(
                f"{host} resolves only to link-local or cloud metadata addresses, which are refused "
                "(see allow_link_local)"
            )
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
    refused = None if options.allow_link_local else refused_address(host)
    if refused is not None:
        raise TransportError(
            "refused_destination",
            f"the host is {refused}: link-local and cloud metadata destinations are refused; "
            "see allow_link_local",
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

    def __init__(
        self,
        *,
        limit: int = 100,
        limit_per_host: int = 32,
        resolver: Callable[[], AbstractResolver] | None = None,
    ) -> None:
        self._sessions: dict[tuple[Any, ...], aiohttp.ClientSession] = {}
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._lock = asyncio.Lock()
        #: makes the resolver that names are resolved with (default: the system's); its answers are
        #: checked all the same unless ``allow_link_local``
        self._resolver = resolver

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
                resolver=self._make_resolver(options),
                ttl_dns_cache=60,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                trust_env=options.trust_env,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._sessions[key] = session
            return session

    def _make_resolver(self, options: SendOptions) -> AbstractResolver | None:
        inner = self._resolver() if self._resolver is not None else None
        return inner if options.allow_link_local else _GuardedResolver(inner)

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
                resp_headers: Mapping[str, str] = _headers(resp.headers.items())
                if truncated:
                    resp_headers = {**resp_headers, "x-cavra-truncated": "true"}
                return Response(
                    status=resp.status, headers=resp_headers, body=body, elapsed=time.monotonic() - started
                )
        except TimeoutError:
            raise TransportError("timeout", f"no answer within {options.timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                raise TransportError("refused_destination", str(exc.os_error)) from None
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
