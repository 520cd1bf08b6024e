"""The completion notes of governance deliveries, and the delivery runtime that knows them.

A delivery through an integration notes its outcome as the integration's ``last_delivery``; a publication
of an endpoint-management export notes it in the ``endpoint_publication`` record. Each note runs in the
completion transaction of the delivery's outbox job, whichever worker runs it
(:mod:`cavra.delivery.notes`), so a caller that sees the record sees the note.

:func:`delivery_runtime` is how a process that delivers gets its :class:`DeliveryRuntime`: the service (the
API's app, ``cavra worker``, a CLI command) makes one and passes it down; the notes are registered there,
explicitly, not when a module happens to be imported.
"""

from __future__ import annotations

from cavra.connectors.base import TokenCache
from cavra.delivery.guard import GuardSettings
from cavra.delivery.record import iso, utcnow
from cavra.delivery.runtime import DeliveryRuntime
from cavra.store import StoredDelivery
from cavra.store.base import RecordAccess

#: the completion note that records a run's outcome as the integration's ``last_delivery``
INTEGRATION_HOOK = "integration"
#: the completion note that records a publication run's outcome in the ``endpoint_publication`` record
PUBLICATION_HOOK = "publication"


def delivery_runtime(
    *, tokens: TokenCache | None = None, guard_settings: GuardSettings | None = None
) -> DeliveryRuntime:
    """A new delivery runtime with the governance completion notes registered."""
    runtime = DeliveryRuntime(tokens=tokens, guard_settings=guard_settings)
    runtime.notes.register(INTEGRATION_HOOK, note_integration_delivery)
    runtime.notes.register(PUBLICATION_HOOK, note_publication)
    return runtime


def note_integration_delivery(records: RecordAccess, stored: StoredDelivery) -> None:
    """Set the integration's ``last_delivery`` from one stored delivery record (idempotent; a deleted
    integration stays deleted). A completion note: it runs in the completion's transaction."""
    doc = stored.document
    integration_id = doc.get("integration_id") or doc.get("subject_id")
    if not isinstance(integration_id, str):
        return
    current = records.get("integration", integration_id)
    if current is None:
        return
    noted = current.get("last_delivery")
    if isinstance(noted, dict) and noted.get("delivery_id") == stored.id:
        return
    errors = [e.get("error") for e in doc.get("errors") or [] if e.get("error")]
    last = {
        "delivery_id": stored.id,
        "event_id": doc.get("event_id"),
        "event_type": doc.get("event_type"),
        "success": bool(doc.get("success")),
        "at": doc.get("created_at") or iso(utcnow()),
        "error": errors[0] if errors else None,
    }
    records.put("integration", integration_id, {**current, "last_delivery": last})


def note_publication(records: RecordAccess, stored: StoredDelivery) -> None:
    """Keep the latest publication outcome per provider in the ``endpoint_publication`` record (from one
    stored publication delivery record; idempotent). A completion note: it runs in the completion's
    transaction (and in :meth:`Store.with_records` for a publication refused before any job)."""
    doc = stored.document
    export_id = doc.get("subject_id") or doc.get("export_id")
    if not isinstance(export_id, str):
        return
    by_provider = {d.get("provider"): d for d in doc.get("deliveries") or []}
    errors = {e.get("provider"): e.get("error") for e in doc.get("errors") or []}
    providers = [str(p) for p in dict.fromkeys([*by_provider, *errors]) if p]
    current = records.get("endpoint_publication", export_id) or {}
    outcomes = dict(current.get("providers") or {})
    if current and all((outcomes.get(p) or {}).get("delivery_id") == stored.id for p in providers):
        return
    export = records.get("endpoint_export", export_id) or {}
    for name in providers:
        item = by_provider.get(name) or {}
        outcomes[name] = {
            "delivery_id": stored.id,
            "success": bool(item.get("success")),
            "status": item.get("status") or "failed",
            "at": doc.get("created_at"),
            "error": item.get("error") or errors.get(name),
        }
    body = {
        "export_id": export_id,
        "release": export.get("release", current.get("release")),
        "channel": export.get("channel", current.get("channel")),
        "published": any(o["success"] for o in outcomes.values()),
        "providers": outcomes,
    }
    records.put("endpoint_publication", export_id, body)
