"""The console's destinations page: every destination with its state, last delivery and failures.

The destinations of the connectors file come first, in its order (:func:`cavra.governance.destinations.
list_destinations`: health from the totals kept on append, breaker, an operator's pause); destinations
that only the history knows (delivered to before the file changed, or without a file loaded) follow,
marked ``configured: false``. Each row's ``state`` is one word: ``paused`` (by an operator),
``waiting`` (the provider's Retry-After), ``open``/``half_open`` (breaker), ``failing`` (its latest
delivery failed), ``active`` (its latest delivery succeeded), ``idle`` (never delivered).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cavra.config import LoadedConfig
from cavra.governance.destinations import REAL_KINDS, _health, list_destinations
from cavra.governance.pause import pause_view
from cavra.store import Store
from cavra.store.base import DeliveryFilter, iso
from cavra.store.jobs import CLOSED


def _state(entry: dict[str, Any]) -> str:
    breaker = entry["breaker"]
    if entry.get("pause"):
        return "paused"
    if breaker.get("paused_until"):
        return "waiting"
    if breaker.get("state") not in (None, CLOSED):
        return str(breaker["state"])
    status = entry["health"].get("status")
    return {"failing": "failing", "healthy": "active"}.get(str(status), "idle")


def _last(health: dict[str, Any]) -> str | None:
    times = [t for t in (health.get("last_success_at"), health.get("last_failure_at")) if t]
    return max(times) if times else None


def destination_board(store: Store, config: LoadedConfig | None) -> list[dict[str, Any]]:
    """``[{"name", "provider", "category", "configured", "enabled", "state", "health", "breaker",
    "pause", "last_delivery_at"}]``: the file's destinations in order, then the history's others."""
    items = [] if config is None else list_destinations(store, config)
    for it in items:
        it["configured"] = True
    known = {it["name"] for it in items}
    now = datetime.now(UTC)
    shared = {d.provider: d for d in store.list_destinations()}
    for s in store.destination_stats(DeliveryFilter(metadata_kinds=REAL_KINDS)):
        name = str(s.destination)
        if name in known:
            continue
        d = shared.get(name)
        items.append(
            {
                "name": name,
                "provider": s.provider,
                "category": None,
                "configured": False,
                "enabled": None,
                "health": _health(s),
                "breaker": {
                    "state": CLOSED if d is None else d.breaker_state,
                    "consecutive_failures": 0 if d is None else d.consecutive_failures,
                    "paused_until": iso(d.paused_until)
                    if d is not None and d.paused_until and d.paused_until > now
                    else None,
                },
                "pause": pause_view(d, now),
            }
        )
    for it in items:
        it["state"] = _state(it)
        it["last_delivery_at"] = _last(it["health"])
    return items
