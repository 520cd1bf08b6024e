"""The Linux fleet connector's flow: discover (``api_prefix: auto``), launch or re-check, poll."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from urllib.parse import urlencode

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
from cavra.connectors.endpoint.export import parse_export
from cavra.connectors.flow import FlowState, deadline_in, default_verdict, failure_verdict
from cavra.connectors.linux_fleet.answers import (
    HINTS,
    RECHECK_HINTS,
    awx_error,
    carries_key,
    discovered_prefix,
    extra_vars,
    gateway_hint,
    recheck_since,
)
from cavra.connectors.linux_fleet.settings import (
    ADOPTED,
    AUTO,
    DIRECT_PREFIX,
    FAILED,
    LAUNCHED,
    MAX_POLLS,
    RECHECK_PAGE,
    LinuxFleetSettings,
    auth_header,
    base_url,
    poll_interval,
    template_id,
)
from cavra.connectors.spec import Described
from cavra.secretforms import clip
from cavra.secrets import Secret


@dataclass(frozen=True)
class LaunchState:
    """Before the job is known. ``since`` is the attempt number of the launch step's first request: a later
    attempt in this state is a retry, so the launch's answer was lost and the jobs are re-checked first."""

    since: int = 1
    #: re-checks already made that found nothing
    rechecks: int = 0
    #: the controller API prefix (None: not yet discovered, ``api_prefix: auto``)
    prefix: str | None = None
    #: this run was resumed by the outbox and discovery ran first: re-check before launching
    resumed: bool = False


@dataclass(frozen=True)
class PollState(FlowState):
    """Polling the job, under the controller API prefix in use."""

    prefix: str = DIRECT_PREFIX


class LinuxFleetConnector(Described):
    """AWX / AAP job-template launch carrying the export, then the job polled to its end."""

    settings_model: ClassVar[type[ConnectorSettings]] = LinuxFleetSettings
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
            prefix = state.prefix if isinstance(state, PollState) else prefix_of(LaunchState(), settings)
            url = f"{base}{prefix or DIRECT_PREFIX}/jobs/{state.remote_id}/"
            return PreparedRequest("GET", url, headers=headers, step="poll")
        launch = state if isinstance(state, LaunchState) else LaunchState()
        prefix = prefix_of(launch, settings)
        if prefix is None:
            return PreparedRequest("GET", f"{base}/api/", headers=headers, step="discover")
        api = base + prefix
        # a retry: the launch's answer was lost, look for its job first; so too at the start of a run the
        # outbox resumed, in case an earlier run's launch started a job and its answer was lost
        resumed = (state is None or launch.resumed) and ctx.resumed_since is not None
        if ctx.attempt > launch.since or resumed:
            query = urlencode(
                {"created__gte": recheck_since(ctx), "order_by": "-created", "page_size": RECHECK_PAGE}
            )
            url = f"{api}/job_templates/{template}/jobs/?{query}"
            return PreparedRequest("GET", url, headers=headers, step="recheck")
        body = json.dumps({"extra_vars": extra_vars(export, ctx.delivery_key)}).encode("utf-8")
        headers["Content-Type"] = "application/json"
        url = f"{api}/job_templates/{template}/launch/"
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
        launch = state if isinstance(state, LaunchState) else LaunchState()
        if request.step == "discover":
            return _after_discover(response, settings, ctx, launch)
        if request.step == "launch":
            return _after_launch(response, settings, template, prefix_of(launch, settings) or DIRECT_PREFIX)
        if request.step == "recheck":
            return self._after_recheck(response, settings, template, ctx, launch)
        flow = state if isinstance(state, FlowState) else PollState(step="poll")
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
        if response.status in RECHECK_HINTS:
            hint = RECHECK_HINTS[response.status].format(template=template)
            hint += gateway_hint(response, prefix_of(launch, settings))
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
        prefix = prefix_of(launch, settings) or DIRECT_PREFIX
        if isinstance(job, int) and not isinstance(job, bool):
            # the lost launch started this job: follow it instead of starting another
            return Next(
                _polling(response, job, settings, ADOPTED, prefix),
                accepted=f"AWX job {job} (started by the lost launch) was adopted, its end not yet known",
                remote_id=str(job),
            )
        if launch.rechecks == 0 and self.settle_seconds > 0:
            return Next(
                replace(launch, since=ctx.attempt, rechecks=1, resumed=False), after=self.settle_seconds
            )
        return Next(replace(launch, since=ctx.attempt + 1, rechecks=0, resumed=False))


def prefix_of(launch: LaunchState, settings: LinuxFleetSettings) -> str | None:
    """The controller API prefix: discovered, or configured; None while ``auto`` has not discovered it."""
    if launch.prefix is not None:
        return launch.prefix
    return None if settings.api_prefix == AUTO else settings.api_prefix


def _after_discover(
    response: Response, settings: LinuxFleetSettings, ctx: Context, launch: LaunchState
) -> Verdict:
    label = "AWX API discovery (GET /api/, api_prefix auto)"
    if response.status in (401, 403):
        return Reject(f"{label}: {awx_error(response)}: {HINTS[401]}")
    if response.status == 404:
        return Reject(f"{label}: HTTP 404: is url the AWX / Automation Platform base URL?")
    if response.status != 200:
        return failure_verdict(response, label, awx_error(response))
    prefix = discovered_prefix(response)
    if prefix is None:
        return Reject(
            f"{label}: HTTP 200 names no controller API (neither apis.controller nor current_version); "
            "set api_prefix explicitly"
        )
    return Next(replace(launch, prefix=prefix, since=ctx.attempt + 1, resumed=ctx.resumed_since is not None))


def _polling(
    response: Response, job: int, settings: LinuxFleetSettings, action: str, prefix: str
) -> PollState:
    return PollState(
        step="poll",
        remote_id=str(job),
        action=action,
        deadline=deadline_in(response, settings.verify_timeout_seconds),
        prefix=prefix,
    )


def _after_launch(response: Response, settings: LinuxFleetSettings, template: int, prefix: str) -> Verdict:
    label = f"AWX launch of job template {template}"
    if response.status in HINTS:
        hint = HINTS[response.status].format(template=template) + gateway_hint(response, prefix)
        return Reject(f"{label}: {awx_error(response)}: {hint}")
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
    state = _polling(response, job, settings, LAUNCHED, prefix)
    accepted = f"AWX started job {job}, its end not yet known"
    if settings.verify_timeout_seconds < interval:  # poll once at once: the deadline leaves no time to wait
        return Next(state, accepted=accepted, remote_id=str(job))
    return Next(state, after=interval, accepted=accepted, remote_id=str(job))


def _after_poll(response: Response, flow: FlowState, settings: LinuxFleetSettings, template: int) -> Verdict:
    label = f"AWX job {flow.remote_id}"
    if response.status in (401, 403):
        return Reject(f"{label}: {awx_error(response)}: {HINTS[response.status].format(template=template)}")
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
    if polls >= MAX_POLLS or response.received_clock + interval > flow.deadline:
        return Pending(
            f"{label} is still {status} after the verify deadline ({settings.verify_timeout_seconds:g} s, "
            f"{polls} polls): launched, completion not yet proven",
            remote_id=flow.remote_id,
        )
    return Next(flow.go("poll", polls=polls), after=interval)
