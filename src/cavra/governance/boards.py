"""Integration (SIEM and ChatOps) delivery history and dashboard, and the dashboard across every kind.

Integration deliveries are those made through ``/integrations/{id}/deliver`` (stored as
``metadata_kind=integration-delivery``); their board has the release board's shape and alerts
(:func:`cavra.history.dashboard`); every board's alerts say whether they are acknowledged
(:func:`cavra.governance.actions.with_silences`). The all-kinds dashboard counts every provider delivery.
"""

from __future__ import annotations

from typing import Any

from cavra import history
from cavra.governance.actions import with_silences
from cavra.store import Store
from cavra.store.base import INTEGRATION_DELIVERY


def integration_delivery_history(store: Store, **filters: Any) -> dict[str, Any]:
    """Integration deliveries (``metadata_kind=integration-delivery``), newest first."""
    return history.query_history(store, metadata_kinds=[INTEGRATION_DELIVERY], **filters).to_dict()


def integration_delivery_dashboard(store: Store) -> dict[str, Any]:
    """Integration delivery totals, per provider and event type, latest failures and alerts."""
    board = history.dashboard(
        store, metadata_kinds=[INTEGRATION_DELIVERY], schema=history.INTEGRATION_DASHBOARD
    )
    return with_silences(store, board)


def delivery_dashboard(store: Store) -> dict[str, Any]:
    """Every kind of provider delivery in one dashboard (the console's overview)."""
    return with_silences(
        store, history.dashboard(store, metadata_kinds=None, schema=history.DELIVERY_DASHBOARD)
    )


_ORDER = {"ok": 0, "warning": 1, "critical": 2}


def combined_totals(boards: list[dict[str, Any]]) -> dict[str, Any]:
    """Every kind at once from the kinds' own dashboards (the kinds cover every delivery): summed totals,
    the success rate, the worst status. Cheaper than :func:`delivery_dashboard`, which recomputes it all."""
    keys = ("deliveries", "succeeded", "failed", "pending", "attempts")
    totals = {k: sum(int(b["totals"].get(k) or 0) for b in boards) for k in keys}
    rate = None if not totals["deliveries"] else round(totals["succeeded"] / totals["deliveries"], 4)
    status = max((b["status"] for b in boards), key=lambda s: _ORDER.get(s, 0), default="ok")
    generated = max((b["generated_at"] for b in boards), default=None)
    return {"totals": totals, "success_rate": rate, "status": status, "generated_at": generated}
