"""The console's routes under ``/console``: overview, delivery history and detail, publications, the
queue, integrations, the login form, and (registered from :mod:`cavra.console.actions`) the operator
action forms and the audit page; any other ``/console/…`` address is the console's 404 page.

Each page checks access (:func:`cavra.console.access.identify`), parses its query, calls functions of
:mod:`cavra.governance.service` off the event loop and renders a template; a project error (an unknown
id, a bad cursor, the store unavailable) is answered as an error page with the API's status. Pages never
change the store: the POST routes are login, logout and the action forms, all refused cross-origin.

The routes are plain Starlette routes inside an :class:`~fastapi.APIRouter`, kept out of the OpenAPI
document: they answer HTML for browsers, not the API's JSON.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match

from cavra.api.deps import get_runtime
from cavra.api.errors import redactor_of
from cavra.app import METADATA_KINDS
from cavra.console import access, charts
from cavra.console.access import Refusal, Viewer, identify, safe_next, same_origin
from cavra.console.filters import MAX_TEXT, STATUSES, HistoryForm, resolve_search
from cavra.console.render import error_page, project_error_page, render, secure, static_file, url
from cavra.errors import CavraError, InputError
from cavra.governance import service as governance
from cavra.governance.trends import SPANS

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Viewer], Awaitable[Response]]

PUBLICATION_KIND = "endpoint-management-publication-delivery"

router = APIRouter()


def _route(path: str, name: str, methods: tuple[str, ...] = ("GET",)) -> Callable[[Endpoint], Endpoint]:
    def register(endpoint: Endpoint) -> Endpoint:
        router.add_route(path, endpoint, methods=list(methods), name=name, include_in_schema=False)
        return endpoint

    return register


def _redirect(location: str) -> Response:
    return secure(RedirectResponse(location, status_code=303))


def _refuse(request: Request, refusal: Refusal) -> Response:
    if refusal.kind == "invalid":
        response = error_page(
            request,
            None,
            401,
            "Not signed in",
            "the API token is not valid; the console needs a token with role auditor, operator or admin",
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="cavra", error="invalid_token"'
        return response
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = _redirect(url("/console/login", next=safe_next(wanted)))
    if refusal.clear_cookie:
        access.clear_login_cookie(request, response)
    return response


def page(handler: Handler) -> Endpoint:
    """A console page: admitted callers only; project errors become error pages."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        who = identify(request)
        if isinstance(who, Refusal):
            return _refuse(request, who)
        try:
            return await handler(request, who)
        except CavraError as exc:
            return project_error_page(request, who, exc)

    return endpoint


