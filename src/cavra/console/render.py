"""Rendering console pages: the Jinja2 environment (autoescape always on), its filters, security headers.

Every console answer passes :func:`secure`: a Content-Security-Policy that allows only this origin's
own files (no inline script or style, no framing, forms posting only here), ``nosniff``, no caching of
evidence, and a same-origin referrer policy. Error pages are rendered here too; their text passes the
runtime's redactor, like every API error detail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from cavra.api.auth import Role, role_allows
from cavra.api.errors import project_error_status, redactor_of, request_id_of
from cavra.console import csrf
from cavra.console.access import Viewer
from cavra.errors import CavraError
from cavra.redaction import Redactor

CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
DASH = "\N{EM DASH}"
#: the role the console's action forms need (auditors get a read-only console)
ACTION_ROLE: Role = "operator"


def when(value: object) -> str:
    """``2026-05-01T10:00:00.123Z`` → ``2026-05-01 10:00:00 UTC`` (what is not a time is shown as is)."""
    if not value:
        return DASH
    text = str(value)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


def _parsed(value: object) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def ago(value: object, now: datetime | None = None) -> str:
    """A time relative to now: ``12 min ago``, ``in 3 min``, ``just now`` (the exact time goes in a title)."""
    parsed = _parsed(value)
    if parsed is None:
        return when(value)
    seconds = ((now or datetime.now(UTC)) - parsed).total_seconds()
    span = abs(seconds)
    if span < 45:
        return "just now"
    for size, unit in ((86400 * 365, "y"), (86400, "d"), (3600, "h"), (60, "min")):
        if span >= size:
            amount = f"{span / size:.0f} {unit}"
            return f"{amount} ago" if seconds > 0 else f"in {amount}"
    return "just now"  # pragma: no cover - span >= 45 always matches "min"


def iso_attr(value: object) -> str:
    """The machine-readable form for ``<time datetime=…>``."""
    parsed = _parsed(value)
    return "" if parsed is None else parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


def pct(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return DASH
    return f"{value * 100:.1f}%"


def ms(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return DASH
    return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def short(value: object, limit: int = 120) -> str:
    if value is None:
        return ""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


def pretty(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def url(path: str, params: Mapping[str, object] | None = None, **more: object) -> str:
    """``path?query`` from the given parameters, leaving out empty ones (the template escapes it)."""
    merged = {**(params or {}), **more}
    query = urlencode([(k, str(v)) for k, v in merged.items() if v is not None and v != ""])
    return f"{path}?{query}" if query else path


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cavra.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, ago=ago, iso_attr=iso_attr, pct=pct, ms=ms, short=short, pretty=pretty)
    env.globals.update(url=url, DASH=DASH)
    return env


ENV = _environment()


#: the files under ``/console/static/`` and their media types (nothing else is served from there)
STATIC = {"console.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}


def static_file(name: str) -> tuple[bytes, str] | None:
    """A packaged static file and its media type, or ``None`` for any other name."""
    media = STATIC.get(name)
    if media is None:
        return None
    return resources.files("cavra.console").joinpath("static", name).read_bytes(), media


def secure(response: Response, *, cache: bool = False) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers["Cache-Control"] = "private, max-age=3600" if cache else "no-store"
    return response


def scrubbed(value: Any, redactor: Redactor, memo: dict[object, Any] | None = None) -> Any:
    """``value`` with every string in it (through dicts and lists) passed through ``redactor``.

    A request's ``url`` gets the URL rules, as in the evidence (configured URLs are secrets when echoed
    in text, but the host and path of a request stay visible). ``memo`` (one per page) scrubs a dict or
    list that a page's context holds twice (the overview's boards) once, and each distinct string once.
    """
    memo = {} if memo is None else memo
    if isinstance(value, str):
        text = memo.get(value)  # strings are keyed by themselves, containers by their id (an int)
        if text is None:
            text = memo[value] = redactor.scrub(value)
        return text
    if not isinstance(value, dict | list | tuple):
        return value
    if id(value) in memo:
        return memo[id(value)][1]
    out: Any
    if isinstance(value, dict):
        out = {
            k: str(redactor.url(v)) if k == "url" and isinstance(v, str) else scrubbed(v, redactor, memo)
            for k, v in value.items()
        }
    else:
        out = [scrubbed(v, redactor, memo) for v in value]
    memo[id(value)] = (value, out)  # the value is kept so its id cannot be reused while the page renders
    return out


#: the auto-refresh period (seconds) a page asks for with ``?refresh=on``
REFRESH_SECONDS = 30


def refresh_state(request: Request) -> tuple[int | None, str]:
    """(the refresh period, or ``None`` when off; the link that toggles it), keeping the other parameters."""
    on = request.query_params.get("refresh") == "on"
    others = [(k, v) for k, v in request.query_params.multi_items() if k != "refresh"]
    if not on:
        others.append(("refresh", "on"))
    query = urlencode(others)
    return (REFRESH_SECONDS if on else None), request.url.path + (f"?{query}" if query else "")


def render(
    request: Request, viewer: Viewer | None, template: str, *, status: int = 200, **context: Any
) -> Response:
    """A page: ``template`` rendered with ``context`` plus the viewer, the section and the request id.

    The data shown (records, dashboards, integrations) is already redacted when stored; it passes the
    runtime's redactor once more, which knows every configured secret, so a secret of one target echoed
    in another target's evidence is not shown either.
    """
    red = redactor_of(request)
    refresh, refresh_link = refresh_state(request)
    can_act = viewer is not None and role_allows(viewer.role, ACTION_ROLE)
    memo: dict[object, Any] = {}
    html = ENV.get_template(template).render(
        viewer=viewer,
        refresh=refresh,
        refresh_link=red.scrub(refresh_link),  # built from the query, which may hold a pasted secret
        can_act=can_act,
        csrf=csrf.token(request, viewer) if viewer is not None and can_act else "",
        section=context.pop("section", ""),
        request_id=request_id_of(request),
        **{k: scrubbed(v, red, memo) for k, v in context.items()},
    )
    return secure(HTMLResponse(html, status_code=status))


def error_page(
    request: Request, viewer: Viewer | None, status: int, title: str, detail: str, **context: Any
) -> Response:
    """An error answered as a page; ``detail`` passes the redactor that knows the configured secrets."""
    text = redactor_of(request).scrub(detail)
    return render(request, viewer, "error.html", status=status, title=title, detail=text, **context)


def project_error_page(request: Request, viewer: Viewer | None, exc: CavraError) -> Response:
    status, code = project_error_status(exc)
    titles = {404: "Not found", 409: "Conflict", 422: "Invalid request", 503: "Unavailable"}
    return error_page(request, viewer, status, titles.get(status, code.replace("_", " ")), str(exc))
