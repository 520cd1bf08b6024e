"""CSRF tokens for the console's action forms, built on whatever identifies the console session.

A form's token is an HMAC-SHA256, under a random key made once per server process (kept on the app's
state), of the caller's identity: the console cookie's value (the session the login opened), else the
``Authorization`` header (a client sending its Bearer token), else ``protected`` plus the client address
(protected mode, loopback only). A page of another site can neither read the token (it is only in this
server's pages) nor compute it; a POST whose token does not match, or whose ``Origin``/``Referer`` is not
this server, is refused (403). A restart makes every open form's token stale (the form is shown again).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request

from cavra.console.access import COOKIE, Viewer, same_origin

FIELD = "csrf"


def _key(request: Request) -> bytes:
    state = request.app.state
    key = getattr(state, "console_csrf_key", None)
    if not isinstance(key, bytes):
        key = secrets.token_bytes(32)
        state.console_csrf_key = key
    return key


def _identity(request: Request, viewer: Viewer) -> str:
    if viewer.via == "cookie":
        return "cookie:" + (request.cookies.get(COOKIE) or "")
    if viewer.via == "bearer":
        return "bearer:" + (request.headers.get("authorization") or "")
    return "protected:" + (request.client.host if request.client else "")


def token(request: Request, viewer: Viewer) -> str:
    """The token this viewer's forms carry."""
    return hmac.new(_key(request), _identity(request, viewer).encode(), hashlib.sha256).hexdigest()


def check(request: Request, viewer: Viewer, presented: str) -> bool:
    """Whether a state-changing request comes from this server's page for this viewer."""
    return same_origin(request) and hmac.compare_digest(token(request, viewer), presented or "")
