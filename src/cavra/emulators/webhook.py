"""A generic webhook receiver that verifies Standard Webhooks v1 signatures (providers.md section 4).

Any path under ``/webhook/`` is a receiver (``/webhook/cavra``, ``/webhook/soc/ingest``, …). For each
``POST`` the receiver checks, in order:

1. the receiver is not switched off (``gone_receivers``: 410, the "disable this endpoint" answer);
2. the optional Bearer token (``bearer_token``): 401 when missing or wrong;
3. the three ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` headers are present
   (``missing_header_status``, 400 or 401, the receiver's choice);
4. the timestamp is an integer within ``tolerance_seconds`` (±5 minutes) of now;
5. one of the space-separated ``v1,<base64>`` signatures is the HMAC-SHA256, keyed with the base64-decoded
   ``whsec_`` secret, of ``"{id}.{timestamp}.{raw body}"`` (constant-time compare; unknown versions ignored);
6. the body is a JSON value;
7. dedup on ``webhook-id``: a repeat is answered 2xx and counted as a duplicate, never processed twice.

The verification is written by hand from the specification; it does not use the ``standardwebhooks``
library, so a connector that signs with that library is checked by an independent implementation.
Counts of unique and duplicate deliveries are served at ``GET /webhook/_stats`` and, in-process, by
:func:`receiver_state`. Scripted answers (5xx, 429 with ``Retry-After``, slow or dropped responses) come
from the shared fault middleware.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response

SECRET_PREFIX = "whsec_"
#: 32 fixed demo bytes; a real secret is 24-64 random bytes.
DEMO_SECRET = SECRET_PREFIX + base64.b64encode(b"cavra-emulator-webhook-signing!!").decode("ascii")


@dataclass
class Settings:
    """Receiver switches. Every receiver path shares ``secret`` unless ``receiver_secrets`` names its own."""

    secret: str = DEMO_SECRET
    #: receiver name (the path after ``/webhook/``) -> its own ``whsec_`` secret
    receiver_secrets: dict[str, str] = field(default_factory=dict)
    #: ``False`` turns signature checking off (a plain receiver that still dedups on ``webhook-id``)
    require_signature: bool = True
    missing_header_status: int = 400
    invalid_signature_status: int = 401
    tolerance_seconds: int = 300
    #: when set, ``Authorization: Bearer <token>`` is required as well
    bearer_token: str | None = None
    #: the answer to an accepted delivery (and to a duplicate)
    response_status: int = 200
    #: receivers that answer 410 Gone: the sender should disable the endpoint
    gone_receivers: list[str] = field(default_factory=list)
    #: the receiver the demo configuration points at
    demo_receiver: str = "cavra"


@dataclass
class Delivery:
    """One unique message a receiver processed, and how often it was delivered."""

    receiver: str
    webhook_id: str
    payload: Any
    first_timestamp: int
    count: int = 1


@dataclass
class ReceiverState:
    """What the receivers processed: unique messages (keyed by receiver and ``webhook-id``) and duplicates."""

    deliveries: dict[tuple[str, str], Delivery] = field(default_factory=dict)
    duplicates: int = 0
    rejected: int = 0

    @property
    def unique(self) -> int:
        return len(self.deliveries)

    def payloads(self, receiver: str | None = None) -> list[Any]:
        return [d.payload for d in self.deliveries.values() if receiver is None or d.receiver == receiver]

    def stats(self) -> dict[str, Any]:
        by_receiver: dict[str, dict[str, int]] = {}
        for d in self.deliveries.values():
            entry = by_receiver.setdefault(d.receiver, {"unique": 0, "duplicates": 0})
            entry["unique"] += 1
            entry["duplicates"] += d.count - 1
        return {
            "unique": self.unique,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "by_receiver": by_receiver,
            "deliveries": [
                {"receiver": d.receiver, "webhook_id": d.webhook_id, "count": d.count}
                for d in self.deliveries.values()
            ],
        }

    def clear(self) -> None:
        self.deliveries.clear()
        self.duplicates = 0
        self.rejected = 0


_STATES: weakref.WeakKeyDictionary[EmulatorHub, ReceiverState] = weakref.WeakKeyDictionary()


def receiver_state(hub: EmulatorHub) -> ReceiverState:
    """The webhook receivers' state for this hub (for in-process tests)."""
    return _STATES.setdefault(hub, ReceiverState())


