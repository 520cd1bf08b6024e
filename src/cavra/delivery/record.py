"""The ``cavra.connector.delivery.v1`` record: what was delivered, where, how, and what went wrong.

Every text field that can carry provider or request data is :class:`~cavra.redaction.Redacted`, so only the
redactor can fill it. The JSON schema is ``cavra/schemas/connector-delivery.v1.json`` (see
``docs/schemas/connector-delivery.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cavra import PRODUCT, __version__
from cavra.events import DELIVERY_SCHEMA
from cavra.redaction import Redacted, RedactedRequest


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Attempt:
    """One HTTP exchange (or one try that got no answer)."""

    number: int
    step: str
    started_at: datetime
    duration_ms: float
    verdict: str
    reason: Redacted | None
    request: RedactedRequest
    status_code: int | None = None
    response_excerpt: Redacted | None = None
    retry_after: float | None = None
    waited_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "step": self.step,
            "started_at": iso(self.started_at),
            "duration_ms": round(self.duration_ms, 3),
            "status_code": self.status_code,
            "verdict": self.verdict,
            "reason": None if self.reason is None else str(self.reason),
            "retry_after": self.retry_after,
            "waited_ms": round(self.waited_ms, 3),
            "request": self.request.to_dict(),
            "response_excerpt": None if self.response_excerpt is None else str(self.response_excerpt),
        }


@dataclass
class ProviderDelivery:
    """The outcome of delivering one event to one provider."""

    provider: str
    category: str
    delivery_key: str
    started_at: datetime
    completed_at: datetime
    status: str  # delivered | failed | pending
    attempts: list[Attempt] = field(default_factory=list)
    error: Redacted | None = None
    remote_id: Redacted | None = None
    proof: Redacted | None = None
    detail: Mapping[str, Redacted] = field(default_factory=dict)
    #: the destination's name (the key of its entry in the connectors file); default: the provider's
    destination: str | None = None

    @property
    def success(self) -> bool:
        return self.status == "delivered"

    @property
    def attempt_count(self) -> int:
        return len(self.attempts)

    @property
    def status_code(self) -> int | None:
        for attempt in reversed(self.attempts):
            if attempt.status_code is not None:
                return attempt.status_code
        return None

    @property
    def request(self) -> RedactedRequest | None:
        return self.attempts[-1].request if self.attempts else None

    def to_dict(self) -> dict[str, Any]:
        req = self.request
        return {
            "provider": self.provider,
            "destination": self.destination or self.provider,
            "category": self.category,
            "success": self.success,
            "status": self.status,
            "status_code": self.status_code,
            "attempt_count": self.attempt_count,
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "duration_ms": round((self.completed_at - self.started_at).total_seconds() * 1000, 3),
            "error": None if self.error is None else str(self.error),
            "remote_id": None if self.remote_id is None else str(self.remote_id),
            "proof": None if self.proof is None else str(self.proof),
            "detail": {k: str(v) for k, v in self.detail.items()},
            "delivery_key": self.delivery_key,
            "request": None if req is None else req.to_dict(),
            "attempts": [a.to_dict() for a in self.attempts],
        }


def build_record(
    event: Mapping[str, Any],
    deliveries: Sequence[ProviderDelivery],
    *,
    config_errors: Mapping[str, str] | None = None,
    generated_at: datetime | None = None,
    provider_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The delivery record for one event; ``success`` is false unless every destination delivered.

    ``config_errors`` are keyed by destination name; ``provider_of`` names their providers (default: the
    destination's name)."""
    items = [d.to_dict() for d in deliveries]
    errors = [
        {"provider": d["provider"], "destination": d["destination"], "error": d["error"]}
        for d in items
        if d["error"]
    ]
    kinds = provider_of or {}
    for name, message in (config_errors or {}).items():
        errors.append({"provider": kinds.get(name, name), "destination": name, "error": message})
    success = bool(items) and all(d["success"] for d in items) and not config_errors
    return {
        "schema_version": DELIVERY_SCHEMA,
        "product": PRODUCT,
        "product_version": __version__,
        "event_type": event.get("event_type"),
        "event_id": event.get("event_id"),
        "session_id": event.get("session_id"),
        "generated_at": iso(generated_at or utcnow()),
        "success": success,
        "delivered_count": sum(1 for d in items if d["success"]),
        "failed_count": sum(1 for d in items if not d["success"]) + len(config_errors or {}),
        "deliveries": items,
        "errors": errors,
    }
