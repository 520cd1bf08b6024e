"""The console's actions (operator and admin only): redeliver, replay failed deliveries since a time,
pause and resume a destination, acknowledge (silence) an alert; and the audit page that lists them.

Every action is a POST of a form (``application/x-www-form-urlencoded``) under ``/console/actions/`` that
carries the page's CSRF token (:mod:`cavra.console.csrf`) and comes from this origin; anything else is
refused (403, 415) before the store is touched. An auditor's pages show no action buttons and an
auditor's POST is refused (403). Each action, done or refused by the service, is stored as an audit
record (:mod:`cavra.governance.actions`) naming the token's name and role.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from cavra.api.auth import role_allows
from cavra.console import csrf
from cavra.console.access import Viewer
from cavra.console.filters import parse_moment
from cavra.console.render import ACTION_ROLE, error_page, render
from cavra.console.routes import _call, _route, page
from cavra.errors import CavraError, InputError
from cavra.governance import actions as ops
from cavra.governance import pause as pausing

FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 8192
#: 0: until resumed
PAUSE_MINUTES = (0, 15, 60, 240, 1440)
SILENCE_HOURS = (1, 4, 24, 168)


async def _form(request: Request, viewer: Viewer) -> dict[str, str] | Response:
    """The submitted form's fields, or the refusal page (role, content type, size, CSRF and origin)."""
    if not role_allows(viewer.role, ACTION_ROLE):
        return error_page(request, viewer, 403, "Refused", "actions need the operator or admin role")
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != FORM:
        return error_page(request, viewer, 415, "Unsupported", "send the console's form")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return error_page(request, viewer, 413, "Too large", "the form is too large")
    fields = {
        k: v[0].strip() for k, v in parse_qs(body.decode("utf-8", "replace"), max_num_fields=20).items()
    }
    if not csrf.check(request, viewer, fields.get(csrf.FIELD, "")):
        return error_page(
            request, viewer, 403, "Refused", "this form did not come from this console page (reload the page)"
        )
    return fields


def _choice(fields: dict[str, str], name: str, allowed: tuple[int, ...]) -> int:
    raw = fields.get(name, "")
    if not raw.isdigit() or int(raw) not in allowed:
        raise InputError(f"{name}: one of {', '.join(map(str, allowed))}")
    return int(raw)


def _text(fields: dict[str, str], name: str, *, required: bool = True) -> str:
    value = fields.get(name, "")
    if required and not value:
        raise InputError(f"{name}: required")
    if len(value) > 200:
        raise InputError(f"{name}: at most 200 characters")
    return value


async def _act(
    request: Request,
    viewer: Viewer,
    action: str,
    target: str,
    detail: dict[str, Any],
    work: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Response:
    """Run one façade action, record it (done or refused), and answer the result page."""
    try:
        result = await _call(request, work, *args, **kwargs)
    except CavraError as exc:
        await _call(
            request,
            ops.record_action,
            who=viewer.name,
            role=viewer.role,
            action=action,
            target=target,
            outcome=f"refused: {exc}",
            detail=detail,
        )
        raise
    entry = await _call(
        request,
        ops.record_action,
        who=viewer.name,
        role=viewer.role,
        action=action,
        target=target,
        outcome="done",
        detail={**detail, "result": result},
    )
    return render(request, viewer, "action.html", section="audit", entry=entry, result=result)


def _action(path: str, name: str) -> Callable[[Callable[..., Any]], Any]:
    def register(handler: Callable[[Request, Viewer, dict[str, str]], Any]) -> Any:
        async def endpoint(request: Request, viewer: Viewer) -> Response:
            fields = await _form(request, viewer)
            if isinstance(fields, Response):
                return fields
            response: Response = await handler(request, viewer, fields)
            return response

        endpoint.__name__ = handler.__name__
        return _route(path, name, methods=("POST",))(page(endpoint))

    return register


@_action("/console/actions/redeliver", "console_action_redeliver")
async def redeliver(request: Request, viewer: Viewer, fields: dict[str, str]) -> Response:
    delivery_id = _text(fields, "delivery_id")
    return await _act(request, viewer, "redeliver", delivery_id, {}, ops.redeliver, delivery_id)


@_action("/console/actions/replay", "console_action_replay")
async def replay_failed(request: Request, viewer: Viewer, fields: dict[str, str]) -> Response:
    since_text = _text(fields, "since")
    since = parse_moment(since_text)
    if since is None:
        raise InputError("since: not a time (e.g. 2026-05-01T10:00, UTC)")
    states = {"failed": ("failed",), "dead": ("dead",), "both": ("failed", "dead")}.get(
        fields.get("states", "both")
    )
    if states is None:
        raise InputError("states: failed, dead or both")
    provider = _text(fields, "provider", required=False) or None
    kind = _text(fields, "metadata_kind", required=False) or None
    detail = {"since": since_text, "states": list(states), "provider": provider, "metadata_kind": kind}
    return await _act(
        request,
        viewer,
        "replay_failed",
        provider or "every provider",
        detail,
        ops.replay_failed,
        states=states,
        provider=provider,
        metadata_kind=kind,
        since=since,
    )


@_action("/console/actions/pause", "console_action_pause")
async def pause(request: Request, viewer: Viewer, fields: dict[str, str]) -> Response:
    name = _text(fields, "provider")
    minutes = _choice(fields, "minutes", PAUSE_MINUTES)
    until = None if minutes == 0 else datetime.now(UTC) + timedelta(minutes=minutes)
    return await _act(
        request,
        viewer,
        "pause_destination",
        name,
        {"minutes": minutes or "until resumed"},
        pausing.pause_destination,
        name,
        who=viewer.name,
        until=until,
    )


@_action("/console/actions/resume", "console_action_resume")
async def resume(request: Request, viewer: Viewer, fields: dict[str, str]) -> Response:
    name = _text(fields, "provider")
    return await _act(request, viewer, "resume_destination", name, {}, pausing.resume_destination, name)


@_action("/console/actions/silence", "console_action_silence")
async def silence(request: Request, viewer: Viewer, fields: dict[str, str]) -> Response:
    key = fields.get("key", "")
    hours = _choice(fields, "hours", SILENCE_HOURS)
    until = datetime.now(UTC) + timedelta(hours=hours)
    return await _act(
        request,
        viewer,
        "silence_alert",
        key,
        {"hours": hours},
        ops.silence_alert,
        key,
        who=viewer.name,
        until=until,
    )


@_route("/console/audit", "console_audit")
@page
async def audit(request: Request, viewer: Viewer) -> Response:
    items = await _call(request, ops.list_actions)
    return render(request, viewer, "audit.html", section="audit", items=items)
