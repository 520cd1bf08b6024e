"""Who is looking at the console: the API's tokens and roles, carried by a header or a login cookie.

Access is the API's: any role includes ``auditor``, which is enough to read every console page; with no
tokens configured (protected mode) the request envelope already admits loopback clients only, and the
console asks for no token. A browser cannot easily send ``Authorization: Bearer``, so the login form
puts the token in a cookie that is ``HttpOnly``, ``SameSite=Strict``, scoped to ``/console`` and
``Secure`` on https; every request validates it exactly as a Bearer token (hashed, compared in constant
time against every known token). Login and logout are the only state-changing requests, and they are
refused unless the browser says they come from this origin (``Origin``, else ``Referer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from cavra.api.auth import Role, role_allows
from cavra.api.deps import get_runtime

#: the cookie holding the token (its value is the token itself, never shown in a page)
COOKIE = "cavra_console"
COOKIE_PATH = "/console"
#: how long a login lasts, in seconds
COOKIE_MAX_AGE = 8 * 3600
#: tokens longer than this are not accepted from the login form (they would not fit a cookie)
MAX_TOKEN_CHARS = 1024
#: the role every console page needs
NEEDED: Role = "auditor"
HOME = "/console"

Via = Literal["protected", "bearer", "cookie"]


@dataclass(frozen=True)
class Viewer:
    """The caller: the token's name and role and how it was presented (``protected``: no tokens)."""

    name: str
    role: Role
    via: Via


@dataclass(frozen=True)
class Refusal:
    """Why a request was not admitted: ``redirect`` to the login form, or ``invalid`` Bearer (401)."""

    kind: Literal["redirect", "invalid"]
    clear_cookie: bool = False


def protected_mode(request: Request) -> bool:
    return get_runtime(request).settings.tokens.protected_mode


def check_token(request: Request, presented: str, via: Via = "cookie") -> Viewer | None:
    """The viewer ``presented`` authenticates, if any (the API's comparison and role rule)."""
    tokens = get_runtime(request).settings.tokens
    token = tokens.authenticate(presented)
    if token is None or not role_allows(token.role, NEEDED):
        return None
    return Viewer(token.name, token.role, via)


def identify(request: Request) -> Viewer | Refusal:
    """The viewer, from ``Authorization: Bearer`` or the login cookie; otherwise why not."""
    if protected_mode(request):
        return Viewer("loopback", "admin", "protected")
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        viewer = check_token(request, value.strip(), "bearer") if scheme.lower() == "bearer" else None
        return viewer if viewer is not None else Refusal("invalid")
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return Refusal("redirect")
    viewer = check_token(request, cookie)
    return viewer if viewer is not None else Refusal("redirect", clear_cookie=True)


def same_origin(request: Request) -> bool:
    """Whether a state-changing request says it comes from a page of this server.

    ``Origin`` (sent by browsers with every POST) or, without it, ``Referer`` must name this scheme and
    host. Neither (or ``Origin: null``) is refused: only browsers log in through the form.
    """
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed:
        return False
    try:
        parts = urlsplit(claimed)
    except ValueError:
        return False
    host = (request.headers.get("host") or "").lower()
    return bool(host) and parts.scheme == request.url.scheme and parts.netloc.lower() == host


def safe_next(target: str | None) -> str:
    """Where to go after login: a console path of this server, never another site."""
    if (
        not target
        or len(target) > 2048
        or not (target == HOME or target.startswith((HOME + "/", HOME + "?")))
        or "\\" in target
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target)
    ):
        return HOME
    return target


def set_login_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_login_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
