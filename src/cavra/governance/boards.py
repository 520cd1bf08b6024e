"""Integration (SIEM and ChatOps) delivery history and dashboard, and the dashboard across every kind.

Integration deliveries are those made through ``/integrations/{id}/deliver`` (stored as
``metadata_kind=integration-delivery``); their board has the release board's shape and alerts
(:func:`cavra.history.dashboard`). The all-kinds dashboard counts every provider delivery.
"""

from __future__ import annotations

from typing import Any

from cavra import history
from cavra.store import Store
from cavra.store.base import INTEGRATION_DELIVERY


def integration_delivery_history(store: Store, **filters: Any) -> dict[str, Any]:
    """Integration deliveries (``metadata_kind=integration-delivery``), newest first."""
    return history.query_history(store, metadata_kinds=[INTEGRATION_DELIVERY], **filters).to_dict()


def integration_delivery_dashboard(store: Store) -> dict[str, Any]:
    """Integration delivery totals, per provider and event type, latest failures and alerts."""
    return history.dashboard(
        store, metadata_kinds=[INTEGRATION_DELIVERY], schema=history.INTEGRATION_DASHBOARD
    )


def delivery_dashboard(store: Store) -> dict[str, Any]:
    """Every kind of provider delivery in one dashboard (the console's overview)."""
    return history.dashboard(store, metadata_kinds=None, schema=history.DELIVERY_DASHBOARD)
