"""Jira emulator: Cloud REST v3 (ADF) and v2, or Data Center v2, written from providers.md section 7.

What it checks, as the real service does:

* auth: Basic ``email:api_token`` against known accounts; a Bearer PAT only in Data Center mode. Bad
  credentials get ``401 {"errorMessages":["Client must be authenticated to access this resource."]}``.
  A request with no credentials at all is anonymous: an anonymous search answers 200 with no issues (as
  Jira does), anything else 401.
* create (``POST /rest/api/{2,3}/issue``): JSON only (415 otherwise); ``project`` must exist ("valid project
  is required"), ``issuetype`` must exist in it, ``summary`` non-empty and under 255 characters; on v3 a
  ``description`` must be ADF; labels without spaces; priority and custom fields must be known. 201
  ``{id,key,self}`` with an incrementing key per project.
* search (Cloud): ``/rest/api/3/search/jql`` (GET and POST) with ``project``/``labels``/``key``/``issuetype``
  filters joined by AND, ``ORDER BY created|key [ASC|DESC]``, ``fields``, ``maxResults``, ``nextPageToken``,
  ``reconcileIssues``; optional eventual-consistency lag (``search_lag_seconds``). The removed
  ``/rest/api/{2,3}/search`` answers 410. In Data Center mode ``/rest/api/2/search`` is the search.
* comments: ``POST /rest/api/{2,3}/issue/{key}/comment`` (201; ADF body on v3), readable with GET.
* an optional burst rule: 429 with ``Retry-After``, ``X-RateLimit-Reset`` and ``RateLimit-Reason``.
"""

from __future__ import annotations

import weakref
from typing import Any

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response
from cavra.emulators.jira.base import AUTH_FAILED, NO_ISSUE, Settings, error_response
from cavra.emulators.jira.model import adf_problem
from cavra.emulators.jira.search import SearchRoutes

SYSTEM_FIELDS = frozenset(
    {
        "project",
        "issuetype",
        "summary",
        "description",
        "labels",
        "priority",
        "assignee",
        "reporter",
        "components",
        "duedate",
        "environment",
    }
)


