"""Emulated Ansible AWX / Automation Platform controller, written from providers.md §11.1.

Routes (mounted at ``/awx``), under the controller API prefix ``{api}``: ``GET {api}/ping/`` (no auth),
``GET {api}/me/``, ``GET {api}/job_templates/{id}/``, ``GET|POST {api}/job_templates/{id}/launch/``,
``GET {api}/job_templates/{id}/jobs/``, ``GET {api}/jobs/``, ``GET {api}/jobs/{id}/``; and the API root
``GET /api/`` (no auth).

Two modes (``Settings.gateway``):

* controller (default: AWX, Automation Platform up to 2.4, or a 2.5+ controller addressed directly):
  ``{api}`` is ``/api/v2``; ``GET /api/`` answers the controller's root ``{"description": "AWX REST API",
  "current_version": "/api/v2/", "available_versions": {"v2": "/api/v2/"}, …}``.
* gateway (Automation Platform 2.5+ through its platform gateway): Red Hat moved the controller API to
  ``/api/controller/v2`` ("API changes for platform gateway", AAP 2.5/2.6 "Planning your upgrade", chapter
  "API changes": "For automation controller APIs, see the browsable API at
  https://<gateway server name>/api/controller/v2"; direct service access "will be removed in a future
  release"). ``{api}`` is ``/api/controller/v2``; ``GET /api/`` answers the gateway's root
  ``{"description": "AAP gateway REST API", "apis": {"gateway": "/api/gateway/", "controller":
  "/api/controller/", "eda": "/api/eda/", "galaxy": "/api/galaxy/"}}`` (the gateway's ``ApiRootView``; the
  same body is quoted from a real 2.5 gateway in ansibleguy76/ansibleforms issue 295), ``GET
  /api/controller/`` the controller's root with ``current_version`` ``/api/controller/v2/``, and the old
  ``/api/v2/…`` paths are 404 (clients still using them get 404 from a 2.5/2.6 gateway:
  ansibleguy76/ansibleforms issue 381, ansible/awx issue 15611; ⚠ the 404 body is unconfirmed, a plain
  HTML page here).

What is checked, as the real controller does:

* ``Authorization: Bearer <token>`` or HTTP Basic, else 401 ``{"detail": …}`` with ``WWW-Authenticate``;
* an unknown template is 404 ``{"detail": "Not found."}``; a template that cannot be launched
  (``launchable: false``) is 405;
* the launch body is a JSON object (else 400); ``extra_vars`` may be an object or a JSON/YAML string;
  fields the template does not prompt for (``ask_variables_on_launch``, ``ask_limit_on_launch``, …) are
  not applied but returned in ``ignored_fields``; with a survey, survey variables are accepted and missing
  required ones give 400 ``{"variables_needed_to_start": [...]}``;
* success is 201 with ``Location: …{api}/jobs/{id}/`` and the job (``job``, ``id``, ``status: "pending"``,
  ``ignored_fields``, ``extra_vars`` as a JSON string).

The job lists page like the controller's: ``{"count", "next", "previous", "results"}``, ``page`` (an
out-of-range or malformed page is 404 ``Invalid page.``) and ``page_size`` (default 25, capped at 200),
``next``/``previous`` as request paths with the other parameters kept; ``order_by`` (``-`` for descending,
several comma-separated; an unknown field is 400); field filters with Django lookups (``status=…``,
``job_template=7``, ``id__gt=…``, ``created__gte=<ISO time>``, ``name__icontains=…``, ``status__in=a,b``,
``finished__isnull=true``) and ``search`` (name). As in AWX, ``extra_vars`` is ``prevent_search``: any filter
on it is 403 ``Filtering on extra_vars is not allowed.``; each listed job carries ``extra_vars`` as a JSON
string, so a client matches variables itself. Listing does not move jobs on.

A job moves on with each ``GET {api}/jobs/{id}/``: ``running`` until the template's ``polls_to_finish``-th
poll, then the template's ``outcome`` (``successful``, ``failed``, ``error`` or ``canceled``), so tests can
script a failing or a slow job. Templates are given in ``Settings.templates`` (id -> options).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cavra.emulators.awx.controller import DEMO_USERNAME, PROMPTS, Controller
from cavra.emulators.awx.jobs import FINAL, AwxState, Job, parse_extra_vars, state
from cavra.emulators.framework import EmulatorHub, json_response

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_TEMPLATE_ID",
    "DEMO_TOKEN",
    "DEMO_USERNAME",
    "FINAL",
    "PROMPTS",
    "AwxState",
    "Job",
    "Settings",
    "create_app",
    "demo_config",
    "parse_extra_vars",
    "state",
]

DEMO_TOKEN = "awx-demo-token-Gm5Rb2Tq8Wz3"
DEMO_PASSWORD = "awx-demo-password~Kc7Hf1Ls4"
DEMO_TEMPLATE_ID = 7
DIRECT_API = "/api/v2"
GATEWAY_API = "/api/controller/v2"
NOT_FOUND_PAGE = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n'
    "  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n"
)


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
    #: serve as the Automation Platform 2.5+ platform gateway: the controller API only at
    #: /api/controller/v2, the old /api/v2 paths 404
    gateway: bool = False


def _controller_root(api: str) -> dict[str, Any]:
    version = api + "/"
    return {
        "description": "AWX REST API",
        "current_version": version,
        "available_versions": {"v2": version},
        "oauth2": "/api/o/",
        "custom_logo": "",
        "custom_login_info": "",
        "login_redirect_override": "",
    }


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The controller routes (and, in gateway mode, the gateway's root), mounted at ``/awx``."""
    st = state(hub)
    hub.reset_hooks.append(st.clear)
    app = web.Application()
    api = GATEWAY_API if settings.gateway else DIRECT_API
    Controller(hub, settings, api).add_routes(app)

    async def controller_root(request: web.Request) -> web.Response:
        return json_response(_controller_root(api))

    async def gateway_root(request: web.Request) -> web.Response:
        apis = {"gateway": "/api/gateway/", "controller": "/api/controller/", "eda": "/api/eda/"}
        return json_response(
            {"description": "AAP gateway REST API", "apis": {**apis, "galaxy": "/api/galaxy/"}}
        )

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404, text=NOT_FOUND_PAGE, content_type="text/html")

    if settings.gateway:
        app.router.add_get("/api/", gateway_root)
        app.router.add_get("/api/controller/", controller_root)
        app.router.add_route("*", DIRECT_API + "/{tail:.*}", gone)
    else:
        app.router.add_get("/api/", controller_root)
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
    if settings.gateway:
        entry["api_prefix"] = "auto"
    return entry, {"AWX_URL": base_url + "/awx", "AWX_TOKEN": token}
