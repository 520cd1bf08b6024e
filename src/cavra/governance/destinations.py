"""The destinations of the connectors file as operators see them, and a test delivery to one of them.

:func:`list_destinations` (``GET /destinations``, ``cavra destinations list``) answers, per destination of
the file (loaded, failed to load, or disabled): its name, provider, category, whether it is enabled and
loaded (with the config error when not), its health from real deliveries (the index: integration, release
and publication deliveries, never test deliveries) and the state every worker shares about it (circuit
breaker, ``Retry-After`` pause). Never a secret: no URL, no credential, only whether a proxy is set.

:func:`send_destination_test` (``POST /destinations/{name}/test``, ``cavra destinations test NAME``) sends a
clearly marked test event (event type :data:`TEST_EVENT_TYPE`, ``"test": true``) to that one destination
now, through the engine like any delivery (redacted evidence, retries off), and stores the record under
its own metadata kind (:data:`~cavra.store.base.TEST_DELIVERY`), so it never counts in the dashboards.
It does not go through the outbox and does not move the destination's breaker: a test says whether the
destination works, it is not a delivery.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any

from cavra.config import LoadedConfig
from cavra.connectors.registry import CATEGORY_OF
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import iso
from cavra.errors import NotFoundError
from cavra.governance.pause import pause_view
from cavra.service import deliver_event, select_targets
from cavra.store import Store
from cavra.store.base import (
    INTEGRATION_DELIVERY,
    PUBLICATION_DELIVERY,
    RELEASE_DELIVERY,
    TEST_DELIVERY,
    DeliveryFilter,
    ProviderStats,
)
from cavra.transport import Transport

#: the event type of a destination test (connectors render it like any event; receivers can drop it)
TEST_EVENT_TYPE = "cavra.destination.test"
#: the deliveries a destination's health is computed from (real ones only)
REAL_KINDS = (RELEASE_DELIVERY, PUBLICATION_DELIVERY, INTEGRATION_DELIVERY)


def _health(stats: ProviderStats | None) -> dict[str, Any]:
    if stats is None or stats.total == 0:
        return {"status": "unknown", "deliveries": 0}
    ok, bad = stats.last_success_at, stats.last_failure_at
    status = "failing" if bad is not None and (ok is None or bad > ok) else "healthy"
    return {
        "status": status,
        "deliveries": stats.total,
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "pending": stats.pending,
        "success_rate": round(stats.succeeded / stats.total, 4),
        "last_success_at": iso(ok) if ok is not None else None,
        "last_failure_at": iso(bad) if bad is not None else None,
    }


def _describe(config: LoadedConfig, name: str) -> dict[str, Any]:
    provider = config.provider_type(name)
    target = config.targets.get(name)
    entry: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "category": CATEGORY_OF.get(provider),
        "enabled": name not in config.disabled,
        "loaded": target is not None,
        "error": config.errors.get(name),
    }
    if target is not None:
        s = target.settings
        entry["settings"] = {
            "rate_limit": s.rate_limit,
            "headers": sorted(s.headers),  # names only: a header value may be sensitive
            "retry": None if s.retry is None else s.retry.model_dump(exclude_none=True),
            "proxy": s.proxy_url is not None or s.trust_env,
            "timeout_seconds": s.timeout_seconds,
        }
    return entry


def list_destinations(store: Store | None, config: LoadedConfig) -> list[dict[str, Any]]:
    """Every destination of the file, in its order, with health and breaker state (``store``: where the
    deliveries and the shared state are; ``None``: config only)."""
    stats: dict[str, ProviderStats] = {}
    shared: dict[str, Any] = {}
    if store is not None:
        stats = {
            str(s.destination): s for s in store.destination_stats(DeliveryFilter(metadata_kinds=REAL_KINDS))
        }
        shared = {d.provider: d for d in store.list_destinations()}
    now = datetime.now(UTC)
    out = []
    for name in config.destinations:
        entry = _describe(config, name)
        entry["health"] = _health(stats.get(name))
        state = shared.get(name)
        entry["breaker"] = {
            "state": "closed" if state is None else state.breaker_state,
            "consecutive_failures": 0 if state is None else state.consecutive_failures,
            "opened_at": None if state is None else iso(state.opened_at) if state.opened_at else None,
            "paused_until": (
                iso(state.paused_until)
                if state is not None and state.paused_until is not None and state.paused_until > now
                else None
            ),
        }
        entry["pause"] = pause_view(state, now)
        out.append(entry)
    return out


def destination_test_event(name: str, provider: str) -> dict[str, Any]:
    """The clearly marked test event sent to destination ``name``."""
    now = datetime.now(UTC)
    return {
        "event_type": TEST_EVENT_TYPE,
        "event_id": f"test_{now.strftime('%Y%m%dT%H%M%S')}_{secrets.token_hex(4)}",
        "session_id": f"destination-test-{name}",
        "severity": "info",
        "test": True,
        "title": f"CAVRA destination test for {name} ({provider})",
        "summary": (
            f"This is a test message sent by CAVRA Connectors to check the destination {name!r}. "
            "It carries no governance evidence and can be ignored."
        ),
        "occurred_at": iso(now),
        "destination": name,
    }


def check_testable(config: LoadedConfig, name: str) -> None:
    """NotFoundError / ConfigError when ``name`` is not a destination that can be sent to (unknown, disabled
    or not loadable): callers check before they open or create anything."""
    if name not in config.destinations:
        raise NotFoundError(
            f"destination {name!r} is not in {config.source} "
            f"(its destinations: {', '.join(config.destinations) or 'none'})"
        )
    select_targets(config, [name])


async def send_destination_test(
    store: Store,
    config: LoadedConfig,
    name: str,
    *,
    transport: Transport | None = None,
) -> dict[str, Any]:
    """Send a test event to destination ``name`` now; store and answer its record (with ``verdict``)."""
    check_testable(config, name)
    provider = config.provider_type(name)
    event = destination_test_event(name, provider)
    record = await deliver_event(event, config, [name], policy=RetryPolicy(retries=0), transport=transport)
    stored = await asyncio.to_thread(
        store.append_delivery,
        record,
        metadata_kind=TEST_DELIVERY,
        subject_kind="destination",
        subject_id=name,
    )
    doc = stored.to_dict()
    item = (doc.get("deliveries") or [{}])[0]
    verdict = "delivered" if doc.get("success") else str(item.get("status") or "failed")
    return {**doc, "delivery_id": stored.id, "destination": name, "verdict": verdict}
