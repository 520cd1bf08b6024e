"""The ServiceNow connector's flow: look up by ``correlation_id``, then insert or add a work note.

Steps (each one recorded attempt):

* ``query``: ``GET /api/now/table/<table>?sysparm_query=correlation_id=<key>^ORDERBYsys_created_on
  &sysparm_limit=1&sysparm_fields=sys_id,number,correlation_id``. A record → ``work_note``; none → ``create``.
  The returned record's ``correlation_id`` is checked: ServiceNow silently ignores a query on a field the
  table lacks and would return an unrelated record.
* ``create``: Table API ``POST /api/now/table/<table>`` (201) or the Change API's model-based
  ``POST /api/sn_chg_rest/change`` with ``type`` and the fields in the JSON body (200, ``{value,
  display_value}`` fields, the record as an object or a one-element array). Not ``POST
  /api/sn_chg_rest/change/<type>``: ServiceNow documents its fields as query parameters and its request body
  as "None", so fields sent in a body could be dropped (and with them ``correlation_id``, the dedup key);
  query parameters would put a 4000-character description in the URL (length limits, access logs). The
  record's number is the remote id, its ``sys_id`` is in the detail.
* ``work_note``: ``PATCH /api/now/table/<table>/<sys_id>`` with ``work_notes`` (the destination's
  ``work_notes`` template, if it has one).
* ``recheck``: a create that got no clear answer (timeout, dropped connection, 429, 5xx) is retried by the
  engine; the retry looks the record up again first, so a record inserted by the lost attempt is found,
  not inserted twice. The Table API reads what was committed, so one re-check is enough.
* ``token`` (OAuth client credentials only): ``POST {url}/oauth_token.do`` with the form
  ``grant_type=client_credentials&client_id=…&client_secret=…`` (:mod:`cavra.connectors.auth`), before the
  first API step unless the engine's cache holds a valid token for this instance and client. A 401 on an
  API step with a token that may be stale (a cached one, or one whose lifetime ran out) fetches a new one
  and runs the step again, once (:mod:`cavra.connectors.flow`, as Jamf and Intune do); a token
  fetched moments ago and refused fails the delivery.

Errors carry ServiceNow's ``error.message`` and ``error.detail``. 400/401/403/404 are rejected; 429 (after
``Retry-After``) and 5xx (but 501) retried.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit

from cavra.connectors.auth import ClientCredentials
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
from cavra.connectors.flow import (
    FlowState,
    after_token,
    authorization,
    bearer,
    fetch_token,
    unauthorized,
)
from cavra.connectors.servicenow.settings import (
    ServiceNowSettings,
    templated_record_fields,
    templated_work_note,
)
from cavra.connectors.spec import Described
from cavra.errors import ConfigError
from cavra.secretforms import clip
from cavra.secrets import Secret

PROOF_CREATED = "created"
PROOF_NOTED = "existing change request found by correlation_id; work note added"
PROOF_RECHECKED = "created; the insert's answer was lost, the record was found by correlation_id on re-check"
LOOKUP_FIELDS = "sys_id,number,correlation_id"
TOKEN_PATH = "/oauth_token.do"
CHANGE_PATH = "/api/sn_chg_rest/change"
#: ServiceNow's token endpoint answers a refused client with these codes (not RFC 6749's invalid_client)
_TOKEN_HINTS = {
    "server_error": "ServiceNow refused the OAuth client: check client_id and client_secret and that its "
    "Application Registry entry is active",
    "unauthorized_client": "the OAuth application has no OAuth Application User, or the instance does not "
    "allow the client credentials grant (glide.oauth.inbound.client.credential.grant_type.enabled)",
}


@dataclass(frozen=True)
class ServiceNowState(FlowState):
    """The next step (``query``, ``create``, ``recheck``, ``work_note``) and, with OAuth client credentials,
    the token this flow fetched (the token fields and the refresh-on-401 rules come from
    :class:`~cavra.connectors.flow.FlowState`).

    ``since`` is the attempt number of the step's first request: a later attempt in ``create`` is a retry.
    """

    step: str = "query"
    since: int = 0
    sys_id: str = ""
    number: str = ""


def _base(settings: ServiceNowSettings) -> str:
    if settings.url is None:
        raise ConfigError("servicenow: url is required")
    return settings.url.reveal().rstrip("/")


def oauth_credentials(settings: ServiceNowSettings) -> ClientCredentials:
    """Where and how the connector asks for its token: ``{url}/oauth_token.do`` (cache key: URL + client)."""
    if settings.client_secret is None or not settings.client_id:
        raise ConfigError("servicenow: client_id and client_secret are required for OAuth client credentials")
    return ClientCredentials(
        token_url=_base(settings) + TOKEN_PATH,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
    )


def _credentials(settings: ServiceNowSettings) -> tuple[Secret, tuple[Secret, ...]]:
    if settings.token is not None:
        return Secret(f"Bearer {settings.token.reveal()}"), ()
    if settings.password is None or not settings.username:
        raise ConfigError(
            "servicenow: credentials are required: username + password, token, or client_id + client_secret"
        )
    pair = base64.b64encode(f"{settings.username}:{settings.password.reveal()}".encode()).decode("ascii")
    return Secret(f"Basic {pair}"), (Secret(pair),)


def _flow(state: ServiceNowState | None) -> ServiceNowState:
    return state if isinstance(state, ServiceNowState) else ServiceNowState()


def provider_error(response: Response) -> str:
    """ServiceNow's ``error.message`` (and ``detail``) as one line; the engine's redactor scrubs it."""
    body = response.json_or_none()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ""
    message, detail = error.get("message"), error.get("detail")
    text = str(message or "")
    if detail:
        text = f"{text} ({detail})" if text else str(detail)
    return clip(text, 1000)


def _plain(value: object) -> str:
    """A field as a string, whether plain, ``{value, display_value}`` (Change API) or ``{link, value}``."""
    if isinstance(value, dict):
        value = value.get("value", "")
    return "" if value is None else str(value)


class ServiceNowConnector(Described):
    """One ServiceNow record per CAVRA event and target: look up by correlation_id, then insert or note."""

    settings_model: ClassVar[type[ConnectorSettings]] = ServiceNowSettings

    # -- requests -------------------------------------------------------------------------------------------
    def prepare(
        self,
        event: Mapping[str, Any],
        settings: ServiceNowSettings,
        ctx: Context,
        state: ServiceNowState | None,
    ) -> PreparedRequest:
        flow = _flow(state)
        token: Secret | None = None
        if settings.oauth_client:
            creds = oauth_credentials(settings)
            token = bearer(flow, ctx, creds)
            if token is None:
                return fetch_token(creds)
        cid = ctx.delivery_key
        if flow.step == "query":
            return self._lookup(settings, token, cid, "query")
        if flow.step == "recheck" or (flow.step == "create" and ctx.attempt > flow.since):
            # a later attempt in create is a retry: the insert got no clear answer, look first
            return self._lookup(settings, token, cid, "recheck")
        if flow.step == "create":
            fields, warning = templated_record_fields(event, settings, cid)
            warned = () if warning is None else (warning,)
            if settings.api == "change":  # model-based: its JSON body is documented, ``type`` is the kind
                request = self._send(settings, token, "POST", CHANGE_PATH, fields, "create")
                return replace(request, warnings=warned)
            query = urlencode({"sysparm_fields": LOOKUP_FIELDS, "sysparm_exclude_reference_link": "true"})
            path = f"/api/now/table/{settings.table}?{query}"
            return replace(self._send(settings, token, "POST", path, fields, "create"), warnings=warned)
        path = f"/api/now/table/{settings.table}/{quote(flow.sys_id, safe='')}?sysparm_fields={LOOKUP_FIELDS}"
        text, warning = templated_work_note(event, settings, cid, ctx.now, flow.number)
        request = self._send(settings, token, "PATCH", path, {"work_notes": text}, "work_note")
        return request if warning is None else replace(request, warnings=(warning,))

    def _headers(
        self, settings: ServiceNowSettings, token: Secret | None, *, body: bool
    ) -> tuple[dict[str, str | Secret], tuple[Secret, ...]]:
        headers: dict[str, str | Secret] = dict(settings.headers)
        headers["Accept"] = "application/json"
        if body:
            headers["Content-Type"] = "application/json"
        if token is not None:  # the token this connector fetched: the redactor learns it bare, too
            headers.update(authorization(token, "servicenow:oauth"))
            return headers, (token,)
        authorization_value, derived = _credentials(settings)
        headers["Authorization"] = authorization_value
        return headers, derived

    def _lookup(
        self, settings: ServiceNowSettings, token: Secret | None, cid: str, step: str
    ) -> PreparedRequest:
        query = urlencode(
            {
                "sysparm_query": f"correlation_id={cid}^ORDERBYsys_created_on",
                "sysparm_limit": "1",
                "sysparm_fields": LOOKUP_FIELDS,
            }
        )
        headers, derived = self._headers(settings, token, body=False)
        url = f"{_base(settings)}/api/now/table/{settings.table}?{query}"
        return PreparedRequest(method="GET", url=url, headers=headers, step=step, new_secrets=derived)

    def _send(
        self,
        settings: ServiceNowSettings,
        token: Secret | None,
        method: str,
        path: str,
        body: Mapping[str, str],
        step: str,
    ) -> PreparedRequest:
        headers, derived = self._headers(settings, token, body=True)
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return PreparedRequest(
            method=method,
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
        settings: ServiceNowSettings,
        ctx: Context,
        state: ServiceNowState | None,
    ) -> Verdict:
        flow = _flow(state)
        if request.step == "token":
            return self._token(response, settings, ctx, flow)
        if response.status == 401 and settings.oauth_client:
            return self._unauthorized(request.step, response, ctx, flow)
        if request.step in ("query", "recheck"):
            return self._looked_up(request.step, response, settings, ctx, flow)
        if request.step == "create":
            return self._created(response, settings, ctx)
        return self._noted(response, settings, ctx, flow)

    def _token(
        self, response: Response, settings: ServiceNowSettings, ctx: Context, flow: ServiceNowState
    ) -> Verdict:
        got = after_token(response, flow, oauth_credentials(settings), "ServiceNow OAuth endpoint")
        if isinstance(got, Reject):
            body = response.json_or_none()
            error = body.get("error") if isinstance(body, dict) else None
            hint = _TOKEN_HINTS.get(error) if isinstance(error, str) else None
            if hint is not None:
                return Reject(f"ServiceNow OAuth endpoint: HTTP {response.status} {error}: {hint}")
            return got
        if not isinstance(got, Next) or not isinstance(got.state, ServiceNowState):
            return got
        following = got.state
        step = following.step
        if step == "create" and ctx.attempt > following.since:
            step = "recheck"  # the token ran out while an insert was being retried: look before inserting
        return replace(got, state=replace(following, step=step, since=ctx.attempt + 1))

    def _unauthorized(self, step: str, response: Response, ctx: Context, flow: ServiceNowState) -> Verdict:
        """401 with a fetched token: fetch a new one and run this step again, once (see FlowState)."""
        verdict = unauthorized(
            replace(flow, step=step, since=ctx.attempt + 1), f"servicenow {step}", response
        )
        error = provider_error(response)
        if isinstance(verdict, Reject) and error:
            return Reject(f"{verdict.reason}; ServiceNow said: {error}")
        return verdict

    def _detail(self, settings: ServiceNowSettings, ctx: Context, sys_id: str, number: str) -> dict[str, str]:
        return {
            "sys_id": sys_id,
            "number": number,
            "table": settings.table,
            "correlation_id": ctx.delivery_key,
        }

    def _looked_up(
        self, step: str, response: Response, settings: ServiceNowSettings, ctx: Context, flow: ServiceNowState
    ) -> Verdict:
        if response.status != 200:
            return self._failure(f"servicenow {step}", response)
        body = response.json_or_none()
        rows = body.get("result") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            return Reject(f"servicenow {step}: HTTP 200 without a result list; is the url the instance base?")
        if not rows:
            return Next(replace(flow, step="create", since=ctx.attempt + 1))
        row = rows[0] if isinstance(rows[0], dict) else {}
        sys_id, number = _plain(row.get("sys_id")), _plain(row.get("number"))
        if _plain(row.get("correlation_id")) != ctx.delivery_key or not sys_id:
            return Reject(
                f"servicenow {step}: the lookup by correlation_id returned {number or 'a record'} with "
                f"another correlation_id; the instance ignored the query "
                f"(does table {settings.table} have correlation_id?)"
            )
        if step == "recheck":
            return Delivered(
                remote_id=number or sys_id,
                detail=self._detail(settings, ctx, sys_id, number),
                proof=PROOF_RECHECKED,
            )
        return Next(replace(flow, step="work_note", since=ctx.attempt + 1, sys_id=sys_id, number=number))

    def _created(self, response: Response, settings: ServiceNowSettings, ctx: Context) -> Verdict:
        expected = 200 if settings.api == "change" else 201
        if response.status not in (200, 201):
            return self._failure("servicenow create", response)
        body = response.json_or_none()
        result = body.get("result") if isinstance(body, dict) else None
        if isinstance(result, list):  # the Change API's documented example wraps the record in an array
            result = result[0] if result else None
        record = result if isinstance(result, dict) else {}
        sys_id, number = _plain(record.get("sys_id")), _plain(record.get("number"))
        if not sys_id:  # no body (X-no-response-body or a proxy): the Location header names the record
            sys_id = urlsplit(response.header("location") or "").path.rstrip("/").rsplit("/", 1)[-1]
        if not sys_id:
            return Reject(f"servicenow create: HTTP {response.status} (expected {expected}) without a sys_id")
        detail = self._detail(settings, ctx, sys_id, number)
        return Delivered(remote_id=number or sys_id, detail=detail, proof=PROOF_CREATED)

    def _noted(
        self, response: Response, settings: ServiceNowSettings, ctx: Context, flow: ServiceNowState
    ) -> Verdict:
        sys_id, number = flow.sys_id, flow.number
        if response.status == 200:
            return Delivered(
                remote_id=number or sys_id,
                detail=self._detail(settings, ctx, sys_id, number),
                proof=PROOF_NOTED,
            )
        if response.status == 404:
            return Reject(
                f"servicenow work_note: HTTP 404: {number or sys_id} was found by correlation_id but "
                f"cannot be updated (deleted or restricted by an ACL). {provider_error(response)}".strip()
            )
        return self._failure("servicenow work_note", response)

    def _failure(self, what: str, response: Response) -> Verdict:
        status = response.status
        error = provider_error(response)
        label = f"{what}: HTTP {status}" + (f": {error}" if error else "")
        if status == 401:
            return Reject(f"{label} (check username + password, or the OAuth token)")
        if status == 403:
            return Reject(f"{label} (an ACL, business rule or data policy refused it)")
        verdict = classify(response, what=label)
        if isinstance(verdict, Retry):
            return verdict
        if isinstance(verdict, Reject):
            return verdict
        return Reject(f"{label}: unexpected status for this step")