async def _call(request: Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """One façade function, with the store, run off the event loop."""
    store = await get_runtime(request).astore()
    return await asyncio.to_thread(fn, store, *args, **kwargs)


async def _history(
    request: Request,
    viewer: Viewer,
    *,
    section: str,
    title: str,
    kinds: bool,
    fn: Callable[..., Any],
    default_kind: str | None = None,
) -> Response:
    form = HistoryForm.parse(request, kinds=kinds)

    def refused(form: HistoryForm, notes: list[Any]) -> Response:
        """The search form again, with its problems said (422), instead of a page of no rows."""
        return render(
            request,
            viewer,
            "history.html",
            status=422,
            section=section,
            title=title,
            form=form,
            kinds=METADATA_KINDS if kinds else (),
            statuses=STATUSES,
            result=None,
            notes=notes,
        )

    if form.problems:
        return refused(form, [])
    values = await _call(request, governance.search_values, form.metadata_kind or default_kind)
    form, notes, problems = resolve_search(form, values)
    if problems:
        return refused(replace(form, problems=problems), notes)
    try:
        result = await _call(request, fn, **form.filters())
    except InputError as exc:  # e.g. a provider no connector has: said, not answered with 0 rows
        said = redactor_of(request).scrub(str(exc).removeprefix("--"))  # it may quote what was typed
        return refused(replace(form, problems=[said]), notes)
    result["items"] = await _call(request, governance.with_lifecycle, result["items"])
    return render(
        request,
        viewer,
        "history.html",
        section=section,
        title=title,
        form=form,
        kinds=METADATA_KINDS if kinds else (),
        statuses=STATUSES,
        result=result,
        notes=notes,
    )


# --- pages -------------------------------------------------------------------------------------------
@_route("/console", "console_overview")
@page
async def overview(request: Request, viewer: Viewer) -> Response:
    async def board(build: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = await _call(request, build)  # its alerts already carry their silences
        found["latest_failures"] = await _call(request, governance.unresolved_first, found["latest_failures"])
        return found

    # one after the other: read side by side (asyncio.gather) they were slower on 2 cores at 1M records
    release = await board(governance.connector_delivery_dashboard)
    publication = await board(governance.endpoint_publication_dashboard)
    integration = await board(governance.integration_delivery_dashboard)
    everything = governance.combined_totals([release, publication, integration])
    boards = [
        ("release", "Release connector deliveries", release),
        ("publication", "Endpoint-management publications", publication),
        ("integration", "Integration deliveries", integration),
    ]
    return render(
        request,
        viewer,
        "overview.html",
        section="overview",
        release=release,
        publication=publication,
        integration=integration,
        everything=everything,
        boards=boards,
    )


@_route("/console/deliveries", "console_deliveries")
@page
async def deliveries(request: Request, viewer: Viewer) -> Response:
    return await _history(
        request,
        viewer,
        section="deliveries",
        title="Deliveries",
        kinds=True,
        fn=governance.delivery_history,
    )


@_route("/console/deliveries/{delivery_id}", "console_delivery")
@page
async def delivery(request: Request, viewer: Viewer) -> Response:
    delivery_id = str(request.path_params["delivery_id"])
    if len(delivery_id) > 128:
        return error_page(request, viewer, 404, "Not found", "no delivery has an id that long")
    record = await _call(request, governance.get_delivery, delivery_id)
    publication = record.get("metadata_kind") == PUBLICATION_KIND
    section = "publications" if publication else "deliveries"
    items = [
        {
            "provider": d.get("provider"),
            "success": d.get("success"),
            "event_id": record.get("event_id"),
            "delivery_id": record.get("id"),
            "created_at": record.get("created_at"),
        }
        for d in record.get("deliveries") or []
    ]
    now = {i["provider"]: i["lifecycle"] for i in await _call(request, governance.with_lifecycle, items)}
    return render(request, viewer, "delivery.html", section=section, record=record, now=now)


@_route("/console/publications", "console_publications")
@page
async def publications(request: Request, viewer: Viewer) -> Response:
    return await _history(
        request,
        viewer,
        section="publications",
        title="Endpoint-management publications",
        kinds=False,
        fn=governance.endpoint_publication_history,
        default_kind=PUBLICATION_KIND,
    )


@_route("/console/integrations", "console_integrations")
@page
async def integrations(request: Request, viewer: Viewer) -> Response:
    items = await _call(request, governance.list_integrations)
    items = await _call(request, governance.integration_health, items)
    return render(request, viewer, "integrations.html", section="integrations", items=items)


@_route("/console/queue", "console_queue")
@page
async def queue(request: Request, viewer: Viewer) -> Response:
    provider = (request.query_params.get("provider") or "").strip()
    if len(provider) > MAX_TEXT:
        return error_page(request, viewer, 422, "Invalid request", f"provider: at most {MAX_TEXT} characters")
    overview = await _call(request, governance.queue_overview, provider=provider or None)
    return render(request, viewer, "queue.html", section="queue", queue=overview)


@_route("/console/trends", "console_trends")
@page
async def trends(request: Request, viewer: Viewer) -> Response:
    q = request.query_params
    span = q.get("span") or "24h"
    provider = (q.get("provider") or "").strip()
    destination = (q.get("destination") or "").strip()
    kind = (q.get("metadata_kind") or "").strip()
    long = len(provider) > MAX_TEXT or len(destination) > MAX_TEXT
    if span not in SPANS or long or (kind and kind not in METADATA_KINDS):
        detail = f"span: one of {', '.join(SPANS)}; provider, destination: at most {MAX_TEXT} characters"
        detail += "; a known kind"
        return error_page(request, viewer, 422, "Invalid request", detail)
    trend = await _call(
        request,
        governance.delivery_trend,
        span=span,
        provider=provider or None,
        destination=destination or None,
        metadata_kind=kind or None,
    )
    values = await _call(request, governance.search_values, kind or None)
    return render(
        request,
        viewer,
        "trends.html",
        section="trends",
        trend=trend,
        spans=list(SPANS),
        providers=values["providers"],
        kinds=METADATA_KINDS,
        bars=charts.bars(trend["buckets"], trend["max_total"]),
        rate=charts.rate_points(trend["buckets"]),
        chart={"width": charts.WIDTH, "height": charts.HEIGHT, "pad": charts.PAD},
    )


@_route("/console/static/{name}", "console_static")
async def static(request: Request) -> Response:
    """The stylesheet and icon (no token needed: the login page uses them; nothing in them is private)."""
    found = static_file(str(request.path_params["name"]))
    if found is None:
        return error_page(request, None, 404, "Not found", f"no console file {request.url.path}")
    content, media = found
    return secure(Response(content, media_type=media), cache=True)


# --- login and logout --------------------------------------------------------------------------------
def _login_form(request: Request, *, status: int = 200, next_: str, message: str = "") -> Response:
    return render(request, None, "login.html", status=status, section="login", next=next_, message=message)


@_route("/console/login", "console_login")
async def login_form(request: Request) -> Response:
    target = safe_next(request.query_params.get("next"))
    if access.protected_mode(request) or isinstance(identify(request), Viewer):
        return _redirect(target)
    return _login_form(request, next_=target)


@_route("/console/login", "console_login_submit", methods=("POST",))
async def login_submit(request: Request) -> Response:
    if not same_origin(request):
        return error_page(request, None, 403, "Refused", "a login must come from this server's login form")
    if access.protected_mode(request):
        return _redirect(access.HOME)
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return error_page(request, None, 415, "Unsupported", "send the login form")
    body = (await request.body()).decode("utf-8", "replace")
    fields = parse_qs(body, max_num_fields=10)
    token = (fields.get("token") or [""])[0].strip()
    target = safe_next((fields.get("next") or [""])[0])
    known = access.authenticate(request, token) if 0 < len(token) <= access.MAX_TOKEN_CHARS else None
    if known is None:
        return _login_form(request, status=401, next_=target, message="That token is not valid.")
    response = _redirect(target)
    access.set_login_cookie(request, response, known)
    return response


@_route("/console/logout", "console_logout", methods=("POST",))
async def logout(request: Request) -> Response:
    if not same_origin(request):
        return error_page(request, None, 403, "Refused", "a logout must come from this server's pages")
    target = access.HOME if access.protected_mode(request) else "/console/login"
    access.end_session(request)
    response = _redirect(target)
    access.clear_login_cookie(request, response)
    return response


# --- the action forms and the audit page (their module registers them on this router) ------------------
from cavra.console import actions as _actions  # noqa: E402,F401  (after the names it uses exist)
from cavra.console import destpages as _destpages  # noqa: E402,F401


# --- anything else under /console: a console 404 page (registered last) -------------------------------
@_route("/console/{rest:path}", "console_not_found", methods=("GET", "HEAD"))
async def not_found(request: Request) -> Response:
    """An unknown console address: an HTML 404 page (the API's JSON 404 is for API clients); a known page
    asked with (or without) a trailing slash is redirected to it, relatively."""
    redirect = _slash_toggle(request)
    if redirect is not None:
        return redirect
    who = identify(request)
    viewer = who if isinstance(who, Viewer) else None
    for route in router.routes:  # a POST-only console address opened with GET: 405, not 404
        if (
            getattr(route, "name", None) != "console_not_found"
            and route.matches(request.scope)[0] == Match.PARTIAL
        ):
            response = error_page(request, viewer, 405, "Method not allowed", "this address takes a form")
            response.headers["Allow"] = "POST"
            return response
    return error_page(request, viewer, 404, "Not found", f"there is no console page at {request.url.path}")


def _slash_toggle(request: Request) -> Response | None:
    """307 to the same console page with (or without) its trailing slash, when such a page exists."""
    path = request.url.path
    other = path[:-1] if path.endswith("/") else path + "/"
    scope = {**request.scope, "path": other, "method": "GET"}
    known = any(
        getattr(route, "name", None) != "console_not_found" and route.matches(scope)[0] == Match.FULL
        for route in router.routes
    )
    if not known or not other.startswith("/console"):
        return None
    query = request.url.query
    return RedirectResponse(other + (f"?{query}" if query else ""), status_code=307)
