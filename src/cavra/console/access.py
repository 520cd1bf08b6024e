"""Who is looking at the console: the API's tokens and roles, carried by a header or a login cookie.

Access is the API's: any role includes ``auditor``, which is enough to read every console page; with no
tokens configured (protected mode) the request envelope already admits loopback clients only, and the
console asks for no token. A browser cannot easily send ``Authorization: Bearer``, so the login form
checks the token exactly as a Bearer token (hashed, compared in constant time against every known token)
and opens a *session*: a random id (256 bits) kept by the server with the token's name, role and hash and
an expiry, and by the browser in a cookie that is ``HttpOnly``, ``SameSite=Strict``, scoped to
``/console`` and ``Secure`` on https. The cookie never holds the token. Every request looks the session up
(an unknown, expired or logged-out id is refused) and checks that its token is still configured. Logout
ends the session on the server, so a copied cookie stops working too. Login and logout are the only
state-changing requests, and they are refused unless the browser says they come from this origin
(``Origin``, else ``Referer``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from cavra.api.auth import ApiToken, Role, role_allows
from cavra.api.deps import get_runtime

#: the cookie holding the session id (random; never the token)
COOKIE = "cavra_console"
COOKIE_PATH = "/console"
#: how long a login lasts, in seconds
COOKIE_MAX_AGE = 8 * 3600
#: tokens longer than this are not accepted from the login form (they would not fit a cookie)
MAX_TOKEN_CHARS = 1024
#: the role every console page needs
NEEDED: Role = "auditor"
HOME = "/console"

#: sessions kept at most (the oldest is ended first)
MAX_SESSIONS = 10_000
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")

Via = Literal["protected", "bearer", "cookie"]


@dataclass(frozen=True)
class Session:
    """What a session id stands for: the token's name, role and hash (never the token) and its expiry."""

    name: str
    role: Role
    token_sha256: str
    expires: float


class Sessions:
    """The console's logins, kept in the server process: random ids (stored hashed) → :class:`Session`.

    A restart ends every session (the browser is sent to the login form). ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        ttl: float = COOKIE_MAX_AGE,
        limit: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl, self.limit, self.clock = ttl, limit, clock
        self._items: dict[str, Session] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode("ascii")).hexdigest()

    def open(self, token: ApiToken) -> str:
        """A new session for ``token``; returns its id (the cookie value)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            for key in [k for k, v in self._items.items() if v.expires <= now]:
                del self._items[key]
            while len(self._items) >= self.limit:
                del self._items[next(iter(self._items))]
            self._items[self._key(session_id)] = Session(token.name, token.role, token.sha256, now + self.ttl)
        return session_id

    def get(self, session_id: str) -> Session | None:
        """The live session with this id; an unknown, malformed or expired id is None."""
        if not _SESSION_ID.match(session_id):
            return None
        key = self._key(session_id)
        with self._lock:
            found = self._items.get(key)
            if found is not None and found.expires <= self.clock():
                del self._items[key]
                found = None
        return found

    def close(self, session_id: str) -> None:
        """End a session (logout); an unknown id is ignored."""
        if _SESSION_ID.match(session_id):
            with self._lock:
                self._items.pop(self._key(session_id), None)

    def __len__(self) -> int:
        return len(self._items)


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


def sessions(request: Request) -> Sessions:
    found = getattr(request.app.state, "console_sessions", None)
    assert isinstance(found, Sessions)
    return found


def authenticate(request: Request, presented: str) -> ApiToken | None:
    """The configured token ``presented`` is, if its role may read the console (the API's comparison)."""
    token = get_runtime(request).settings.tokens.authenticate(presented)
    if token is None or not role_allows(token.role, NEEDED):
        return None
    return token


def check_token(request: Request, presented: str, via: Via = "cookie") -> Viewer | None:
    """The viewer ``presented`` authenticates, if any (the API's comparison and role rule)."""
    token = authenticate(request, presented)
    return None if token is None else Viewer(token.name, token.role, via)


def check_session(request: Request, session_id: str) -> Viewer | None:
    """The viewer of a live session whose token is still configured."""
    found = sessions(request).get(session_id)
    if found is None:
        return None
    configured = get_runtime(request).settings.tokens.tokens
    if not any(t.sha256 == found.token_sha256 and t.role == found.role for t in configured):
        sessions(request).close(session_id)
        return None
    return Viewer(found.name, found.role, "cookie")


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
    viewer = check_session(request, cookie)
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


def set_login_cookie(request: Request, response: Response, token: ApiToken) -> None:
    """Open a session for ``token`` and give the browser its id."""
    response.set_cookie(
        COOKIE,
        sessions(request).open(token),
        max_age=COOKIE_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def end_session(request: Request) -> None:
    """Logout: the session of the request's cookie ends on the server."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        sessions(request).close(cookie)


def clear_login_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
