"""Emulated Ansible AWX / Automation Platform controller, written from providers.md §11.1.

Routes (mounted at ``/awx``): ``GET /api/v2/ping/`` (no auth), ``GET /api/v2/me/``,
``GET /api/v2/job_templates/{id}/``, ``GET|POST /api/v2/job_templates/{id}/launch/``,
``GET /api/v2/job_templates/{id}/jobs/``, ``GET /api/v2/jobs/``, ``GET /api/v2/jobs/{id}/``.

What is checked, as the real controller does:

* ``Authorization: Bearer <token>`` or HTTP Basic, else 401 ``{"detail": …}`` with ``WWW-Authenticate``;
* an unknown template is 404 ``{"detail": "Not found."}``; a template that cannot be launched
  (``launchable: false``) is 405;
* the launch body is a JSON object (else 400); ``extra_vars`` may be an object or a JSON/YAML string;
  fields the template does not prompt for (``ask_variables_on_launch``, ``ask_limit_on_launch``, …) are
  not applied but returned in ``ignored_fields``; with a survey, survey variables are accepted and missing
  required ones give 400 ``{"variables_needed_to_start": [...]}``;
* success is 201 with ``Location: …/api/v2/jobs/{id}/`` and the job (``job``, ``id``, ``status: "pending"``,
  ``ignored_fields``, ``extra_vars`` as a JSON string).

The job lists page like the controller's: ``{"count", "next", "previous", "results"}``, ``page`` (an
out-of-range or malformed page is 404 ``Invalid page.``) and ``page_size`` (default 25, capped at 200),
``next``/``previous`` as request paths with the other parameters kept; ``order_by`` (``-`` for descending,
several comma-separated; an unknown field is 400); field filters with Django lookups (``status=…``,
``job_template=7``, ``id__gt=…``, ``created__gte=<ISO time>``, ``name__icontains=…``, ``status__in=a,b``,
``finished__isnull=true``) and ``search`` (name). As in AWX, ``extra_vars`` is ``prevent_search``: any filter
on it is 403 ``Filtering on extra_vars is not allowed.``; each listed job carries ``extra_vars`` as a JSON
string, so a client matches variables itself. Listing does not move jobs on.

A job moves on with each ``GET /api/v2/jobs/{id}/``: ``running`` until the template's ``polls_to_finish``-th
poll, then the template's ``outcome`` (``successful``, ``failed``, ``error`` or ``canceled``), so tests can
script a failing or a slow job. Templates are given in ``Settings.templates`` (id -> options).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from weakref import WeakKeyDictionary

import yaml
from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response

DEMO_TOKEN = "awx-demo-token-Gm5Rb2Tq8Wz3"
DEMO_USERNAME = "cavra-publisher"
DEMO_PASSWORD = "awx-demo-password~Kc7Hf1Ls4"
DEMO_TEMPLATE_ID = 7
FINAL = ("successful", "failed", "error", "canceled")

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


def _default_templates() -> dict[int, dict[str, Any]]:
    return {
        DEMO_TEMPLATE_ID: {
            "name": "CAVRA governed runtime publish",
            "ask_variables_on_launch": True,
            "outcome": "successful",
            "polls_to_finish": 2,
        }
    }


@dataclass
class Settings:
    """Credentials and job templates.

    A template's options: ``name``, ``launchable`` (default true), the ``ask_*_on_launch`` flags (default
    false), ``survey`` (a list of ``{"variable", "required"}``; enables the survey), ``outcome`` (default
    ``successful``) and ``polls_to_finish`` (default 2).
    """

    tokens: list[str] = field(default_factory=lambda: [DEMO_TOKEN])
    users: dict[str, str] = field(default_factory=lambda: {DEMO_USERNAME: DEMO_PASSWORD})
    templates: dict[int, dict[str, Any]] = field(default_factory=_default_templates)


@dataclass
class Job:
    id: int
    template_id: int
    template: dict[str, Any]
    extra_vars: dict[str, Any]
    created: str
    polls: int = 0
    status: str = "pending"
    started: str | None = None
    finished: str | None = None


@dataclass
class AwxState:
    """Launched jobs by id."""

    jobs: dict[int, Job] = field(default_factory=dict)
    next_id: int = 101

    def clear(self) -> None:
        self.jobs.clear()
        self.next_id = 101


_STATES: WeakKeyDictionary[EmulatorHub, AwxState] = WeakKeyDictionary()


def state(hub: EmulatorHub) -> AwxState:
    """The AWX emulator's state on this hub."""
    found = _STATES.get(hub)
    if found is None:
        found = AwxState()
        _STATES[hub] = found
    return found


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"detail": detail}, status=status, headers=headers)


