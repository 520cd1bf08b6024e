"""What a browser could be tricked into sending: the ``Host`` check and the cross-site request rules.

Pure functions over an ASGI scope's headers, used by the request envelope (:mod:`cavra.api.middleware`).

* **Host** (against DNS rebinding: a page on ``attacker.example`` whose name is re-pointed at 127.0.0.1
  talks to a loopback server as its own origin). When the check is on, only loopback names (``localhost``,
  127.0.0.0/8 literals, ``[::1]``, with any port) and the names given with ``--allowed-host`` /
  ``CAVRA_ALLOWED_HOSTS`` are answered; any other ``Host`` is answered 421 (Misdirected Request).
* **State-changing requests** (POST, PUT, PATCH, DELETE; the console's login and logout keep their own
  checks): a browser sends a "simple" cross-site request (form content types, no custom header) without
  asking the server first, so such requests are refused. A body must be ``application/json`` (415
  otherwise); in protected mode a request without a body must carry ``Content-Type: application/json``,
  ``Authorization`` or ``X-CAVRA-Request`` (403 otherwise), none of which a page on another site can send
  without a CORS preflight, which this server never grants (with tokens, every such route needs
  ``Authorization`` anyway). An ``Origin`` (or ``Sec-Fetch-Site``) naming another site is
  refused (403).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from starlette.types import Scope

from cavra.errors import ConfigError

ALLOWED_HOSTS_ENV = "CAVRA_ALLOWED_HOSTS"
#: the header a script (or a CLI) adds to a body-less state-changing request
REQUEST_HEADER = "X-CAVRA-Request"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: paths whose state-changing requests check their own origin (the console's login form and logout)
OWN_CHECKS = frozenset({"/console/login", "/console/logout"})
#: the console's action forms: form-encoded POSTs that check their own origin and CSRF token
OWN_CHECKS_PREFIX = "/console/actions/"

_PORT = re.compile(r"^[0-9]{1,5}$")
_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def split_host(value: str) -> tuple[str, str] | None:
    """``Host`` (or an origin's authority) → (canonical lower-case name, port or ""); None if malformed.

    IPv6 literals come back bracketed and compressed (``[::1]``); a trailing dot is dropped.
    """
    text = value.strip().lower()
    if not text:
        return None
    if text.startswith("["):
        end = text.find("]")
        addr = _ip(text[1:end]) if end > 0 else None
        if not isinstance(addr, ipaddress.IPv6Address):
            return None
        name, rest = f"[{addr.compressed}]", text[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
    else:
        name, _, port = text.partition(":")
        if ":" in port:
            return None
        name = name.rstrip(".")
        if not _NAME.match(name):
            return None
    if port and not _PORT.match(port):
        return None
    if not port and text.endswith(":"):
        return None
    return name, port


def is_loopback_name(name: str) -> bool:
    """``localhost``, an IPv4 literal in 127.0.0.0/8, ``[::1]`` (or IPv4-mapped loopback)."""
    if name == "localhost":
        return True
    addr = _ip(name.strip("[]")) if name.startswith("[") else _ip(name)
    if addr is None or (isinstance(addr, ipaddress.IPv6Address) != name.startswith("[")):
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def allowed_host_name(value: str, where: str = "--allowed-host") -> str:
    """One ``--allowed-host`` value → its canonical name; ConfigError naming ``where`` if it is not one.

    A host name or an IP literal (IPv6 with or without brackets), without scheme, port or path.
    """
    text = value.strip().lower()
    addr = _ip(text.strip("[]")) if ":" in text else None
    if isinstance(addr, ipaddress.IPv6Address):
        return f"[{addr.compressed}]"
    found = split_host(text)
    if found is None or found[1] or text.endswith(":"):
        raise ConfigError(
            f"{where}: {value!r} is not a host name "
            "(give a name or an IP address, without scheme, port or path)"
        )
    return found[0]


def allowed_hosts_from(values: Iterable[str], where: str = "--allowed-host") -> tuple[str, ...]:
    """Canonical names, in order, without repeats (a value may hold several, separated by commas)."""
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                names.append(allowed_host_name(part, where))
    return tuple(dict.fromkeys(names))


def host_allowed(scope: Scope, allowed: frozenset[str]) -> bool:
    """Whether the request's ``Host`` is a loopback name or an allowed one (no ``Host``: HTTP/1.0, no
    browser sends that, so it is answered)."""
    value = header(scope, b"host")
    if value is None:
        return True
    found = split_host(value)
    if found is None:
        return False
    return is_loopback_name(found[0]) or found[0] in allowed


def _origin(scheme: str, authority: str) -> str | None:
    found = split_host(authority)
    if found is None:
        return None
    name, port = found
    if port and _DEFAULT_PORTS.get(scheme) == port:
        port = ""
    return f"{scheme}://{name}" + (f":{port}" if port else "")


def own_origin(scope: Scope) -> str | None:
    """This request's origin: its scheme (as uvicorn resolved it, proxy headers included) and ``Host``."""
    host = header(scope, b"host")
    return _origin(str(scope.get("scheme", "http")), host) if host else None


def same_origin(scope: Scope, claimed: str) -> bool:
    """Whether an ``Origin`` (or a ``Referer`` URL) names this request's own origin."""
    scheme, sep, rest = claimed.strip().partition("://")
    if not sep:
        return False
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:
        return False
    mine = own_origin(scope)
    return mine is not None and _origin(scheme.lower(), authority) == mine


def _media_type(scope: Scope) -> str:
    return (header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _has_body(scope: Scope) -> bool:
    length = header(scope, b"content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return header(scope, b"transfer-encoding") is not None


def cross_site_problem(scope: Scope, *, protected_mode: bool = True) -> tuple[int, str, str] | None:
    """Why a state-changing request could have come from a page on another site: (status, code, detail),
    or None when it could not (or it does not change state). With API tokens configured a request without
    a body needs no extra header: without ``Authorization`` it is answered 401 anyway."""
    method = str(scope.get("method", "GET")).upper()
    path = str(scope.get("path", ""))
    if method not in STATE_CHANGING or path in OWN_CHECKS or path.startswith(OWN_CHECKS_PREFIX):
        return None
    origin = header(scope, b"origin")
    if origin is not None and not same_origin(scope, origin):
        return (
            403,
            "cross_origin",
            "refused: the request's Origin is another site; state-changing requests are answered for "
            "this server's own origin only",
        )
    fetch_site = (header(scope, b"sec-fetch-site") or "").strip().lower()
    if fetch_site in ("cross-site", "same-site"):
        return 403, "cross_origin", f"refused: the browser says this request is {fetch_site}"
    media = _media_type(scope)
    if _has_body(scope):
        if not is_json(media):
            shown = media[:60] or "none"
            return (
                415,
                "unsupported_media_type",
                f"the body must be JSON: send Content-Type: application/json (got {shown})",
            )
        return None
    if not protected_mode or is_json(media) or header(scope, b"authorization") is not None:
        return None
    if header(scope, b"x-cavra-request"):
        return None
    return (
        403,
        "request_header_required",
        f"a {method} without a body must send Content-Type: application/json or {REQUEST_HEADER}: 1 "
        "(a page on another site cannot send either without asking first)",
    )
