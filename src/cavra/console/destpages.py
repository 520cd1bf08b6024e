"""The console's destinations page (``/console/destinations``): every destination with its state (paused,
waiting on Retry-After, breaker, failing, active, idle), last delivery, failure count and links to its
history, queue and trend; operators and admins get its Pause / Resume form (:mod:`cavra.console.actions`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cavra.api.deps import get_runtime
from cavra.console.access import Viewer
from cavra.console.render import render
from cavra.console.routes import _call, _route, page
from cavra.governance.destboard import destination_board


@_route("/console/destinations", "console_destinations")
@page
async def destinations(request: Request, viewer: Viewer) -> Response:
    config = get_runtime(request).config
    items = await _call(request, destination_board, config)
    return render(
        request,
        viewer,
        "destinations.html",
        section="destinations",
        items=items,
        configured=config is not None,
    )
