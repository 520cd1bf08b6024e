"""Jira search routes: ``/rest/api/3/search/jql`` (Cloud), ``/rest/api/2/search`` (Data Center), 410s.

``search/jql`` answers issue ids only unless ``fields`` asks for more: "The default is ``id``" and "Note: By
default, this resource returns IDs only" (Jira Cloud REST v3 OpenAPI, *Search for issues using JQL enhanced
search*, ``fields`` parameter, as generated into the Atlassian-spec clients). With ``fields`` given (other
than ``id``) each issue carries ``id``, ``key``, ``self`` and the fields asked for. The Data Center search
keeps its ``*navigable`` default.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from aiohttp import web

from cavra.emulators.framework import json_response
from cavra.emulators.jira.base import REMOVED, JiraBase, error_response
from cavra.emulators.jira.model import Issue, JqlError, parse_jql


class SearchRoutes(JiraBase):
    """Search handlers, with the optional eventual-consistency lag and ``reconcileIssues``."""

    async def search_jql(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "POST"):
            return web.Response(status=405, text="Method Not Allowed")
        if not self.cloud:
            return web.Response(status=404, text="Not Found")
        who, denied = self._gate(request, search=True)
        if denied is not None:
            return denied
        params = await self._search_params(request)
        if isinstance(params, web.Response):
            return params
        jql, fields, max_results, token, reconcile = params
        if not jql.strip():
            return error_response(
                400,
                [
                    "Unbounded JQL queries are not allowed here. Please add a search restriction "
                    "to your query."
                ],
            )
        offset = 0
        if token:
            try:
                offset = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return error_response(400, ["The provided next page token is invalid or expired."])
        try:
            found = self._run(jql, reconcile, anonymous=who == "anonymous")
        except JqlError as exc:
            return error_response(400, [str(exc)])
        page = found[offset : offset + max_results]
        answer: dict[str, Any] = {"issues": [self._bean(request, 3, i, fields) for i in page]}
        is_last = offset + max_results >= len(found)
        if not is_last:
            answer["nextPageToken"] = base64.urlsafe_b64encode(
                f"offset:{offset + max_results}".encode()
            ).decode()
        answer["isLast"] = is_last
        return json_response(answer)

    async def search_legacy(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "POST"):
            return web.Response(status=405, text="Method Not Allowed")
        if self.cloud or request.match_info["version"] != "2":
            return error_response(410, [REMOVED])
        who, denied = self._gate(request, search=True)
        if denied is not None:
            return denied
        params = await self._search_params(request)
        if isinstance(params, web.Response):
            return params
        jql, fields, max_results, _, _ = params
        try:
            start = int(request.query.get("startAt", "0"))
            found = self._run(jql, [], anonymous=who == "anonymous")
        except ValueError as exc:
            return error_response(400, [str(exc)])
        page = found[start : start + max_results]
        return json_response(
            {
                "startAt": start,
                "maxResults": max_results,
                "total": len(found),
                "issues": [self._bean(request, 2, i, fields) for i in page],
            }
        )

    async def _search_params(
        self, request: web.Request
    ) -> tuple[str, list[str], int, str | None, list[str]] | web.Response:
        if request.method == "POST":
            data = await self._json_body(request)
            if isinstance(data, web.Response):
                return data
            jql, fields_raw = str(data.get("jql") or ""), data.get("fields") or ["id"]
            fields = [str(f) for f in fields_raw] if isinstance(fields_raw, list) else ["id"]
            max_raw: object = data.get("maxResults", 50)
            token = data.get("nextPageToken")
            reconcile = [str(x) for x in data.get("reconcileIssues") or []]
        else:
            q = request.query
            jql = q.get("jql", "")
            fields = [f.strip() for f in ",".join(q.getall("fields", ["id"])).split(",") if f.strip()]
            max_raw = q.get("maxResults", "50")
            token = q.get("nextPageToken")
            reconcile = [x for v in q.getall("reconcileIssues", []) for x in v.split(",") if x]
        try:
            max_results = int(str(max_raw))
        except ValueError:
            return error_response(400, ["maxResults must be a number."])
        if not 1 <= max_results <= 5000:
            return error_response(400, ["maxResults must be between 1 and 5000."])
        return jql, fields, max_results, None if token is None else str(token), reconcile

    def _run(self, jql: str, reconcile: list[str], *, anonymous: bool) -> list[Issue]:
        query = parse_jql(jql, set(self.settings.projects))
        if anonymous:
            return []
        lag = self.settings.search_lag_seconds
        now = time.monotonic()
        return [
            i
            for i in query.apply(self.store.issues)
            if now - i.created_at >= lag or i.id in reconcile or i.key in reconcile
        ]

    def _bean(self, request: web.Request, version: int, issue: Issue, fields: list[str]) -> dict[str, Any]:
        wanted = set(fields)
        if version == 3 and wanted <= {"id"}:  # the enhanced search's default: ids only
            return {"id": issue.id}
        bean: dict[str, Any] = {"id": issue.id, "key": issue.key, "self": self._self(request, version, issue)}
        every = bool(wanted & {"*all", "*navigable"})
        shown = {k: v for k, v in issue.fields.items() if every or k in wanted}
        if shown:
            bean["fields"] = shown
        return bean
