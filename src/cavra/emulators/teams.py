"""Microsoft Teams: Workflows (Power Automate) webhooks and the retired Office 365 connector (providers.md 6).

Workflows, ``POST /teams/workflows/{id}/triggers/manual/paths/invoke?api-version=…&sp=…&sv=…&sig=…`` (also
the Power Platform form under ``/teams/powerautomate/automations/direct/…``):

* unknown workflow: 404 ``WorkflowNotFound``; missing ``api-version``: 400 ``MissingApiVersionParameter``;
  missing ``sp``/``sv``/``sig``: 401 ``DirectApiAuthorizationRequired``; a wrong ``sig`` (or ``sp``):
  401 ``DirectApiInvalidAuthorizationSignature`` (status configurable);
* ``throttled``: 429 with ``Retry-After``;
* the body must be ``{"type": "message", "attachments": [{"contentType": "…", …}, …]}`` with at least one
  attachment and a string ``contentType`` on each: else 400 ``TriggerInputSchemaMismatch``;
* success: 202 with an empty body. As in Power Automate, 202 only means the flow run was queued: whether the
  card would have rendered is recorded in :func:`teams_state` (``rendered``, ``render_error``), never told to
  the sender. The run fails inside the flow (202 still answered, nothing posted) for:

  - a ``MessageCard`` (an ``application/vnd.microsoft.teams.card.o365connector`` attachment): "Workflows
    support Adaptive Cards only. It doesn't support the older message card format that Office 365
    Connectors use" (Microsoft Learn, Teams platform, "Create and send messages", *Known issues*,
    learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using; also
    MicrosoftDocs/msteams-docs ``feature-gaps-for-O365-connector.md``: "Workflows cannot post messages using
    the payload/format of O365 Connectors");
  - a message over ``max_message_bytes`` (28 KB): "The message size limit is 28 KB. When the size exceeds
    28 KB, you receive an error" (Microsoft Learn, "Create an Incoming Webhook",
    webhooks-and-connectors/how-to/add-incoming-webhook). Through Workflows the error surfaces in the
    flow run, the trigger having answered 202 (observed by third-party clients; ⚠ the exact run error text
    is unconfirmed).

Legacy connector, ``POST /teams/webhookb2/{group}@{tenant}/IncomingWebhook/{hex}/{guid}``: 200 body ``1``;
400 ``Summary or Text is required.``; over the rate table (4/1 s, 60/30 s, 100/1 h, 150/2 h, 1800/24 h)
the answer is 200 with ``Microsoft Teams endpoint returned HTTP error 429`` in the body; ``legacy_retired``
answers every request with ``legacy_retired_status`` (⚠ the real status is unconfirmed).
"""

from __future__ import annotations

import json
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response

DEMO_WORKFLOW = "0c4a1e1b6d2f4e7a9b3c5d8e0f1a2b3c"
DEMO_SIG = "cavraDemoTeamsWorkflowSig0123456789abcdefXY"
DEMO_LEGACY = (
    "5f3e2d1c-0000-4000-8000-00000000cafe@7a6b5c4d-1111-4111-8111-111111111111"
    "/IncomingWebhook/0123456789abcdef0123456789abcdef/9e8d7c6b-2222-4222-8222-222222222222"
)
TRIGGER_SP = "/triggers/manual/run"
ADAPTIVE = "application/vnd.microsoft.card.adaptive"
O365_CARD = "application/vnd.microsoft.teams.card.o365connector"
#: Teams' documented message size limit, "28 KB"
MAX_MESSAGE_BYTES = 28 * 1024
WORKFLOWS_NO_MESSAGECARD = (
    "Workflows support Adaptive Cards only; the MessageCard (O365 connector card) format is not supported"
)
TOO_LARGE = "The payload is too large. Please make sure the size is less than 28KB."
TOO_LARGE_LEGACY = (
    "Microsoft Teams endpoint returned HTTP error 413 with ContextId tcid=0,server=cavra-emulator,cv=emulated"
)
THROTTLED_BODY = (
    "Microsoft Teams endpoint returned HTTP error 429 with ContextId tcid=0,server=cavra-emulator,cv=emulated"
)
#: the legacy connector's documented rate table: (requests, window seconds)
LEGACY_RATES: tuple[tuple[int, float], ...] = (
    (4, 1.0),
    (60, 30.0),
    (100, 3600.0),
    (150, 7200.0),
    (1800, 86400.0),
)


