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

The launch API has no idempotency key, so a launch whose answer is lost (dropped connection, timeout, 5xx or
429) is not simply sent again: the retry first runs

* ``recheck``: ``GET {url}/api/v2/job_templates/{job_template_id}/jobs/?created__gte=…&order_by=-created
  &page_size=50``, the template's jobs created since shortly before this delivery began, newest first. AWX
  refuses filters on ``extra_vars`` (403 "Filtering on extra_vars is not allowed"), so the connector reads
  each job's ``extra_vars`` (a JSON string) itself and looks for its ``cavra_delivery_key``. A job found is
  adopted: it is polled as if the launch had answered, and the record says so. When nothing is found the
  connector waits ``settle_seconds`` (a launch that timed out may still be in progress at the controller),
  looks once more, and only then launches again.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

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
from cavra.connectors.flow import FlowState, deadline_in, default_verdict, failure_verdict
from cavra.errors import ConfigError
from cavra.secretforms import clip
from cavra.secrets import Secret

#: the most polls one delivery makes; the interval is stretched to fit the verify timeout
MAX_POLLS = 30
FAILED = ("failed", "error", "canceled")
#: the re-check reads one page of the template's newest jobs (AWX caps page_size at 200)
RECHECK_PAGE = 50
#: the re-check looks at jobs created up to this many seconds before the delivery began (clock skew)
RECHECK_WINDOW_SECONDS = 300.0
ADOPTED = "adopted"
LAUNCHED = "launched"

_HINTS = {
    401: "the credentials were refused: check token (or username and password)",
    403: "the user may not launch this job template (or use its inventory or credentials)",
    404: "job template {template} does not exist (check job_template_id)",
    405: "job template {template} cannot be launched (for example no inventory, or a disabled project)",
}
_RECHECK_HINTS = {
    **_HINTS,
    403: "the user may not read the jobs of job template {template} (needed to find a launch whose answer "
    "was lost)",
}


@dataclass(frozen=True)
class LaunchState:
    """Before the job is known. ``since`` is the attempt number of the launch step's first request: a later
    attempt in this state is a retry, so the launch's answer was lost and the jobs are re-checked first."""

    since: int = 1
    #: re-checks already made that found nothing
    rechecks: int = 0


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


def awx_error(response: Response) -> str:
    """``HTTP 400: variables_needed_to_start: …`` or ``HTTP 404: Not found.`` from a DRF error body."""
    data = response.json_or_none()
    if isinstance(data, dict) and data:
        if isinstance(data.get("detail"), str):
            return f"HTTP {response.status}: {clip(data['detail'], 200)}"
        parts = [f"{k}: {clip(json.dumps(v), 160)}" for k, v in list(data.items())[:3]]
        return f"HTTP {response.status}: " + "; ".join(parts)
    return f"HTTP {response.status}"


class LinuxFleetConnector:
    """AWX / AAP job-template launch carrying the export, then the job polled to its end."""

    provider: ClassVar[str] = "linux"
    category: ClassVar[str] = "endpoint"
    settings_model: ClassVar[type[ConnectorSettings]] = LinuxFleetSettings
    secret_url_path: ClassVar[bool] = False
    #: after a re-check that found nothing, how long to let a slow launch land before looking once more
    settle_seconds: ClassVar[float] = 2.0

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
        launch = state if isinstance(state, LaunchState) else LaunchState()
        # a retry: the launch's answer was lost, look for its job first; so too at the start of a run the
        # outbox resumed, in case an earlier run's launch started a job and its answer was lost
        if ctx.attempt > launch.since or (state is None and ctx.resumed_since is not None):
            query = urlencode(
                {"created__gte": recheck_since(ctx), "order_by": "-created", "page_size": RECHECK_PAGE}
            )
            url = f"{base}/api/v2/job_templates/{template}/jobs/?{query}"
            return PreparedRequest("GET", url, headers=headers, step="recheck")
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
        if request.step == "recheck":
            launch = state if isinstance(state, LaunchState) else LaunchState()
            return self._after_recheck(response, settings, template, ctx, launch)
        flow = state if isinstance(state, FlowState) else FlowState(step="poll")
        return _after_poll(response, flow, settings, template)

    def _after_recheck(
        self,
        response: Response,
        settings: LinuxFleetSettings,
        template: int,
        ctx: Context,
        launch: LaunchState,
    ) -> Verdict:
        label = f"AWX re-check of the jobs of job template {template}"
        if response.status in _RECHECK_HINTS:
            hint = _RECHECK_HINTS[response.status].format(template=template)
            return Reject(f"{label}: {awx_error(response)}: {hint}")
        if response.status == 400:
            return Reject(f"{label}: {awx_error(response)}")
        if response.status != 200:
            return failure_verdict(response, label, awx_error(response))
        data = response.json_or_none()
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            return Reject(f"{label}: HTTP 200 without a results list; is the url the AWX base?")
        found = next((job for job in results if carries_key(job, ctx.delivery_key)), None)
        job = found.get("id") if isinstance(found, dict) else None
        if isinstance(job, int) and not isinstance(job, bool):
            # the lost launch started this job: follow it instead of starting another
            return Next(
                _polling(job, settings, ADOPTED),
                accepted=f"AWX job {job} (started by the lost launch) was adopted, its end not yet known",
                remote_id=str(job),
            )
        if launch.rechecks == 0 and self.settle_seconds > 0:
            return Next(LaunchState(since=ctx.attempt, rechecks=1), after=self.settle_seconds)
        return Next(LaunchState(since=ctx.attempt + 1))


def _polling(job: int, settings: LinuxFleetSettings, action: str) -> FlowState:
    return FlowState(
        step="poll",
        remote_id=str(job),
        action=action,
        deadline=deadline_in(settings.verify_timeout_seconds),
    )


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
    state = _polling(job, settings, LAUNCHED)
    accepted = f"AWX started job {job}, its end not yet known"
    if settings.verify_timeout_seconds < interval:  # poll once at once: the deadline leaves no time to wait
        return Next(state, accepted=accepted, remote_id=str(job))
    return Next(state, after=interval, accepted=accepted, remote_id=str(job))


def _after_poll(response: Response, flow: FlowState, settings: LinuxFleetSettings, template: int) -> Verdict:
    label = f"AWX job {flow.remote_id}"
    if response.status in (401, 403):
        return Reject(f"{label}: {awx_error(response)}: {_HINTS[response.status].format(template=template)}")
    if response.status != 200:
        return failure_verdict(response, label, awx_error(response))
    data = response.json_or_none()
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, str):
        return Reject(f"{label}: HTTP 200 without a job status")
    assert isinstance(data, dict)
    if status == "successful":
        proof = f"AWX job {flow.remote_id} (job template {template}) finished successful"
        if flow.action == ADOPTED:
            proof += (
                "; the launch's answer was lost, the job was found by cavra_delivery_key on re-check "
                "and adopted (not launched again)"
            )
        return Delivered(
            remote_id=flow.remote_id,
            proof=proof,
            detail={
                "job_id": flow.remote_id or "",
                "job_status": status,
                "job_template_id": str(template),
                "finished": str(data.get("finished") or ""),
                "launch": flow.action or LAUNCHED,
            },
        )
    if status in FAILED:
        why = str(data.get("job_explanation") or "").strip()
        return Reject(
            f"{label} (job template {template}) finished {status}" + (f": {clip(why, 200)}" if why else ""),
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
