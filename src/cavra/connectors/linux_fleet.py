"""Linux fleet: launch an Ansible AWX / Automation Platform job template with the export, and poll the job.

The export reaches the hosts through a job template the fleet team owns (its playbook fetches and checks
the artifacts by digest). CAVRA launches it with the export's identity in ``extra_vars``:

``{"cavra_export_id", "cavra_release", "cavra_channel", "cavra_event_id", "cavra_delivery_key",
"cavra_approval_status", "cavra_artifacts": [{"name", "sha256", "size"}]}``

Flow (each line one recorded attempt):

1. ``launch``: ``POST {url}/api/v2/job_templates/{job_template_id}/launch/``, Bearer token or Basic
   (``username`` + ``password``); 201 gives the job id. A template that does not prompt for variables
   answers 201 with ``extra_vars`` in ``ignored_fields``: the job would run without the export, so the
   delivery fails and says how to fix the template;
2. ``poll``: ``GET {url}/api/v2/jobs/{id}/`` every ``poll_interval_seconds`` (stretched so that at most
   ``MAX_POLLS`` polls fit in ``verify_timeout_seconds``) until the job ends. ``successful`` is the proof
   of delivery; ``failed``, ``error`` or ``canceled`` fail the delivery with that status; a job still
   running at the verify deadline is recorded as ``pending`` with its id.

Launch has no idempotency key at the API: ``cavra_delivery_key`` lets the playbook recognise a repeat.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from cavra.connectors.base import (
    ConnectorSettings,
    Context,
    Delivered,
    Next,
    Pending,
    PreparedRequest,
    Reject,
    Response,
    Verdict,
)
from cavra.connectors.endpoint.export import EndpointExport, parse_export
from cavra.connectors.flow import FlowState, deadline_in, default_verdict
from cavra.errors import ConfigError
from cavra.secrets import Secret

#: the most polls one delivery makes; the interval is stretched to fit the verify timeout
MAX_POLLS = 30
FAILED = ("failed", "error", "canceled")

_HINTS = {
    401: "the credentials were refused: check token (or username and password)",
    403: "the user may not launch this job template (or use its inventory or credentials)",
    404: "job template {template} does not exist (check job_template_id)",
    405: "job template {template} cannot be launched (for example no inventory, or a disabled project)",
}


class LinuxFleetSettings(ConnectorSettings):
    """``url`` (AWX/AAP base), ``token`` or ``username`` + ``password``, ``job_template_id`` and polling."""

    username: str | None = None
    password: Secret | None = None
    job_template_id: int | None = Field(default=None, gt=0)
    poll_interval_seconds: float = Field(default=5.0, gt=0, le=600)
    verify_timeout_seconds: float = Field(default=600.0, ge=0, le=86_400)


def base_url(settings: LinuxFleetSettings) -> str:
    if settings.url is None:
        raise ConfigError("linux: url is required (the AWX / Automation Platform base URL)")
    return settings.url.reveal().rstrip("/")


def template_id(settings: LinuxFleetSettings) -> int:
    if settings.job_template_id is None:
        raise ConfigError("linux: job_template_id is required (the AWX job template that publishes exports)")
    return settings.job_template_id


def auth_header(settings: LinuxFleetSettings) -> Secret:
    if settings.token is not None:
        return Secret(f"Bearer {settings.token.reveal()}", source="linux:token")
    if settings.username and settings.password is not None:
        pair = f"{settings.username}:{settings.password.reveal()}".encode()
        return Secret("Basic " + base64.b64encode(pair).decode("ascii"), source="linux:basic")
    raise ConfigError("linux: token, or username and password, is required")


def poll_interval(settings: LinuxFleetSettings) -> float:
    return max(settings.poll_interval_seconds, settings.verify_timeout_seconds / MAX_POLLS)


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


def awx_error(response: Response) -> str:
    """``HTTP 400: variables_needed_to_start: …`` or ``HTTP 404: Not found.`` from a DRF error body."""
    data = response.json_or_none()
    if isinstance(data, dict) and data:
        if isinstance(data.get("detail"), str):
            return f"HTTP {response.status}: {data['detail'][:200]}"
        parts = [f"{k}: {json.dumps(v)[:160]}" for k, v in list(data.items())[:3]]
        return f"HTTP {response.status}: " + "; ".join(parts)
    return f"HTTP {response.status}"


class LinuxFleetConnector:
    """AWX / AAP job-template launch carrying the export, then the job polled to its end."""

    provider: ClassVar[str] = "linux"
    category: ClassVar[str] = "endpoint"
    settings_model: ClassVar[type[ConnectorSettings]] = LinuxFleetSettings
    secret_url_path: ClassVar[bool] = False

    def prepare(
        self, event: Mapping[str, Any], settings: LinuxFleetSettings, ctx: Context, state: Any
    ) -> PreparedRequest:
        export = parse_export(event, self.provider)
        template = template_id(settings)
        headers: dict[str, str | Secret] = {
            **settings.headers,
            "Accept": "application/json",
            "Authorization": auth_header(settings),
        }
        base = base_url(settings)
        if isinstance(state, FlowState) and state.step == "poll":
            return PreparedRequest(
                "GET", f"{base}/api/v2/jobs/{state.remote_id}/", headers=headers, step="poll"
            )
        body = json.dumps({"extra_vars": extra_vars(export, ctx.delivery_key)}).encode("utf-8")
        headers["Content-Type"] = "application/json"
        url = f"{base}/api/v2/job_templates/{template}/launch/"
        return PreparedRequest("POST", url, headers=headers, body=body, step="launch")

    def interpret(
        self,
        request: PreparedRequest,
        response: Response,
        settings: LinuxFleetSettings,
        ctx: Context,
        state: Any,
    ) -> Verdict:
        template = template_id(settings)
        if request.step == "launch":
            return _after_launch(response, settings, template)
        flow = state if isinstance(state, FlowState) else FlowState(step="poll")
        return _after_poll(response, flow, settings, template)


def _after_launch(response: Response, settings: LinuxFleetSettings, template: int) -> Verdict:
    label = f"AWX launch of job template {template}"
    if response.status in _HINTS:
        return Reject(f"{label}: {awx_error(response)}: {_HINTS[response.status].format(template=template)}")
    if response.status == 400:
        return Reject(f"{label}: {awx_error(response)}")
    if not 200 <= response.status < 300:
        return default_verdict(response, f"{label}: {awx_error(response)}")
    data = response.json_or_none()
    job = data.get("job", data.get("id")) if isinstance(data, dict) else None
    if isinstance(job, bool) or not isinstance(job, int):
        return Reject(f"{label}: HTTP {response.status} without a job id")
    ignored = data.get("ignored_fields") if isinstance(data, dict) else None
    if isinstance(ignored, dict) and "extra_vars" in ignored:
        return Reject(
            f"{label}: job {job} was launched but AWX ignored extra_vars, so it runs without the export; "
            f"enable 'Prompt on launch' for variables on job template {template}"
        )
    interval = poll_interval(settings)
    state = FlowState(step="poll", remote_id=str(job), deadline=deadline_in(settings.verify_timeout_seconds))
    if settings.verify_timeout_seconds < interval:
        return Next(state)  # poll once at once: the deadline leaves no time to wait
    return Next(state, after=interval)


def _after_poll(response: Response, flow: FlowState, settings: LinuxFleetSettings, template: int) -> Verdict:
    label = f"AWX job {flow.remote_id}"
    if response.status in (401, 403):
        return Reject(f"{label}: {awx_error(response)}: {_HINTS[response.status].format(template=template)}")
    if response.status != 200:
        verdict = default_verdict(response, f"{label}: {awx_error(response)}")
        return (
            Reject(f"{label}: unexpected HTTP {response.status}")
            if isinstance(verdict, Delivered)
            else verdict
        )
    data = response.json_or_none()
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, str):
        return Reject(f"{label}: HTTP 200 without a job status")
    assert isinstance(data, dict)
    if status == "successful":
        return Delivered(
            remote_id=flow.remote_id,
            proof=f"AWX job {flow.remote_id} (job template {template}) finished successful",
            detail={
                "job_id": flow.remote_id or "",
                "job_status": status,
                "job_template_id": str(template),
                "finished": str(data.get("finished") or ""),
            },
        )
    if status in FAILED:
        why = str(data.get("job_explanation") or "").strip()
        return Reject(
            f"{label} (job template {template}) finished {status}" + (f": {why[:200]}" if why else ""),
            detail={"job_id": flow.remote_id or "", "job_status": status},
        )
    polls = flow.polls + 1
    interval = poll_interval(settings)
    if polls >= MAX_POLLS or time.monotonic() + interval > flow.deadline:
        return Pending(
            f"{label} is still {status} after the verify deadline ({settings.verify_timeout_seconds:g} s, "
            f"{polls} polls): launched, completion not yet proven",
            remote_id=flow.remote_id,
        )
    return Next(flow.go("poll", polls=polls), after=interval)