class JiraEmulator(SearchRoutes):
    """Create, comment and read handlers (search comes from :class:`SearchRoutes`)."""

    async def create_issue(self, request: web.Request) -> web.Response:
        version = self._version(request)
        if isinstance(version, web.Response):
            return version
        _, denied = self._gate(request)
        if denied is not None:
            return denied
        data = await self._json_body(request)
        if isinstance(data, web.Response):
            return data
        fields = data.get("fields")
        if not isinstance(fields, dict):
            return error_response(400, ["Field 'fields' is required."])
        errors = self._check_fields(fields, version)
        if errors:
            return error_response(400, [], errors)
        project = self.store.project_of(fields["project"])
        assert project is not None  # checked above
        issue = self.store.create(project, fields)
        return json_response(
            {"id": issue.id, "key": issue.key, "self": self._self(request, version, issue)}, 201
        )

    def _check_fields(self, fields: dict[str, Any], version: int) -> dict[str, str]:
        errors: dict[str, str] = {}
        project = self.store.project_of(fields.get("project"))
        if "project" not in fields:
            errors["project"] = "Specify a valid project ID or key"
        elif project is None:
            errors["project"] = "valid project is required"
        issuetype = fields.get("issuetype")
        name = issuetype.get("name") if isinstance(issuetype, dict) else None
        if issuetype is None:
            errors["issuetype"] = "Specify an issue type"
        elif project is not None and name not in self.settings.projects[project]:
            errors["issuetype"] = "Specify a valid issue type"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) >= 255:
            errors["summary"] = "Summary must be less than 255 characters."
        elif "\n" in summary or "\r" in summary:
            errors["summary"] = "Field 'summary' cannot contain newline characters."
        if "description" in fields and fields["description"] is not None:
            problem = self._rich_text_problem(fields["description"], version)
            if problem:
                errors["description"] = problem
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            errors["labels"] = "Field 'labels' must be an array of strings."
        else:
            for label in labels:
                if not label or any(c.isspace() for c in label) or len(label) > 255:
                    errors["labels"] = f"The label '{label}' contains spaces which is invalid."
        priority = fields.get("priority")
        if priority is not None and (
            not isinstance(priority, dict) or priority.get("name") not in self.settings.priorities
        ):
            errors["priority"] = "Specify a valid value for priority"
        for name in fields:
            if name not in SYSTEM_FIELDS and name not in self.settings.custom_fields:
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                )
        return errors

    @staticmethod
    def _rich_text_problem(value: object, version: int) -> str | None:
        if version == 3:
            return adf_problem(value)
        return None if isinstance(value, str) else "Operation value must be a string"

    # -- comments and reads -------------------------------------------------------------------------------
    async def add_comment(self, request: web.Request) -> web.Response:
        version = self._version(request)
        if isinstance(version, web.Response):
            return version
        who, denied = self._gate(request)
        if denied is not None:
            return denied
        issue = self.store.find(request.match_info["key"])
        if issue is None:
            return error_response(404, [NO_ISSUE])
        data = await self._json_body(request)
        if isinstance(data, web.Response):
            return data
        body = data.get("body")
        if body is None or body == "":
            return error_response(400, [], {"comment": "Comment body can not be empty!"})
        problem = self._rich_text_problem(body, version)
        if problem:
            return error_response(400, [], {"comment": problem})
        comment = self.store.comment(issue, body, author=str(who))
        base = self._self(request, version, issue)
        return json_response({**comment, "self": f"{base}/comment/{comment['id']}"}, 201)

    async def get_comments(self, request: web.Request) -> web.Response:
        version = self._version(request)
        if isinstance(version, web.Response):
            return version
        _, denied = self._gate(request)
        if denied is not None:
            return denied
        issue = self.store.find(request.match_info["key"])
        if issue is None:
            return error_response(404, [NO_ISSUE])
        n = len(issue.comments)
        return json_response({"startAt": 0, "maxResults": n, "total": n, "comments": issue.comments})

    async def get_issue(self, request: web.Request) -> web.Response:
        version = self._version(request)
        if isinstance(version, web.Response):
            return version
        _, denied = self._gate(request)
        if denied is not None:
            return denied
        issue = self.store.find(request.match_info["key"])
        if issue is None:
            return error_response(404, [NO_ISSUE])
        fields = {**issue.fields, "comment": {"total": len(issue.comments), "comments": issue.comments}}
        return json_response(
            {"id": issue.id, "key": issue.key, "self": self._self(request, version, issue), "fields": fields}
        )

    async def myself(self, request: web.Request) -> web.Response:
        who, denied = self._gate(request)
        if denied is not None:
            return denied
        if who == "anonymous":
            return error_response(401, [AUTH_FAILED])
        return json_response({"accountId": f"acct-{who}", "emailAddress": who, "active": True})

    # -- search --------------------------------------------------------------------------------------------


_EMULATORS: weakref.WeakKeyDictionary[EmulatorHub, JiraEmulator] = weakref.WeakKeyDictionary()


def jira_emulator(hub: EmulatorHub) -> JiraEmulator:
    """The Jira emulator mounted on this hub (for in-process tests: ``jira_emulator(hub).store.issues``)."""
    return _EMULATORS[hub]


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    emu = JiraEmulator(settings)
    _EMULATORS[hub] = emu
    hub.reset_hooks.append(emu.reset)
    app = web.Application()
    api = r"/rest/api/{version:[23]}"
    app.router.add_post(f"{api}/issue", emu.create_issue)
    app.router.add_get(f"{api}/issue/{{key}}", emu.get_issue)
    app.router.add_post(f"{api}/issue/{{key}}/comment", emu.add_comment)
    app.router.add_get(f"{api}/issue/{{key}}/comment", emu.get_comments)
    app.router.add_get(f"{api}/myself", emu.myself)
    app.router.add_route("*", f"{api}/search/jql", emu.search_jql)
    app.router.add_route("*", f"{api}/search", emu.search_legacy)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The ``jira`` connector entry pointing at this emulator, and its environment."""
    project = next(iter(settings.projects))
    entry: dict[str, Any] = {
        "url_env": "JIRA_URL",
        "deployment": "datacenter" if settings.deployment == "datacenter" else "cloud",
        "project_key": project,
        "issue_type": settings.projects[project][0],
        "labels": ["cavra"],
        "allow_http": True,
    }
    env = {"JIRA_URL": f"{base_url}/jira"}
    if settings.deployment == "datacenter":
        entry["token_env"] = "JIRA_PAT"
        env["JIRA_PAT"] = settings.pats[0]
    else:
        email, token = next(iter(settings.accounts.items()))
        entry["email"] = email
        entry["api_token_env"] = "JIRA_API_TOKEN"
        env["JIRA_API_TOKEN"] = token
    return entry, env
