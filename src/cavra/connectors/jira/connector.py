"""The Jira connector's flow: search by label, then create the issue or comment on the one found.

Steps (each one recorded attempt):

* ``search``: ``GET /rest/api/3/search/jql`` (Cloud) or ``/rest/api/2/search`` (Data Center) for
  ``project = "<key>" AND labels = "<dedup label>" ORDER BY created ASC``, one result, with
  ``fields=key,labels``: the enhanced search returns issue ids only unless ``fields`` asks for more. An
  issue → ``comment`` on it (by key, or by id if only the id came back); none → ``create``.
* ``create``: ``POST /rest/api/{3,2}/issue``. 201 → delivered, the issue key is the remote id.
* ``comment``: ``POST /rest/api/{3,2}/issue/<key>/comment``. 201 → delivered ("existing issue found by label;
  comment added").
* ``recheck``: when a create gets no clear answer (timeout, dropped connection, 429, 5xx) the engine retries
  the step; the retry searches again first, so an issue created by the lost attempt is found, not created
  twice. Jira's search is eventually consistent, so when the first re-check finds nothing the connector
  waits ``settle_seconds`` and looks once more before creating. This narrows the window but cannot close
  it (see docs/connectors/jira.md).

400 answers are rejected with Jira's ``errorMessages``/``errors`` in the reason; 401/403 are rejected (bad
credentials or missing permission); 429 and 5xx (but 501) are retried, honouring ``Retry-After``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlencode

from cavra.connectors.base import (
    ConnectorSettings,
    Context,
    Delivered,
    Next,
    PreparedRequest,
    Reject,
    Response,
    Retry,
    Verdict,
)
from cavra.connectors.classify import classify
from cavra.connectors.jira.content import comment_body, dedup_label, templated_issue_fields
from cavra.connectors.jira.settings import JiraSettings
from cavra.connectors.spec import Described
from cavra.errors import ConfigError
from cavra.secretforms import clip
from cavra.secrets import Secret

PROOF_CREATED = "created"
PROOF_COMMENTED = "existing issue found by label; comment added"
PROOF_RECHECKED = "created; the create's answer was lost, the issue was found by label on re-check"


@dataclass(frozen=True)
class JiraState:
    """The step after the search. ``since`` is the attempt number of this step's first request: a later
    attempt in the same state is a retry."""

    step: Literal["create", "comment"]
    since: int
    key: str = ""
    issue_id: str = ""
    #: re-checks already made after an unanswered create
    rechecks: int = 0


def _base(settings: JiraSettings) -> str:
    if settings.url is None:
        raise ConfigError("jira: url is required")
    return settings.url.reveal().rstrip("/")


def _credentials(settings: JiraSettings) -> tuple[Secret, tuple[Secret, ...]]:
    """The ``Authorization`` header value and the derived secrets the redactor must learn."""
    if settings.deployment == "datacenter":
        if settings.token is None:
            raise ConfigError("jira: token (a personal access token) is required for deployment datacenter")
        return Secret(f"Bearer {settings.token.reveal()}"), ()
    if settings.api_token is None or not settings.email:
        raise ConfigError("jira: email and api_token are required for deployment cloud")
    pair = base64.b64encode(f"{settings.email}:{settings.api_token.reveal()}".encode()).decode("ascii")
    return Secret(f"Basic {pair}"), (Secret(pair),)


def jql(settings: JiraSettings, label: str) -> str:
    return f'project = "{settings.project_key}" AND labels = "{label}" ORDER BY created ASC'


def provider_errors(response: Response) -> str:
    """Jira's ``errorMessages`` and ``errors`` as one line (the engine's redactor scrubs it)."""
    body = response.json_or_none()
    if not isinstance(body, dict):
        return ""
    parts = [str(m) for m in body.get("errorMessages") or [] if m]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [f"{field}: {message}" for field, message in errors.items()]
    return clip("; ".join(parts), 1000)


class JiraConnector(Described):
    """One Jira issue per CAVRA event and target: search by label, then create or comment."""

    settings_model: ClassVar[type[ConnectorSettings]] = JiraSettings
    #: after an unanswered create, how long to let Jira's search catch up before the second re-check
    settle_seconds: ClassVar[float] = 1.0

    # -- requests -------------------------------------------------------------------------------------------
    def prepare(
        self, event: Mapping[str, Any], settings: JiraSettings, ctx: Context, state: JiraState | None
    ) -> PreparedRequest:
        label = dedup_label(ctx.delivery_key)
        if state is None:
            return self._search(settings, label, "search")
        if state.step == "create":
            # a later attempt in this state is a retry: the create got no clear answer, look first
            if ctx.attempt > state.since:
                return self._search(settings, label, "recheck")
            fields, warning = templated_issue_fields(event, settings, label)
            request = self._post(
                settings, f"/rest/api/{settings.api_version}/issue", {"fields": fields}, "create"
            )
            return request if warning is None else replace(request, warnings=(warning,))
        body = {"body": comment_body(event, settings, label, ctx.now)}
        path = f"/rest/api/{settings.api_version}/issue/{quote(state.key, safe='')}/comment"
        return self._post(settings, path, body, "comment")

    def _headers(
        self, settings: JiraSettings, *, json_body: bool
    ) -> tuple[dict[str, str | Secret], tuple[Secret, ...]]:
        headers: dict[str, str | Secret] = dict(settings.headers)
        headers["Accept"] = "application/json"
        if json_body:
            headers["Content-Type"] = "application/json"
        authorization, derived = _credentials(settings)
        headers["Authorization"] = authorization
        return headers, derived

    def _search(self, settings: JiraSettings, label: str, step: str) -> PreparedRequest:
        query = urlencode({"jql": jql(settings, label), "fields": "key,labels", "maxResults": "1"})
        path = "/rest/api/3/search/jql" if settings.deployment == "cloud" else "/rest/api/2/search"
        headers, derived = self._headers(settings, json_body=False)
        return PreparedRequest(
            method="GET",
            url=f"{_base(settings)}{path}?{query}",
            headers=headers,
            step=step,
            new_secrets=derived,
        )

    def _post(self, settings: JiraSettings, path: str, body: Mapping[str, Any], step: str) -> PreparedRequest:
        headers, derived = self._headers(settings, json_body=True)
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
        return PreparedRequest(
            method="POST",
            url=_base(settings) + path,
            headers=headers,
            body=raw,
            step=step,
            new_secrets=derived,
        )

    # -- answers --------------------------------------------------------------------------------------------
    def interpret(
        self,
        request: PreparedRequest,
        response: Response,
        settings: JiraSettings,
        ctx: Context,
        state: JiraState | None,
    ) -> Verdict:
        if request.step in ("search", "recheck"):
            return self._searched(request.step, response, settings, ctx, state)
        if request.step == "create":
            return self._created(response, ctx)
        return self._commented(response, ctx, state)

    def _searched(
        self, step: str, response: Response, settings: JiraSettings, ctx: Context, state: JiraState | None
    ) -> Verdict:
        if response.status != 200:
            return self._failure(f"jira {step}", response, settings)
        body = response.json_or_none()
        issues = body.get("issues") if isinstance(body, dict) else None
        if not isinstance(issues, list):
            return Reject(f"jira {step}: HTTP 200 without an issues list; is the url the Jira site base?")
        label = dedup_label(ctx.delivery_key)
        found = next((i for i in issues if _carries(i, label)), None)
        if found is None:
            if step == "recheck" and state is not None and state.rechecks == 0 and self.settle_seconds > 0:
                # nothing yet; the lost create may still be invisible to search: wait, then look again
                return Next(
                    JiraState(step="create", since=ctx.attempt, rechecks=1), after=self.settle_seconds
                )
            return Next(JiraState(step="create", since=ctx.attempt + 1))
        issue_id = str(found.get("id", ""))
        key = str(found.get("key") or issue_id)  # ids only (fields not honoured): the id addresses it too
        if step == "recheck":
            return Delivered(
                remote_id=key, detail={"key": key, "id": issue_id, "label": label}, proof=PROOF_RECHECKED
            )
        return Next(JiraState(step="comment", since=ctx.attempt + 1, key=key, issue_id=issue_id))

    def _created(self, response: Response, ctx: Context) -> Verdict:
        if response.status in (200, 201):
            body = response.json_or_none()
            key = body.get("key") if isinstance(body, dict) else None
            if not isinstance(key, str) or not key:
                return Reject(f"jira create: HTTP {response.status} without an issue key")
            detail = {"key": key, "id": str(body.get("id", "")), "label": dedup_label(ctx.delivery_key)}
            return Delivered(remote_id=key, detail=detail, proof=PROOF_CREATED)
        return self._failure("jira create", response, None)

    def _commented(self, response: Response, ctx: Context, state: JiraState | None) -> Verdict:
        key = state.key if state is not None else ""
        if response.status in (200, 201):
            body = response.json_or_none()
            comment_id = str(body.get("id", "")) if isinstance(body, dict) else ""
            detail = {"key": key, "comment_id": comment_id, "label": dedup_label(ctx.delivery_key)}
            return Delivered(remote_id=key, detail=detail, proof=PROOF_COMMENTED)
        if response.status == 404:
            return Reject(
                f"jira comment: HTTP 404: issue {key} was found by label but cannot be commented on "
                f"(deleted, moved, or no permission). {provider_errors(response)}".strip()
            )
        return self._failure("jira comment", response, None)

    def _failure(self, what: str, response: Response, settings: JiraSettings | None) -> Verdict:
        status = response.status
        errors = provider_errors(response)
        label = f"{what}: HTTP {status}" + (f": {errors}" if errors else "")
        if status == 401:
            return Reject(
                f"{label} (check the credentials: email + api_token on Cloud, token on Data Center)"
            )
        if status == 403:
            return Reject(f"{label} (the account lacks permission on the project)")
        if status == 410 and settings is not None and settings.deployment == "datacenter":
            return Reject(f"{label} (this looks like Jira Cloud: set deployment to cloud)")
        verdict = classify(response, what=label)
        if isinstance(verdict, Delivered):  # a 2xx this step does not expect
            return Reject(f"{label}: unexpected success status")
        if isinstance(verdict, Retry):
            return verdict
        return Reject(verdict.reason if isinstance(verdict, Reject) else label)


def _carries(issue: object, label: str) -> bool:
    """The issue is the one we look for: it has a key or an id (``search/jql`` answers ids only when the
    ``fields`` asked for are not honoured) and, when labels came back, our label."""
    if not isinstance(issue, dict) or not (issue.get("key") or issue.get("id")):
        return False
    fields = issue.get("fields")
    labels = fields.get("labels") if isinstance(fields, dict) else None
    if not isinstance(labels, list):
        return True  # the labels were not returned; the JQL already filtered on them
    return label.lower() in (str(x).lower() for x in labels)
