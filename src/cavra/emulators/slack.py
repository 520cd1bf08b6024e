"""Slack incoming webhooks (providers.md section 5).

``POST /slack/services/T…/B…/<secret>``: the URL is the credential. The emulator answers like Slack:

* an unregistered hook: 404 ``no_service`` (or 403 ``invalid_token``, ``unknown_hook_error``);
* over the per-hook token bucket (about 1 message/s with a small burst): 429 with ``Retry-After: 1``;
* a body that is not JSON (or a form without a JSON ``payload``): 400 ``invalid_payload``;
* no non-empty ``text``, ``blocks`` or ``attachments``: 400 ``no_text``;
* more than 100 attachments: 400 ``too_many_attachments``;
* Block Kit over its limits (50 blocks, section text 3000, header 150, 10 fields, …): 400 ``invalid_payload``;
* the hook's channel archived: 410 ``channel_is_archived``; deleted: 404 ``channel_not_found``; posting
  forbidden by policy: 403 ``action_prohibited``;
* success: 200 ``ok`` as ``text/plain``.

Every error body is the plain-text error string. Posted messages are kept per hook (:func:`slack_state`).
"""

from __future__ import annotations

import json
import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from cavra.emulators.framework import EmulatorHub

DEMO_HOOK = "T0CAVRA01/B0CAVRA01/cavraDemoSlackHook000001"
#: a second incoming webhook of the demo workspace (one hook per channel, as Slack issues them): the demo
#: config's second Slack destination, ``slack-release``
RELEASE_HOOK = "T0CAVRA01/B0CAVRA02/cavraReleaseSlackHook0002"

MAX_TEXT = 40_000
MAX_ATTACHMENTS = 100
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_MARKDOWN_TEXT = 12_000
MAX_BLOCK_ID = 255
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_IMAGE_URL = 3000
MAX_ALT_TEXT = 2000
_OTHER_BLOCKS = frozenset({"divider", "rich_text", "input", "file", "video"})


@dataclass
class Settings:
    """Registered hooks (``T…/B…/secret`` -> channel), channel states and the rate limiter."""

    hooks: dict[str, str] = field(
        default_factory=lambda: {DEMO_HOOK: "#cavra-governance", RELEASE_HOOK: "#release"}
    )
    #: channel -> ``archived`` | ``deleted`` | ``prohibited``; tests may change it while the server runs
    channel_states: dict[str, str] = field(default_factory=dict)
    #: hooks that were revoked: 403 ``invalid_token``
    revoked_hooks: list[str] = field(default_factory=list)
    #: the answer to an unknown hook: ``no_service`` (404) or ``invalid_token`` (403)
    unknown_hook_error: str = "no_service"
    rate_limit: bool = True
    rate_per_second: float = 1.0
    burst: int = 5


@dataclass
class Bucket:
    """A token bucket: ``capacity`` tokens, refilled at ``rate`` per second."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token; 0.0 when allowed, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else math.inf


@dataclass
class PostedMessage:
    hook: str
    channel: str
    payload: dict[str, Any]
    at: float = field(default_factory=time.time)


@dataclass
class SlackState:
    """Messages posted per hook, answers given, and the per-hook token buckets."""

    messages: list[PostedMessage] = field(default_factory=list)
    throttled: int = 0
    buckets: dict[str, Bucket] = field(default_factory=dict)

    def clear(self) -> None:
        self.messages.clear()
        self.buckets.clear()
        self.throttled = 0


_STATES: weakref.WeakKeyDictionary[EmulatorHub, SlackState] = weakref.WeakKeyDictionary()


def slack_state(hub: EmulatorHub) -> SlackState:
    """The Slack emulator's state for this hub (for in-process tests)."""
    return _STATES.setdefault(hub, SlackState())


_CHANNEL_ERRORS = {
    "archived": (410, "channel_is_archived"),
    "deleted": (404, "channel_not_found"),
    "prohibited": (403, "action_prohibited"),
}


