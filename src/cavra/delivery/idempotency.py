"""Outbox jobs and their idempotency keys.

A job's key is the caller's ``Idempotency-Key`` (scoped to the request and the provider) or a stable key
derived from the event identity and the target, so a repeated request returns the first job: as it is when
it is queued and not yet run, running, or succeeded (nothing is delivered twice); re-armed to run now (same
id, attempts and records; :func:`cavra.store.jobs.rearmable`) when its last run failed (it is failed, dead,
or queued for a retry), and the caller waits for that new run. The same key for a different request is a
conflict (:func:`check_reuse`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cavra.errors import ConflictError, InputError
from cavra.events import event_id_of
from cavra.store.jobs import Enqueued, NewJob

#: Longest idempotency key a caller may send.
MAX_KEY_LENGTH = 255


def _digest(*parts: object) -> str:
    text = "\0".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def idempotency_key(
    kind: str,
    provider: str,
    event: Mapping[str, Any],
    *,
    given: str | None = None,
    scope: str | None = None,
) -> str:
    """The job key: the caller's key (scoped to ``scope`` and the provider) or one derived from the event's
    identity and the target. Raises InputError for an empty or overlong caller key."""
    if given is not None:
        key = given.strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InputError(f"Idempotency-Key: must be 1-{MAX_KEY_LENGTH} printable characters")
        return f"idem_{_digest(kind, scope, key, provider)}"
    return f"evt_{_digest(kind, scope, event_id_of(event), provider)}"


def delivery_job(
    event: Mapping[str, Any],
    provider: str,
    *,
    kind: str,
    retries: int = 1,
    timeout_seconds: float | None = None,
    subject_kind: str | None = None,
    subject_id: str | None = None,
    integration_id: str | None = None,
    on_complete: str | None = None,
    key: str | None = None,
    replay_of: str | None = None,
    run_after: datetime | None = None,
    provider_type: str | None = None,
) -> NewJob:
    """A job delivering ``event`` to destination ``provider`` (a destination's name: the key of its entry in
    the connectors file; ``provider_type`` its provider, shown by the job's public view); its records are
    stored under metadata kind ``kind``.

    The payload holds the event and options only: the target (URL, credentials) is resolved from the
    connector config when the job runs, so no secret is ever written to the queue.
    """
    ev = dict(event)
    ev.setdefault("event_id", event_id_of(event))
    scope = "/".join(str(p) for p in (subject_kind, subject_id, integration_id) if p)
    payload: dict[str, Any] = {
        "event": ev,
        "options": {"retries": retries, "timeout_seconds": timeout_seconds},
        "subject_kind": subject_kind,
        "subject_id": subject_id,
        "integration_id": integration_id,
        "on_complete": on_complete,
    }
    if provider_type is not None and provider_type != provider:
        payload["provider"] = provider_type
    return NewJob(
        idempotency_key=idempotency_key(kind, provider, ev, given=key, scope=scope),
        kind=kind,
        provider=provider,
        payload=payload,
        run_after=run_after,
        replay_of=replay_of,
    )


def check_reuse(requested: Sequence[NewJob], got: Sequence[Enqueued]) -> None:
    """An existing job returned for a key must be the same request (event and provider); else 409."""
    for new, result in zip(requested, got, strict=True):
        if result.created:
            continue
        old = result.job
        same_event = old.event.get("event_id") == dict(new.payload.get("event") or {}).get("event_id")
        if old.provider != new.provider or old.kind != new.kind or not same_event:
            raise ConflictError(
                f"the idempotency key of job {old.id} was already used for a different request "
                f"({old.kind}, {old.provider}, event {old.event.get('event_id')})"
            )
