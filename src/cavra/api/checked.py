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

import difflib
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from cavra.storable import find_unstorable


def _error(loc: tuple[str | int, ...], problem: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": problem, "input": None}])


def _unknown_query(name: str, known: frozenset[str]) -> str:
    """A misspelled filter is refused, not ignored (``?provder=webhook`` would answer everything)."""
    near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    listed = ", ".join(sorted(known)) if known else "none"
    return f"unknown query parameter{hint} (this route takes: {listed})"


def _query_names(dependant: Any) -> frozenset[str]:
    """The query parameters a route declares, its dependencies' included (FastAPI's Dependant tree)."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names.update(str(param.alias) for param in current.query_params)
        stack.extend(current.dependencies)
    return frozenset(names)


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
    known = getattr(request.scope.get("route"), "query_names", None)
    if known is not None:
        unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in known]
        if unknown:
            raise _error(("query", unknown[0]), _unknown_query(unknown[0], known))
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
        #: the query parameters this route declares (its own and its dependencies'); others are refused
        self.query_names = _query_names(self.dependant)
