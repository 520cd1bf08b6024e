"""Request parsing that refuses, at the door, text the store cannot keep.

Every API router uses :class:`CheckedRoute`. After the access checks and before a route's own validation
runs, it checks the path parameters, the query parameters and the JSON body (keys and values, at any
depth) for a NUL character or a lone surrogate (see :mod:`cavra.storable`) and answers 422
``invalid_request`` naming the field, e.g. ``body.event.event_type: contains a NUL character (U+0000),
which the store cannot keep``. The body is parsed once (FastAPI has parsed it already; the check reads the
same value). Without this, such an event reached the provider and then its record could not be stored
(PostgreSQL), or the answer could not be encoded (a 500).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from cavra.storable import find_unstorable


def _error(loc: tuple[str | int, ...], problem: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": problem, "input": None}])


def _may_be_json(request: Request) -> bool:
    """The body is read as JSON (FastAPI does so for a JSON media type, and for none)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or (media.startswith("application/") and media.endswith("+json"))


async def check_request(request: Request) -> None:
    """Raise RequestValidationError for the first path parameter, query parameter or JSON body field that
    holds text the store cannot keep."""
    for name, value in request.path_params.items():
        found = find_unstorable(value, ("path", name))
        if found is not None:
            raise _error(*found)
    for name, value in request.query_params.multi_items():
        found = find_unstorable(name, ("query",)) or find_unstorable(value, ("query", name))
        if found is not None:
            raise _error(*found)
    if request.method in ("GET", "HEAD", "OPTIONS") or not _may_be_json(request):
        return
    if not await request.body():
        return
    try:
        body = await request.json()  # parsed once: Starlette keeps what FastAPI parsed
    except (ValueError, RecursionError):
        return  # not JSON: the route answers that, as it always has
    found = find_unstorable(body, ("body",))
    if found is not None:
        raise _error(*found)


class CheckedRoute(APIRoute):
    """An API route whose request is checked by :func:`check_request`, as its last dependency: after the
    access checks (a client without a token still gets 401 first), before the route's own parameters and
    body are validated."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        dependencies = list(kwargs.pop("dependencies", None) or [])
        if not any(d.dependency is check_request for d in dependencies):
            dependencies.append(Depends(check_request))
        super().__init__(path, endpoint, dependencies=dependencies, **kwargs)