def _plain(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain", headers=headers)


def _parse_body(request: web.Request, raw: bytes) -> object:
    """The message object, or ``None`` when the body is neither JSON nor a form with a JSON ``payload``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if request.content_type == "application/x-www-form-urlencoded":
        values = parse_qs(text).get("payload")
        if not values:
            return None
        text = values[0]
    try:
        return json.loads(text)
    except ValueError:
        return None


def _text_object(value: object, limit: int, *, plain_only: bool = False) -> bool:
    """A Block Kit text object: ``plain_text`` (or ``mrkdwn``) with 1..limit characters."""
    if not isinstance(value, dict):
        return False
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    text = value.get("text")
    return value.get("type") in kinds and isinstance(text, str) and 0 < len(text) <= limit


def _elements(block: dict[str, Any], limit: int) -> bool:
    elements = block.get("elements")
    return (
        isinstance(elements, list)
        and 0 < len(elements) <= limit
        and all(isinstance(e, dict) for e in elements)
    )


def _block_ok(block: object) -> bool:
    """One block within Slack's documented limits."""
    if not isinstance(block, dict):
        return False
    kind = block.get("type")
    block_id = block.get("block_id")
    if block_id is not None and not (isinstance(block_id, str) and len(block_id) <= MAX_BLOCK_ID):
        return False
    if kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and fields is None:
            return False
        if text is not None and not _text_object(text, MAX_SECTION_TEXT):
            return False
        if fields is not None:
            if not isinstance(fields, list) or not 0 < len(fields) <= MAX_FIELDS:
                return False
            return all(_text_object(f, MAX_FIELD_TEXT) for f in fields)
        return True
    if kind == "header":
        return _text_object(block.get("text"), MAX_HEADER_TEXT, plain_only=True)
    if kind == "context":
        return _elements(block, MAX_CONTEXT_ELEMENTS)
    if kind == "actions":
        return _elements(block, MAX_ACTIONS_ELEMENTS)
    if kind == "markdown":
        text = block.get("text")
        return isinstance(text, str) and 0 < len(text) <= MAX_MARKDOWN_TEXT
    if kind == "image":
        url, alt = block.get("image_url"), block.get("alt_text")
        url_ok = (isinstance(url, str) and 0 < len(url) <= MAX_IMAGE_URL) or isinstance(
            block.get("slack_file"), dict
        )
        return url_ok and isinstance(alt, str) and 0 < len(alt) <= MAX_ALT_TEXT
    return kind in _OTHER_BLOCKS


def validate_blocks(blocks: list[Any]) -> str | None:
    """Why the blocks break Block Kit's limits, or ``None``."""
    if len(blocks) > MAX_BLOCKS:
        return f"more than {MAX_BLOCKS} blocks"
    for i, block in enumerate(blocks):
        if not _block_ok(block):
            return f"block {i} is invalid or over its limits"
    return None


def _non_empty_list(value: object) -> bool:
    return isinstance(value, list) and len(value) > 0


def check_message(message: object) -> str | None:
    """The Slack error string for a message body, or ``None`` when it is acceptable."""
    if not isinstance(message, dict):
        return "invalid_payload"
    text = message.get("text")
    if text is not None and not isinstance(text, str):
        return "invalid_payload"
    blocks = message.get("blocks")
    attachments = message.get("attachments")
    if blocks is not None and not isinstance(blocks, list):
        return "invalid_payload"
    if attachments is not None and not isinstance(attachments, list):
        return "invalid_payload"
    has_text = isinstance(text, str) and text.strip() != ""
    if not (has_text or _non_empty_list(blocks) or _non_empty_list(attachments)):
        return "no_text"
    if isinstance(attachments, list):
        if len(attachments) > MAX_ATTACHMENTS:
            return "too_many_attachments"
        if not all(isinstance(a, dict) for a in attachments):
            return "invalid_payload"
    if isinstance(blocks, list) and validate_blocks(blocks) is not None:
        return "invalid_payload"
    return None


class _Hooks:
    def __init__(self, hub: EmulatorHub, settings: Settings) -> None:
        self.settings = settings
        self.state = slack_state(hub)

    def _throttle(self, hook: str) -> float:
        s = self.settings
        if not s.rate_limit:
            return 0.0
        now = time.monotonic()
        bucket = self.state.buckets.get(hook)
        if bucket is None:
            bucket = Bucket(
                capacity=float(max(1, s.burst)), rate=s.rate_per_second, tokens=float(s.burst), updated=now
            )
            self.state.buckets[hook] = bucket
        return bucket.take(now)

    async def unknown(self, request: web.Request) -> web.Response:
        return self._unknown_hook()

    def _unknown_hook(self) -> web.Response:
        if self.settings.unknown_hook_error == "invalid_token":
            return _plain(403, "invalid_token")
        return _plain(404, "no_service")

    async def post(self, request: web.Request) -> web.Response:
        s = self.settings
        m = request.match_info
        hook = f"{m['team']}/{m['bot']}/{m['secret']}"
        if hook in s.revoked_hooks:
            return _plain(403, "invalid_token")
        channel = s.hooks.get(hook)
        if channel is None:
            return self._unknown_hook()
        wait = self._throttle(hook)
        if wait > 0:
            self.state.throttled += 1
            return _plain(429, "rate_limited", headers={"Retry-After": str(max(1, math.ceil(wait)))})
        message = _parse_body(request, await request.read())
        if message is None:
            return _plain(400, "invalid_payload")
        error = check_message(message)
        if error is not None:
            return _plain(400, error)
        assert isinstance(message, dict)
        channel_error = _CHANNEL_ERRORS.get(s.channel_states.get(channel, ""))
        if channel_error is not None:
            return _plain(*channel_error)
        if isinstance(message.get("text"), str) and len(message["text"]) > MAX_TEXT:
            message["text"] = message["text"][:MAX_TEXT]  # Slack truncates, it does not refuse
        self.state.messages.append(PostedMessage(hook=hook, channel=channel, payload=message))
        return _plain(200, "ok")


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """``POST /services/{team}/{bot}/{secret}``; any other ``/services/…`` path is ``no_service``."""
    app = web.Application()
    hooks = _Hooks(hub, settings)
    hub.reset_hooks.append(hooks.state.clear)
    app.router.add_post(
        "/services/{team:T[A-Za-z0-9]+}/{bot:B[A-Za-z0-9]+}/{secret:[A-Za-z0-9]+}", hooks.post
    )
    app.router.add_post("/services/{tail:.*}", hooks.unknown)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """A ``slack`` connector entry; the hook URL (the credential) is in ``SLACK_WEBHOOK_URL``."""
    hook = next(iter(settings.hooks), DEMO_HOOK)
    return (
        {"url_env": "SLACK_WEBHOOK_URL", "allow_http": True},
        {"SLACK_WEBHOOK_URL": f"{base_url}/slack/services/{hook}"},
    )


def demo_destinations(base_url: str, settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """More Slack destinations for the demo config: ``slack-release`` on the second hook (``#release``)."""
    if RELEASE_HOOK not in settings.hooks:
        return {}, {}
    return (
        {"slack-release": {"provider": "slack", "url_env": "SLACK_RELEASE_URL", "allow_http": True}},
        {"SLACK_RELEASE_URL": f"{base_url}/slack/services/{RELEASE_HOOK}"},
    )
