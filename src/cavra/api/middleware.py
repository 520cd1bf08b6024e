"""The request envelope, as one pure ASGI middleware (outermost of the application's own layers).

For every HTTP request it: assigns a request id (``X-Request-ID``, echoed in every answer and error body);
answers only loopback clients in protected mode (no API tokens configured); when the ``Host`` check is on,
answers 421 to a ``Host`` that is neither loopback nor allowed; refuses state-changing requests a page on
another site could have sent (:mod:`cavra.api.guards`); refuses bodies over the size limit with 413 (by
``Content-Length`` at once, or while reading a chunked body); answers ``HEAD`` as ``GET`` without the body;
turns any unexpected exception into the one JSON error shape, with a 500 whose detail names only the
request id; and writes an access log line (method, path without query, status, duration, request id).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cavra.api.auth import is_loopback
from cavra.api.errors import error_body
from cavra.api.guards import cross_site_problem, header, host_allowed
from cavra.redaction import Redactor

access_log = logging.getLogger("cavra.api.access")
log = logging.getLogger("cavra.api")

_RID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestContext:
    """Request id, protected mode, ``Host`` check, cross-site refusals, body limit, ``HEAD``, catch-all
    errors and the access log. ``allowed_hosts``: None turns the ``Host`` check off; otherwise the names
    answered besides loopback ones."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        protected_mode: bool,
        allowed_hosts: frozenset[str] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.protected_mode = protected_mode
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope, b"x-request-id")
        rid = given if given and _RID.match(given) else f"req_{uuid.uuid4().hex[:20]}"
        scope.setdefault("state", {})["request_id"] = rid
        app_obj = scope.get("app")
        runtime = getattr(getattr(app_obj, "state", None), "runtime", None)
        redactor = getattr(runtime, "redactor", None)
        red = redactor if isinstance(redactor, Redactor) else Redactor()
        t0 = time.monotonic()
        status_holder: dict[str, Any] = {"status": 0, "started": False}
        method = scope.get("method")
        head = method == "HEAD"
        if head:  # answered as GET (FastAPI's routes do not take HEAD); the body is not sent
            scope = {**scope, "method": "GET"}
            scope["state"]["method"] = "HEAD"

        async def send_wrapper(message: Message) -> None:
            if head and message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        async def answer(status: int, code: str, detail: str, extra: list[tuple[bytes, bytes]]) -> None:
            body = json.dumps(error_body(code, detail, rid, red)).encode("utf-8")
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                *extra,
            ]
            await send_wrapper({"type": "http.response.start", "status": status, "headers": headers})
            await send_wrapper({"type": "http.response.body", "body": body})

        try:
            refused = self._refusal(scope)
            if refused is not None:
                await answer(*refused, [])
                return
            body_receive = await self._limited_body(scope, receive)
            if body_receive is None:
                await answer(
                    413,
                    "payload_too_large",
                    f"request body is larger than the limit of {self.max_body_bytes} bytes",
                    [(b"connection", b"close")],
                )
                return
            await self.app(scope, body_receive, send_wrapper)
        except Exception as exc:
            log.error(
                "unhandled %s while answering %s %s",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
                exc_info=exc,
                extra={"request_id": rid},
            )
            if not status_holder["started"]:
                await answer(500, "internal_error", f"internal error; the server log has request {rid}", [])
        finally:
            if access_log.isEnabledFor(logging.INFO):  # the extra fields cost a dict per request
                _log_access(scope, method, status_holder["status"], rid, t0)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """Why a request is answered before the application sees it: protected mode, ``Host``, cross-site."""
        client = scope.get("client")
        if self.protected_mode and not is_loopback(client[0] if client else None):
            return (
                403,
                "forbidden",
                "protected mode: no API tokens are configured, so only loopback clients are answered; "
                "configure API tokens to serve other clients (see docs/api.md)",
            )
        if self.allowed_hosts is not None and not host_allowed(scope, self.allowed_hosts):
            return (
                421,
                "misdirected_request",
                "this server does not answer for that Host: only loopback names and the names given "
                "with --allowed-host (CAVRA_ALLOWED_HOSTS) are served (see docs/api.md)",
            )
        return cross_site_problem(scope, protected_mode=self.protected_mode)

    async def _limited_body(self, scope: Scope, receive: Receive) -> Receive | None:
        """A receive that replays the whole body, or ``None`` when the body is over the limit."""
        declared = header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # a disconnect: hand it on unchanged
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        return replay


def _log_access(scope: Scope, method: Any, status: Any, rid: str, t0: float) -> None:
    access_log.info(
        "%s %s %s",
        method,
        scope.get("path"),
        status,
        extra={
            "request_id": rid,
            "method": method,
            "path": scope.get("path"),
            "status": status,
            "duration_ms": round((time.monotonic() - t0) * 1000, 3),
            "client": (scope.get("client") or ("-",))[0],
        },
    )