def _secret_key(secret: str) -> bytes:
    """Strip ``whsec_`` and base64-decode (unpadded base64 tolerated, as the reference library does)."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def expected_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> bytes:
    """HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with the decoded secret (raw digest bytes)."""
    signed = msg_id.encode("utf-8") + b"." + timestamp.encode("ascii") + b"." + body
    return hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()


def signature_matches(secret: str, msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """True when any ``v1,<base64>`` entry of the space-separated header matches; other versions ignored."""
    expected = expected_signature(secret, msg_id, timestamp, body)
    for entry in header.split(" "):
        version, sep, encoded = entry.partition(",")
        if not sep or version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(candidate, expected):
            return True
    return False


def _error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)


class _Receiver:
    def __init__(self, hub: EmulatorHub, settings: Settings) -> None:
        self.settings = settings
        self.state = receiver_state(hub)

    def _reject(self, status: int, message: str) -> web.Response:
        self.state.rejected += 1
        return _error(status, message)

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(self.state.stats())

    async def receive(self, request: web.Request) -> web.Response:
        s = self.settings
        receiver = request.match_info["receiver"].strip("/")
        if not receiver or receiver.startswith("_"):
            return _error(404, "no such receiver")
        if receiver in s.gone_receivers:
            return self._reject(410, "this endpoint is disabled; stop sending")
        if s.bearer_token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {s.bearer_token}".encode()):
                return self._reject(401, "missing or invalid bearer token")
        body = await request.read()
        msg_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        signature = request.headers.get("webhook-signature", "")
        if s.require_signature:
            if not (msg_id and timestamp and signature):
                return self._reject(s.missing_header_status, "missing required webhook-* headers")
            problem = self._check_headers(msg_id, timestamp)
            if problem is not None:
                return self._reject(s.invalid_signature_status, problem)
            secret = s.receiver_secrets.get(receiver, s.secret)
            if not signature_matches(secret, msg_id, timestamp, body, signature):
                return self._reject(s.invalid_signature_status, "no matching signature found")
        elif not msg_id:
            return self._reject(s.missing_header_status, "missing webhook-id header")
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._reject(400, "body is not JSON")
        key = (receiver, msg_id)
        seen = self.state.deliveries.get(key)
        if seen is not None:
            seen.count += 1
            self.state.duplicates += 1
            return self._accepted(msg_id, duplicate=True)
        self.state.deliveries[key] = Delivery(
            receiver=receiver,
            webhook_id=msg_id,
            payload=payload,
            first_timestamp=int(timestamp) if timestamp.isdigit() else 0,
        )
        return self._accepted(msg_id, duplicate=False)

    def _check_headers(self, msg_id: str, timestamp: str) -> str | None:
        if "." in msg_id:
            return "webhook-id must not contain '.'"
        if not timestamp.isdigit():
            return "webhook-timestamp must be integer Unix seconds"
        skew = int(timestamp) - time.time()
        if skew < -self.settings.tolerance_seconds:
            return "message timestamp too old"
        if skew > self.settings.tolerance_seconds:
            return "message timestamp too new"
        return None

    def _accepted(self, msg_id: str, *, duplicate: bool) -> web.Response:
        status = self.settings.response_status
        if status == 204:
            return web.Response(status=204)
        return json_response({"received": True, "webhook_id": msg_id, "duplicate": duplicate}, status=status)


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The receiver routes: ``GET /_stats`` and ``POST /{receiver:.+}``."""
    app = web.Application()
    receiver = _Receiver(hub, settings)
    hub.reset_hooks.append(receiver.state.clear)
    app.router.add_get("/_stats", receiver.stats)
    app.router.add_post("/{receiver:.+}", receiver.receive)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """A ``webhook`` connector entry pointing at the demo receiver, with the secrets in the environment."""
    entry: dict[str, Any] = {
        "url_env": "WEBHOOK_URL",
        "signing_secret_env": "WEBHOOK_SIGNING_SECRET",
        "allow_http": True,
    }
    env = {
        "WEBHOOK_URL": f"{base_url}/webhook/{settings.demo_receiver}",
        "WEBHOOK_SIGNING_SECRET": settings.receiver_secrets.get(settings.demo_receiver, settings.secret),
    }
    if settings.bearer_token is not None:
        entry["token_env"] = "WEBHOOK_TOKEN"
        env["WEBHOOK_TOKEN"] = settings.bearer_token
    return entry, env
