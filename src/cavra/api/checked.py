"""Request parsing that refuses, at the door, text the store cannot keep.

Every API router uses :class:`CheckedRoute`. Before a route's own validation runs, it checks the path
parameters, the query parameters and the JSON body (keys and values, at any depth) for a NUL character or
a lone surrogate (see :mod:`cavra.storable`) and answers 422 ``invalid_request`` naming the field, e.g.
``body.event.event_type: contains a NUL character (U+0000), which the store cannot keep``. The body is
parsed once: the route reads the same parsed value. Without this, such an event reached the provider and
then its record could not be stored (PostgreSQL), or the answer could not be encoded (a 500).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from cavra.storable import find_unstorable

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _error(loc: tuple[str | int, ...], problem: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": problem, "input": None}])


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


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
    if request.method in ("GET", "HEAD", "OPTIONS") or not _is_json(request):
        return
    if not await request.body():
        return
    try:
        body = await request.json()  # cached on the request: the route reads this value
    except (ValueError, RecursionError):
        return  # not JSON: the route answers that, as it always has
    found = find_unstorable(body, ("body",))
    if found is not None:
        raise _error(*found)


class CheckedRoute(APIRoute):
    """An API route whose request is checked by :func:`check_request` first."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            await check_request(request)
            return await handler(request)

        return checked
