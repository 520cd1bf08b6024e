"""One shape for every error answer: ``{"error": code, "detail": message, "request_id": id}``.

Project errors map to statuses (input 422, unknown id 404, conflict 409, configuration 422, store 503);
validation errors name the field path; anything unexpected is a 500 whose detail names only the request id
(the traceback goes to the server log). Every detail passes the application's redactor, which knows the
configured connector secrets, so no answer carries one even if a message were to, and has its control
characters escaped (``\x0a``), so no answer echoes a line break or a terminal sequence a client sent.

A 405 answer names every method the path takes (``Allow``). A path that differs from a route only by its
trailing slash is redirected (307) with a relative ``Location``: nothing in an answer is built from the
``Host`` header.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match

from cavra.api.logs import printable
from cavra.errors import CavraError, ConfigError, ConflictError, InputError, NotFoundError, StoreError
from cavra.redaction import Redactor

log = logging.getLogger("cavra.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    421: "misdirected_request",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer raised by the API layer itself (auth, limits, unavailable dependencies)."""

    def __init__(
        self, status: int, detail: str, *, code: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or _HTTP_CODES.get(status, "error")
        self.headers = dict(headers or {})


def request_id_of(request: Request) -> str:
    rid = request.scope.get("state", {}).get("request_id")
    return str(rid) if rid else "-"


def redactor_of(request: Request) -> Redactor:
    runtime = getattr(request.app.state, "runtime", None)
    red = getattr(runtime, "redactor", None)
    return red if isinstance(red, Redactor) else Redactor()


def error_body(code: str, detail: str, request_id: str, redactor: Redactor | None = None) -> dict[str, str]:
    text = printable((redactor or Redactor()).scrub(detail))
    return {"error": code, "detail": text, "request_id": request_id}


def error_response(
    request: Request, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = error_body(code, detail, request_id_of(request), redactor_of(request))
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def project_error_status(exc: CavraError) -> tuple[int, str]:
    """The status and code a project error is answered with."""
    if isinstance(exc, NotFoundError):
        return 404, "not_found"
    if isinstance(exc, ConflictError):
        return 409, "conflict"
    if isinstance(exc, InputError):
        return 422, "invalid_input"
    if isinstance(exc, ConfigError):
        return 422, "configuration_error"
    if isinstance(exc, StoreError):
        return 503, "store_unavailable"
    return 400, "bad_request"


def format_loc(loc: Sequence[Any]) -> str:
    """``("body", "event", "retries")`` → ``body.event.retries``; list indexes as ``[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def validation_detail(errors: Sequence[Mapping[str, Any]]) -> str:
    """One line naming each invalid field; input values are never echoed."""
    problems: list[str] = []
    for err in errors:
        loc = err.get("loc", ())
        kind = str(err.get("type", ""))
        if kind == "json_invalid":
            where = loc[-1] if loc and isinstance(loc[-1], int) else None
            at = f" at character {where}" if where is not None else ""
            problems.append(f"body: not valid JSON{at}")
            continue
        msg = str(err.get("msg", "invalid"))
        if kind == "extra_forbidden":
            msg = "unknown field"
        elif kind == "missing" and tuple(loc) == ("body",):
            msg = "expected a JSON body (content-type: application/json)"
        elif kind == "missing":
            msg = "field required"
        problems.append(f"{format_loc(loc)}: {msg}")
    return "; ".join(dict.fromkeys(problems)) or "invalid request"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.code, exc.detail, exc.headers)


async def _project_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CavraError)
    status, code = project_error_status(exc)
    if status >= 500:
        log.warning("%s: %s", type(exc).__name__, redactor_of(request).scrub(str(exc)))
    return error_response(request, status, code, api_wording(str(exc)))


_CLI_OPTION = re.compile(r"(^|; )--([a-z][a-z0-9-]*)(?=[:;])")


def api_wording(message: str) -> str:
    """A service message in the API's words: ``--provider: …`` (the CLI's option) is ``provider: …``
    (the field), ``--max-runs`` is ``max_runs``."""
    return _CLI_OPTION.sub(lambda m: m.group(1) + m.group(2).replace("-", "_"), message)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    code = "invalid_json" if any(e.get("type") == "json_invalid" for e in errors) else "invalid_request"
    return error_response(request, 422, code, validation_detail(errors))


#: the methods a route may take (HEAD is answered wherever GET is)
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _methods_at(request: Request, path: str) -> set[str]:
    """Every method some route of the application takes at ``path`` (each probed through routing)."""
    found: set[str] = set()
    for method in _METHODS:
        scope = {**request.scope, "path": path, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            found.add(method)
    if "GET" in found:
        found.add("HEAD")
    return found


def allowed_methods(request: Request) -> str:
    """Every method the request's path takes, for ``Allow``."""
    return ", ".join(sorted(_methods_at(request, request.scope["path"])))


def _slash_redirect(request: Request) -> Response | None:
    """A relative redirect to the same path with (or without) its trailing slash, when a route takes it."""
    path = str(request.scope["path"])
    if path == "/" or path.startswith("//"):
        return None
    other = path[:-1] if path.endswith("/") else path + "/"
    if other.startswith("//") or _method(request).replace("HEAD", "GET") not in _methods_at(request, other):
        return None
    raw = bytes(request.scope.get("raw_path") or b"").decode("latin-1") or path
    location = raw[:-1] if raw.endswith("/") else raw + "/"
    if not location.startswith("/") or location.startswith("//") or printable(location) != location:
        return None
    query = request.scope.get("query_string", b"").decode("latin-1")
    if query:
        location += "?" + query
    return RedirectResponse(location, status_code=307)


def _method(request: Request) -> str:
    """The method the client sent (the envelope answers ``HEAD`` as ``GET``)."""
    return str(request.scope.get("state", {}).get("method") or request.method)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "error")
    headers = dict(exc.headers or {})
    if status == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's answer to a body it cannot decode (not UTF-8): invalid JSON, like any other
        return error_response(request, 422, "invalid_json", "body: not valid JSON (or not UTF-8 text)")
    if status == 404:
        redirect = _slash_redirect(request)
        if redirect is not None:
            return redirect
        detail = f"no route {request.scope['path']}"
    elif status == 405:
        detail = f"method {_method(request)} is not allowed on {request.scope['path']}"
        headers["Allow"] = allowed_methods(request)
    else:
        detail = str(exc.detail) if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(request, status, code, detail, headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(CavraError, _project_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