@dataclass
class Settings:
    """Workflows (id -> ``sig``), legacy connector hooks, and the throttling and retirement switches."""

    workflows: dict[str, str] = field(default_factory=lambda: {DEMO_WORKFLOW: DEMO_SIG})
    wrong_sig_status: int = 401
    #: Power Automate throttling: every Workflows request gets 429 with ``Retry-After``
    throttled: bool = False
    throttle_retry_after: int = 1
    legacy_hooks: list[str] = field(default_factory=lambda: [DEMO_LEGACY])
    legacy_rate_limit: bool = True
    legacy_retired: bool = False
    legacy_retired_status: int = 410
    #: the message size limit (bytes of the request body)
    max_message_bytes: int = MAX_MESSAGE_BYTES


@dataclass
class Post:
    """One accepted post: which kind of endpoint, the body, and whether its card would have rendered."""

    kind: str
    hook: str
    payload: Any
    rendered: bool
    render_error: str | None = None
    at: float = field(default_factory=time.time)


@dataclass
class TeamsState:
    posts: list[Post] = field(default_factory=list)
    legacy_sent: dict[str, deque[float]] = field(default_factory=dict)
    throttled: int = 0

    def clear(self) -> None:
        self.posts.clear()
        self.legacy_sent.clear()
        self.throttled = 0


_STATES: weakref.WeakKeyDictionary[EmulatorHub, TeamsState] = weakref.WeakKeyDictionary()


def teams_state(hub: EmulatorHub) -> TeamsState:
    """The Teams emulator's state for this hub (for in-process tests)."""
    return _STATES.setdefault(hub, TeamsState())


def _logic_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def check_message(payload: object) -> str | None:
    """Why a Workflows trigger body fails the template's schema, or ``None``."""
    if not isinstance(payload, dict):
        return "the body must be a JSON object"
    if payload.get("type") != "message":
        return "'type' must be 'message'"
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "'attachments' must be a non-empty array"
    for i, att in enumerate(attachments):
        if not isinstance(att, dict) or not isinstance(att.get("contentType"), str) or not att["contentType"]:
            return f"attachments[{i}].contentType must be a non-empty string"
    return None


def _has_text(card: dict[str, Any]) -> bool:
    return any(isinstance(card.get(k), str) and card[k].strip() for k in ("text", "summary"))


def render_problem(attachment: dict[str, Any]) -> str | None:
    """Why the flow's "post card" step would fail on this attachment, or ``None``."""
    content = attachment.get("content")
    if not isinstance(content, dict):
        return "attachment has no card content"
    if attachment["contentType"] == ADAPTIVE:
        if content.get("type") != "AdaptiveCard":
            return "content.type must be AdaptiveCard"
        if not isinstance(content.get("version"), str):
            return "content.version is required"
        body = content.get("body")
        if not isinstance(body, list) or not all(isinstance(b, dict) and "type" in b for b in body):
            return "content.body must be a list of elements"
        actions = content.get("actions", [])
        if any(isinstance(a, dict) and a.get("type") == "Action.Submit" for a in actions):
            return "Action.Submit is not supported"
        return None
    if attachment["contentType"] == O365_CARD:
        return WORKFLOWS_NO_MESSAGECARD
    return f"unsupported contentType {attachment['contentType']}"


