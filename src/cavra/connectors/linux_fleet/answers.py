"""What the Linux fleet connector sends in ``extra_vars`` and how it reads AWX's answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cavra.connectors.base import Context, Response
from cavra.connectors.endpoint.export import EndpointExport
from cavra.connectors.linux_fleet.settings import DIRECT_PREFIX, PREFIX_PATTERN, RECHECK_WINDOW_SECONDS
from cavra.secretforms import clip

GATEWAY_HINT = (
    "; behind the Automation Platform 2.5+ platform gateway the controller API is at /api/controller/v2: "
    "set api_prefix to /api/controller/v2 or auto"
)

HINTS = {
    401: "the credentials were refused: check token (or username and password)",
    403: "the user may not launch this job template (or use its inventory or credentials)",
    404: "job template {template} does not exist (check job_template_id)",
    405: "job template {template} cannot be launched (for example no inventory, or a disabled project)",
}
RECHECK_HINTS = {
    **HINTS,
    403: "the user may not read the jobs of job template {template} (needed to find a launch whose answer "
    "was lost)",
}


def extra_vars(export: EndpointExport, delivery_key: str) -> dict[str, Any]:
    return {
        "cavra_export_id": export.export_id,
        "cavra_release": export.release,
        "cavra_channel": export.channel,
        "cavra_event_id": export.event_id,
        "cavra_delivery_key": delivery_key,
        "cavra_approval_status": export.approval.get("status", ""),
        "cavra_artifacts": [a.summary() for a in export.artifacts],
    }


def recheck_since(ctx: Context) -> str:
    """The ``created__gte`` bound of the re-check: shortly before this delivery began (its first run, for
    a run resumed by the outbox), in UTC."""
    began = ctx.now if ctx.resumed_since is None else min(ctx.now, ctx.resumed_since)
    at = datetime.fromtimestamp(began - RECHECK_WINDOW_SECONDS, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def carries_key(job: object, delivery_key: str) -> bool:
    """The job's ``extra_vars`` (a JSON string, or an object) hold ``cavra_delivery_key == delivery_key``."""
    if not isinstance(job, dict):
        return False
    raw = job.get("extra_vars")
    data: Any = raw
    if isinstance(raw, str):
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:  # not JSON (AWX stores JSON; be lenient with a YAML string)
            return f"cavra_delivery_key: {delivery_key}" in raw
    return isinstance(data, dict) and data.get("cavra_delivery_key") == delivery_key


def discovered_prefix(response: Response) -> str | None:
    """The controller API prefix named by ``GET /api/``: a gateway's ``apis.controller`` + ``v2``, or a
    controller's ``current_version``."""
    data = response.json_or_none()
    if not isinstance(data, dict):
        return None
    apis = data.get("apis")
    found: object = None
    if isinstance(apis, dict) and isinstance(apis.get("controller"), str):
        found = apis["controller"].rstrip("/") + "/v2"
    elif isinstance(data.get("current_version"), str):
        found = data["current_version"]
    if not isinstance(found, str):
        return None
    cleaned = "/" + found.strip().strip("/")
    return cleaned if PREFIX_PATTERN.match(cleaned) else None


def awx_error(response: Response) -> str:
    """``HTTP 400: variables_needed_to_start: …`` or ``HTTP 404: Not found.`` from a DRF error body."""
    data = response.json_or_none()
    if isinstance(data, dict) and data:
        if isinstance(data.get("detail"), str):
            return f"HTTP {response.status}: {clip(data['detail'], 200)}"
        parts = [f"{k}: {clip(json.dumps(v), 160)}" for k, v in list(data.items())[:3]]
        return f"HTTP {response.status}: " + "; ".join(parts)
    return f"HTTP {response.status}"


def gateway_hint(response: Response, prefix: str | None) -> str:
    """A 404 under ``/api/v2`` that is not the controller's own ``{"detail": …}``: maybe a gateway."""
    data = response.json_or_none()
    own = isinstance(data, dict) and isinstance(data.get("detail"), str)
    return GATEWAY_HINT if response.status == 404 and prefix == DIRECT_PREFIX and not own else ""