def parse_extra_vars(value: Any) -> dict[str, Any] | None:
    """``extra_vars`` as an object: given as one, or as a JSON/YAML string. None when it is neither."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _serialize(job: Job, prefix: str) -> dict[str, Any]:
    url = f"{prefix}/api/v2/jobs/{job.id}/"
    return {
        "id": job.id,
        "type": "job",
        "url": url,
        "related": {
            "stdout": url + "stdout/",
            "job_template": f"{prefix}/api/v2/job_templates/{job.template_id}/",
        },
        "name": job.template.get("name", f"template {job.template_id}"),
        "job_template": job.template_id,
        "launch_type": "manual",
        "status": job.status,
        "failed": job.status in ("failed", "error"),
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "elapsed": 0.0 if job.finished is None else 1.0,
        "extra_vars": json.dumps(job.extra_vars),
        "job_explanation": "",
    }


#: list filters: field -> how a query value is read for comparison
_FIELDS: dict[str, Callable[[str], Any]] = {
    "id": int,
    "job_template": int,
    "name": str,
    "status": str,
    "launch_type": str,
    "failed": lambda v: v.strip().lower() in ("true", "1"),
    **dict.fromkeys(("created", "started", "finished"), lambda v: _when(v)),
}
_LOOKUPS: dict[str, Callable[[Any, Any], bool]] = {
    "exact": lambda a, b: a == b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "contains": lambda a, b: a is not None and str(b) in str(a),
    "icontains": lambda a, b: a is not None and str(b).lower() in str(a).lower(),
}
_RESERVED = {"page", "page_size", "order_by", "search", "format"}
PAGE_SIZE, MAX_PAGE_SIZE = 25, 200


def _when(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _value(job: Job, name: str) -> Any:
    """A listed field's value as filters and ordering compare it (times as datetimes)."""
    raw = _serialize(job, "")[name]
    return _when(raw) if name in ("created", "started", "finished") and raw is not None else raw


def _matcher(key: str, value: str) -> Callable[[Job], bool] | web.Response:
    """One query parameter as a job predicate, or the controller's error answer."""
    field_name, _, lookup = key.partition("__")
    lookup = lookup or "exact"
    if field_name == "extra_vars":
        return _detail(403, "Filtering on extra_vars is not allowed.")
    if field_name not in _FIELDS or (lookup not in _LOOKUPS and lookup not in ("in", "isnull")):
        return _detail(400, f"Job has no field named '{key}'")
    if lookup == "isnull":
        wanted = value.strip().lower() in ("true", "1")
        return lambda job: (_value(job, field_name) is None) is wanted
    try:
        if lookup == "in":
            options = [_FIELDS[field_name](v) for v in value.split(",")]
            return lambda job: _value(job, field_name) in options
        target = value if lookup in ("contains", "icontains") else _FIELDS[field_name](value)
    except ValueError:
        return _detail(400, json.dumps([f"'{value}' value has an invalid format for {field_name}."]))
    compare = _LOOKUPS[lookup]
    return lambda job: bool(compare(_value(job, field_name), target))