class _Teams:
    def __init__(self, hub: EmulatorHub, settings: Settings) -> None:
        self.settings = settings
        self.state = teams_state(hub)

    async def workflow(self, request: web.Request) -> web.Response:
        s = self.settings
        expected_sig = s.workflows.get(request.match_info["workflow"])
        if expected_sig is None:
            return _logic_error(404, "WorkflowNotFound", "The workflow could not be found.")
        q = request.query
        if not q.get("api-version"):
            return _logic_error(
                400, "MissingApiVersionParameter", "The api-version query parameter is required."
            )
        if not (q.get("sp") and q.get("sv") and q.get("sig")):
            return _logic_error(
                401,
                "DirectApiAuthorizationRequired",
                "The request must be authenticated with a SAS signature.",
            )
        if q.get("sig") != expected_sig or q.get("sp") != TRIGGER_SP:
            return _logic_error(
                s.wrong_sig_status,
                "DirectApiInvalidAuthorizationSignature",
                "The provided SAS signature is not valid for this trigger.",
            )
        if s.throttled:
            self.state.throttled += 1
            return _logic_error(
                429,
                "WorkflowRequestsThrottled",
                "Rate limit is exceeded. Try again later.",
                headers={"Retry-After": str(s.throttle_retry_after)},
            )
        raw = await request.read()
        payload = _json_body(raw)
        problem = check_message(payload)
        if problem is not None:
            return _logic_error(
                400, "TriggerInputSchemaMismatch", f"The input body failed validation: {problem}."
            )
        render_error = render_problem(payload["attachments"][0])
        if len(raw) > s.max_message_bytes:
            render_error = TOO_LARGE
        self.state.posts.append(
            Post(
                kind="workflows",
                hook=request.match_info["workflow"],
                payload=payload,
                rendered=render_error is None,
                render_error=render_error,
            )
        )
        return web.Response(status=202)

    def _legacy_throttled(self, hook: str) -> bool:
        if not self.settings.legacy_rate_limit:
            return False
        now = time.monotonic()
        sent = self.state.legacy_sent.setdefault(hook, deque())
        horizon = max(window for _, window in LEGACY_RATES)
        while sent and now - sent[0] > horizon:
            sent.popleft()
        for limit, window in LEGACY_RATES:
            if sum(1 for t in sent if now - t <= window) >= limit:
                return True
        sent.append(now)
        return False

    async def legacy(self, request: web.Request) -> web.Response:
        s = self.settings
        if s.legacy_retired:
            return web.Response(
                status=s.legacy_retired_status,
                text="Office 365 connectors have been retired; use Workflows.",
                content_type="text/plain",
            )
        hook = request.match_info["tail"]
        if hook not in s.legacy_hooks:
            return web.Response(status=404, text="Webhook not found.", content_type="text/plain")
        raw = await request.read()
        payload = _json_body(raw)
        if not isinstance(payload, dict):
            return web.Response(
                status=400, text="Invalid webhook request - Bad payload", content_type="text/plain"
            )
        if len(raw) > s.max_message_bytes:
            return web.Response(status=200, text=TOO_LARGE_LEGACY, content_type="text/plain")
        is_message = payload.get("type") == "message" and check_message(payload) is None
        if not is_message and not _has_text(payload):
            return web.Response(status=400, text="Summary or Text is required.", content_type="text/plain")
        if self._legacy_throttled(hook):
            self.state.throttled += 1
            return web.Response(status=200, text=THROTTLED_BODY, content_type="text/plain")
        self.state.posts.append(Post(kind="legacy", hook=hook, payload=payload, rendered=True))
        return web.Response(status=200, text="1", content_type="text/plain")


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """Workflows triggers (both URL forms) and the legacy ``webhookb2`` connector."""
    app = web.Application()
    teams = _Teams(hub, settings)
    hub.reset_hooks.append(teams.state.clear)
    invoke = "/workflows/{workflow}/triggers/manual/paths/invoke"
    app.router.add_post(invoke, teams.workflow)
    app.router.add_post("/powerautomate/automations/direct" + invoke, teams.workflow)
    app.router.add_post("/webhookb2/{tail:.+}", teams.legacy)
    return app


def workflow_url(base_url: str, workflow: str, sig: str, api_version: str = "2016-06-01") -> str:
    """The Workflows trigger URL for this emulator, in the Logic Apps form."""
    return (
        f"{base_url}/teams/workflows/{workflow}/triggers/manual/paths/invoke"
        f"?api-version={api_version}&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}"
    )


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """A ``teams`` connector entry (Adaptive Card over Workflows); the URL with its ``sig`` is in the env."""
    workflow, sig = next(iter(settings.workflows.items()), (DEMO_WORKFLOW, DEMO_SIG))
    return (
        {"url_env": "TEAMS_WEBHOOK_URL", "card_format": "adaptive", "allow_http": True},
        {"TEAMS_WEBHOOK_URL": workflow_url(base_url, workflow, sig)},
    )
