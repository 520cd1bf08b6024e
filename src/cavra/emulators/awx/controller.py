"""The AWX emulator's controller API handlers (auth, job templates, launch, jobs), under one API prefix."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cavra.emulators.awx.jobs import FINAL, Job, detail, list_jobs, now, parse_extra_vars, serialize, state
from cavra.emulators.framework import EmulatorHub, json_response

if TYPE_CHECKING:
    from cavra.emulators.awx import Settings

DEMO_USERNAME = "cavra-publisher"
#: launch field -> the template flag that must be true for it to be applied
PROMPTS = {
    "extra_vars": "ask_variables_on_launch",
    "limit": "ask_limit_on_launch",
    "inventory": "ask_inventory_on_launch",
    "job_tags": "ask_tags_on_launch",
    "skip_tags": "ask_skip_tags_on_launch",
    "credentials": "ask_credential_on_launch",
    "job_type": "ask_job_type_on_launch",
    "verbosity": "ask_verbosity_on_launch",
    "diff_mode": "ask_diff_mode_on_launch",
    "scm_branch": "ask_scm_branch_on_launch",
}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api" authorization_url="/api/o/authorize/"'}


def launch_vars(
    template: dict[str, Any], body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]] | web.Response:
    """The ``extra_vars`` applied and the fields ignored (not prompted for), or the controller's 400."""
    ignored: dict[str, Any] = {}
    for name, value in body.items():
        flag = PROMPTS.get(name)
        if name != "extra_vars" and (flag is None or not template.get(flag, False)):
            ignored[name] = value
    extra: dict[str, Any] = {}
    if "extra_vars" in body:
        parsed = parse_extra_vars(body["extra_vars"])
        if parsed is None:
            return json_response(
                {"extra_vars": ["Cannot parse as JSON (error: invalid syntax) or YAML."]}, status=400
            )
        survey_vars = {v["variable"] for v in template.get("survey") or []}
        if template.get("ask_variables_on_launch", False):
            extra = dict(parsed)
        else:
            extra = {k: v for k, v in parsed.items() if k in survey_vars}
            rest = {k: v for k, v in parsed.items() if k not in survey_vars}
            if rest:
                ignored["extra_vars"] = rest
    missing = [
        v["variable"]
        for v in template.get("survey") or []
        if v.get("required") and v["variable"] not in extra
    ]
    if missing:
        return json_response(
            {"variables_needed_to_start": [f"'{m}' value missing" for m in missing]}, status=400
        )
    return extra, ignored


