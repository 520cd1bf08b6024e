"""What makes a dashboard alert actionable: the record it is about, the history that shows it, the
providers' states, and which queue alerts belong on which board.

Every alert of :func:`cavra.history.dashboard` gains two fields (additive to the alert shape):

``delivery_id``
    the latest failed delivery record the alert is about (``null`` when there is none, e.g. a backlog);
``history``
    the history filters that show what the alert counts (``provider`` and ``status=failed``, the rollback's
    ``event_id``, an export's ``subject_id``, the window's ``since``), as query parameters of the board's
    history route (``GET /release-connector-deliveries?…`` and the console's history pages), or ``null``.

Each provider of the board gets ``state``: the highest level among the alerts naming it (``critical``,
``warning``), else ``ok``, so the providers table never says ``ok`` beside a critical alert.

Queue alerts (:mod:`cavra.delivery.health`) describe the shared outbox; a board shows one only when it
concerns the board's kinds: a provider's breaker or Retry-After pause when the board has deliveries to that
provider or queued jobs of its kinds for it, the backlog when jobs of its kinds are queued.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from cavra.delivery.health import queue_alerts
from cavra.store import Store
from cavra.store.base import DeliveryFilter, iso
from cavra.store.jobs import JobFilter

_RANK = {"critical": 2, "warning": 1}


def latest_failure(store: Store, flt: DeliveryFilter) -> dict[str, Any] | None:
    """The newest failed provider delivery matching ``flt`` (as a history item), if any."""
    rows = store.page_provider_deliveries(flt.narrowed(status="failed"), limit=1)
    return rows[0].to_item() if rows else None


def link(store: Store, base: DeliveryFilter, alert: dict[str, Any], *, window_since: datetime) -> None:
    """Set the alert's ``delivery_id`` and ``history`` (in place)."""
    code, provider, event_id = alert["code"], alert.get("provider"), alert.get("event_id")
    history: dict[str, str] | None = None
    flt: DeliveryFilter | None = None
    if code == "rollback_delivery_failed" and event_id:
        history = {"event_id": event_id, **({"provider": provider} if provider else {})}
        flt = base.narrowed(event_id=event_id, provider=provider)
    elif code == "export_not_published" and alert.get("subject_id"):
        history = {"subject_id": alert["subject_id"]}
        flt = base.narrowed(subject_id=alert["subject_id"])
    elif code == "rollback_delivery_failed_more":
        history = None
    elif provider:
        history = {"provider": provider, "status": "failed"}
        if code == "failure_rate_high":
            history["since"] = iso(window_since) or ""
        flt = base.narrowed(provider=provider)
    found = latest_failure(store, flt) if flt is not None else None
    alert["delivery_id"] = found["delivery_id"] if found else None
    alert["history"] = history


def provider_states(providers: list[dict[str, Any]], alerts: Iterable[dict[str, Any]]) -> None:
    """Set each provider entry's ``state`` from the alerts naming it (in place)."""
    worst: dict[str, int] = {}
    for a in alerts:
        p = a.get("provider")
        if p:
            worst[p] = max(worst.get(p, 0), _RANK.get(a["level"], 0))
    names = {v: k for k, v in _RANK.items()}
    for entry in providers:
        entry["state"] = names.get(worst.get(entry["provider"], 0), "ok")


def _queued(store: Store, kinds: tuple[str, ...] | None, provider: str | None) -> bool:
    if kinds is None:
        return True
    return any(
        store.list_jobs(JobFilter(states=("queued",), provider=provider, kind=k), limit=1) for k in kinds
    )


def board_queue_alerts(
    store: Store, kinds: tuple[str, ...] | None, providers: set[str], *, now: datetime
) -> list[dict[str, Any]]:
    """The queue alerts that concern a board of ``kinds`` (``None``: every kind) delivering to
    ``providers``."""
    out = []
    for alert in queue_alerts(store, now=now):
        provider = alert.get("provider")
        if kinds is None or (provider in providers if provider else False) or _queued(store, kinds, provider):
            out.append(alert)
    return out