def _page_link(request: web.Request, page: int | None) -> str:
    query = [(k, v) for k, v in request.query.items() if k != "page"]
    if page is not None:
        query.append(("page", str(page)))
    return request.path + ("?" + urlencode(query) if query else "")


def list_jobs(request: web.Request, jobs: list[Job], prefix: str) -> web.Response:
    """A job list as the controller answers it: filtered, ordered and paged."""
    selected = list(jobs)
    for key, value in request.query.items():
        if key in _RESERVED:
            continue
        predicate = _matcher(key, value)
        if isinstance(predicate, web.Response):
            return predicate
        selected = [job for job in selected if predicate(job)]
    search = request.query.get("search", "").lower()
    selected = [job for job in selected if search in str(_value(job, "name")).lower()]
    selected.sort(key=lambda job: job.id)
    for field_name in reversed([f for f in request.query.get("order_by", "").split(",") if f]):
        name = field_name.lstrip("-")
        if name not in _FIELDS:
            return _detail(400, f"Cannot resolve keyword '{name}' into field.")
        missing = [job for job in selected if _value(job, name) is None]
        present = [job for job in selected if _value(job, name) is not None]
        present.sort(key=lambda job: _value(job, name), reverse=field_name.startswith("-"))
        selected = present + missing
    try:
        size = int(request.query.get("page_size", PAGE_SIZE))
    except ValueError:
        size = PAGE_SIZE
    size = min(size if size > 0 else PAGE_SIZE, MAX_PAGE_SIZE)
    try:
        page = int(request.query.get("page", "1"))
    except ValueError:
        return _detail(404, "Invalid page.")
    pages = max(1, -(-len(selected) // size))
    if not 1 <= page <= pages:
        return _detail(404, "Invalid page.")
    return json_response(
        {
            "count": len(selected),
            "next": _page_link(request, page + 1) if page < pages else None,
            "previous": None if page == 1 else _page_link(request, page - 1 if page > 2 else None),
            "results": [_serialize(job, prefix) for job in selected[(page - 1) * size : page * size]],
        }
    )


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The controller routes, mounted at ``/awx``."""
    st = state(hub)
    hub.reset_hooks.append(st.clear)
    app = web.Application()
    templates = {int(k): dict(v) for k, v in settings.templates.items()}

    def prefix(request: web.Request) -> str:
        return request.path.split("/api/v2/", 1)[0]

    def authenticate(request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        challenge = {"WWW-Authenticate": 'Bearer realm="api" authorization_url="/api/o/authorize/"'}
        if not header:
            return _detail(401, "Authentication credentials were not provided.", challenge)
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            if any(secrets.compare_digest(value.encode(), t.encode()) for t in settings.tokens):
                return None
            return _detail(
                401,
                "Authentication credentials were not provided. To establish a login session, "
                "visit /api/login/.",
                challenge,
            )
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return _detail(
                    401, "Invalid basic header. Credentials not correctly base64 encoded.", challenge
                )
            expected = settings.users.get(user)
            if expected is not None and secrets.compare_digest(password.encode(), expected.encode()):
                return None
            return _detail(401, "Invalid username/password.", challenge)
        return _detail(401, "Authentication credentials were not provided.", challenge)

    def template_of(request: web.Request) -> tuple[int, dict[str, Any]] | web.Response:
        try:
            template_id = int(request.match_info["id"])
        except ValueError:
            return _detail(404, "Not found.")
        template = templates.get(template_id)
        if template is None:
            return _detail(404, "Not found.")
        return template_id, template

    async def ping(request: web.Request) -> web.Response:
        return json_response(
            {"ha": False, "version": "24.6.1", "active_node": "awx-emulator", "instances": []}
        )

    async def me(request: web.Request) -> web.Response:
        denied = authenticate(request)
        if denied is not None:
            return denied
        return json_response({"count": 1, "results": [{"id": 1, "username": DEMO_USERNAME}]})

    async def get_template(request: web.Request) -> web.Response:
        found = authenticate(request) or template_of(request)
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

    async def launch_requirements(request: web.Request) -> web.Response:
        found = authenticate(request) or template_of(request)
        if isinstance(found, web.Response):
            return found
        _, template = found
        survey = template.get("survey") or []
        return json_response(
            {
                "can_start_without_user_input": not any(v.get("required") for v in survey),
                "passwords_needed_to_start": [],
                "ask_variables_on_launch": bool(template.get("ask_variables_on_launch", False)),
                "survey_enabled": bool(survey),
                "variables_needed_to_start": [v["variable"] for v in survey if v.get("required")],
                "inventory_needed_to_start": False,
            }
        )

    async def launch(request: web.Request) -> web.Response:
        found = authenticate(request) or template_of(request)
        if isinstance(found, web.Response):
            return found
        template_id, template = found
        if not template.get("launchable", True):
            return _detail(405, 'Method "POST" not allowed.')
        raw = await request.read()
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            return _detail(400, f"JSON parse error - {exc}")
        if not isinstance(body, dict):
            return _detail(400, "Invalid data. Expected a dictionary, but got list.")
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
        job = Job(id=st.next_id, template_id=template_id, template=template, extra_vars=extra, created=_now())
        st.next_id += 1
        st.jobs[job.id] = job
        answer = _serialize(job, prefix(request))
        answer.update({"job": job.id, "ignored_fields": ignored})
        return json_response(answer, status=201, headers={"Location": answer["url"]})

    async def template_jobs(request: web.Request) -> web.Response:
        found = authenticate(request) or template_of(request)
        if isinstance(found, web.Response):
            return found
        jobs = [job for job in st.jobs.values() if job.template_id == found[0]]
        return list_jobs(request, jobs, prefix(request))

    async def all_jobs(request: web.Request) -> web.Response:
        denied = authenticate(request)
        if denied is not None:
            return denied
        return list_jobs(request, list(st.jobs.values()), prefix(request))

    async def get_job(request: web.Request) -> web.Response:
        denied = authenticate(request)
        if denied is not None:
            return denied
        try:
            job = st.jobs.get(int(request.match_info["id"]))
        except ValueError:
            job = None
        if job is None:
            return _detail(404, "Not found.")
        if job.status not in FINAL:
            job.polls += 1
            if job.polls >= int(job.template.get("polls_to_finish", 2)):
                job.status = str(job.template.get("outcome", "successful"))
                job.started = job.started or _now()
                job.finished = _now()
            else:
                job.status = "running"
                job.started = job.started or _now()
        return json_response(_serialize(job, prefix(request)))

    app.router.add_get("/api/v2/ping/", ping)
    app.router.add_get("/api/v2/me/", me)
    app.router.add_get("/api/v2/job_templates/{id}/", get_template)
    app.router.add_get("/api/v2/job_templates/{id}/launch/", launch_requirements)
    app.router.add_post("/api/v2/job_templates/{id}/launch/", launch)
    app.router.add_get("/api/v2/job_templates/{id}/jobs/", template_jobs)
    app.router.add_get("/api/v2/jobs/", all_jobs)
    app.router.add_get("/api/v2/jobs/{id}/", get_job)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Point the Linux fleet connector at this emulator with the demo token and template."""
    template_id = next(iter(settings.templates), DEMO_TEMPLATE_ID)
    token = settings.tokens[0] if settings.tokens else DEMO_TOKEN
    entry: dict[str, Any] = {
        "provider": "linux",
        "url_env": "AWX_URL",
        "token_env": "AWX_TOKEN",
        "job_template_id": int(template_id),
        "poll_interval_seconds": 0.5,
        "verify_timeout_seconds": 15,
        "allow_http": True,
    }
    return entry, {"AWX_URL": base_url + "/awx", "AWX_TOKEN": token}