class Controller:
    """The controller API handlers; ``api`` is the prefix they are served under (``/api/v2`` or, behind
    the platform gateway, ``/api/controller/v2``)."""

    def __init__(self, hub: EmulatorHub, settings: Settings, api: str) -> None:
        self.settings = settings
        self.api = api
        self.state = state(hub)
        self.templates = {int(k): dict(v) for k, v in settings.templates.items()}

    def base(self, request: web.Request) -> str:
        """The API base path as the client reached it (mount point included), for the ``url`` fields."""
        return request.path.split(self.api + "/", 1)[0] + self.api

    def authenticate(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return detail(401, "Authentication credentials were not provided.", _CHALLENGE)
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            if any(secrets.compare_digest(value.encode(), t.encode()) for t in self.settings.tokens):
                return None
            return detail(
                401,
                "Authentication credentials were not provided. To establish a login session, "
                "visit /api/login/.",
                _CHALLENGE,
            )
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return detail(
                    401, "Invalid basic header. Credentials not correctly base64 encoded.", _CHALLENGE
                )
            expected = self.settings.users.get(user)
            if expected is not None and secrets.compare_digest(password.encode(), expected.encode()):
                return None
            return detail(401, "Invalid username/password.", _CHALLENGE)
        return detail(401, "Authentication credentials were not provided.", _CHALLENGE)

    def template_of(self, request: web.Request) -> tuple[int, dict[str, Any]] | web.Response:
        try:
            template_id = int(request.match_info["id"])
        except ValueError:
            return detail(404, "Not found.")
        template = self.templates.get(template_id)
        if template is None:
            return detail(404, "Not found.")
        return template_id, template

    async def ping(self, request: web.Request) -> web.Response:
        return json_response(
            {"ha": False, "version": "24.6.1", "active_node": "awx-emulator", "instances": []}
        )

    async def me(self, request: web.Request) -> web.Response:
        denied = self.authenticate(request)
        if denied is not None:
            return denied
        return json_response({"count": 1, "results": [{"id": 1, "username": DEMO_USERNAME}]})

    async def get_template(self, request: web.Request) -> web.Response:
        found = self.authenticate(request) or self.template_of(request)
        if isinstance(found, web.Response):
            return found
        template_id, template = found
        flags = {flag: bool(template.get(flag, False)) for flag in PROMPTS.values()}
        return json_response(
            {
                "id": template_id,
                "type": "job_template",
                "name": template.get("name", ""),
                "survey_enabled": bool(template.get("survey")),
                **flags,
            }
        )

    async def launch_requirements(self, request: web.Request) -> web.Response:
        found = self.authenticate(request) or self.template_of(request)
        if isinstance(found, web.Response):
            return found
        survey = found[1].get("survey") or []
        return json_response(
            {
                "can_start_without_user_input": not any(v.get("required") for v in survey),
                "passwords_needed_to_start": [],
                "ask_variables_on_launch": bool(found[1].get("ask_variables_on_launch", False)),
                "survey_enabled": bool(survey),
                "variables_needed_to_start": [v["variable"] for v in survey if v.get("required")],
                "inventory_needed_to_start": False,
            }
        )

    async def launch(self, request: web.Request) -> web.Response:
        found = self.authenticate(request) or self.template_of(request)
        if isinstance(found, web.Response):
            return found
        template_id, template = found
        if not template.get("launchable", True):
            return detail(405, 'Method "POST" not allowed.')
        raw = await request.read()
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            return detail(400, f"JSON parse error - {exc}")
        if not isinstance(body, dict):
            return detail(400, "Invalid data. Expected a dictionary, but got list.")
        applied = launch_vars(template, body)
        if isinstance(applied, web.Response):
            return applied
        extra, ignored = applied
        st = self.state
        job = Job(id=st.next_id, template_id=template_id, template=template, extra_vars=extra, created=now())
        st.next_id += 1
        st.jobs[job.id] = job
        answer = serialize(job, self.base(request))
        answer.update({"job": job.id, "ignored_fields": ignored})
        return json_response(answer, status=201, headers={"Location": answer["url"]})

    async def template_jobs(self, request: web.Request) -> web.Response:
        found = self.authenticate(request) or self.template_of(request)
        if isinstance(found, web.Response):
            return found
        jobs = [job for job in self.state.jobs.values() if job.template_id == found[0]]
        return list_jobs(request, jobs, self.base(request))

    async def all_jobs(self, request: web.Request) -> web.Response:
        denied = self.authenticate(request)
        if denied is not None:
            return denied
        return list_jobs(request, list(self.state.jobs.values()), self.base(request))

    async def get_job(self, request: web.Request) -> web.Response:
        denied = self.authenticate(request)
        if denied is not None:
            return denied
        try:
            job = self.state.jobs.get(int(request.match_info["id"]))
        except ValueError:
            job = None
        if job is None:
            return detail(404, "Not found.")
        if job.status not in FINAL:
            job.polls += 1
            job.started = job.started or now()
            if job.polls >= int(job.template.get("polls_to_finish", 2)):
                job.status = str(job.template.get("outcome", "successful"))
                job.finished = now()
            else:
                job.status = "running"
        return json_response(serialize(job, self.base(request)))

    def add_routes(self, app: web.Application) -> None:
        api = self.api
        app.router.add_get(api + "/ping/", self.ping)
        app.router.add_get(api + "/me/", self.me)
        app.router.add_get(api + "/job_templates/{id}/", self.get_template)
        app.router.add_get(api + "/job_templates/{id}/launch/", self.launch_requirements)
        app.router.add_post(api + "/job_templates/{id}/launch/", self.launch)
        app.router.add_get(api + "/job_templates/{id}/jobs/", self.template_jobs)
        app.router.add_get(api + "/jobs/", self.all_jobs)
        app.router.add_get(api + "/jobs/{id}/", self.get_job)
