"""Operator actions (console and API) and their audit trail.

Each action is recorded as a ``console_action`` record (who: the token's name and role; what; on what;
when; the outcome) that the console lists at ``/console/audit``:

* :func:`redeliver`: queue a stored delivery's event again as a new job linked to it (``replay_of``);
  the server's worker (``cavra serve``) or ``cavra worker`` runs it.
* :func:`replay_failed`: queue a replay of every failed (and/or dead) job matching the filters and a time
  window, each once; answers how many were queued (``POST /deliveries/replay``, the console's queue page).
* pause and resume of a destination: an operator's pause, its own state apart from the provider's
  Retry-After (:mod:`cavra.governance.pause`).
* :func:`silence_alert`: acknowledge an alert (``until`` in the future silences it): the dashboards mark
  it acknowledged, with who and until when; it is still listed (the condition has not cleared).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.delivery.replay import job_of_delivery, replay, replay_job
from cavra.errors import InputError
from cavra.store import Store
from cavra.store.base import check_metadata_kind, iso, parse_iso, utc
from cavra.store.jobs import DEAD, FAILED

AUDIT_KIND = "console_action"
SILENCE_KIND = "alert_silence"
#: the longest pause or silence an action may set
MAX_HOLD = timedelta(days=7)
MAX_REPLAY = 1000


def record_action(
    store: Store, *, who: str, role: str, action: str, target: str, outcome: str, detail: Mapping[str, Any]
) -> dict[str, Any]:
    """Store one audit record of an action and return it."""
    now = datetime.now(UTC)
    action_id = f"act_{now.strftime('%Y%m%dT%H%M%S%f')}_{secrets.token_hex(4)}"
    body = {
        "action_id": action_id,
        "at": iso(now),
        "who": who,
        "role": role,
        "action": action,
        "target": target,
        "outcome": outcome,
        "detail": dict(detail),
    }
    store.put_record(AUDIT_KIND, action_id, body)
    return body


def list_actions(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    """The audit records of actions, newest first."""
    items = store.list_records(AUDIT_KIND)
    return sorted(items, key=lambda r: str(r.get("at")), reverse=True)[:limit]


def redeliver(store: Store, delivery_id: str) -> dict[str, Any]:
    """Queue ``delivery_id``'s event again (a new job, ``replay_of`` = the id); the new job's view."""
    job = job_of_delivery(store, delivery_id)
    [queued] = store.enqueue_jobs([replay_job(job, delivery_id)])
    return {"job_id": queued.job.id, "created": queued.created, "provider": queued.job.provider}


def _hold(until: datetime, now: datetime) -> datetime:
    when = utc(until)
    if when <= now:
        raise InputError("until: must be in the future")
    if when - now > MAX_HOLD:
        raise InputError(f"until: at most {MAX_HOLD.days} days ahead")
    return when


def replay_failed(
    store: Store,
    *,
    states: tuple[str, ...] = (FAILED, DEAD),
    provider: str | None = None,
    metadata_kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = MAX_REPLAY,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Replay the finished jobs in ``states`` whose job was created in ``since <= t < until`` (and of that
    provider and kind): ``{"matched", "queued", "already_replayed", "dry_run", "items"}``."""
    if not states:
        raise InputError("states: name failed, dead or both")
    if since is not None and until is not None and utc(since) >= utc(until):
        raise InputError("since: must be before until")
    kind = check_metadata_kind(metadata_kind) if metadata_kind else None
    items = replay(
        store,
        states=states,
        provider=provider or None,
        kind=kind,
        since=since,
        until=until,
        limit=limit,
        dry_run=dry_run,
    )
    return {
        "matched": len(items),
        "queued": sum(1 for i in items if i.created),
        "already_replayed": sum(1 for i in items if not i.created and i.replay is not None),
        "dry_run": dry_run,
        "items": [i.to_dict() for i in items],
    }


def alert_key(alert: Mapping[str, Any]) -> str:
    """What identifies an alert across dashboards: its code and what it is about."""
    about = alert.get("event_id") or alert.get("subject_id") or ""
    return f"{alert.get('code')}|{alert.get('provider') or ''}|{about}"


def silence_alert(store: Store, key: str, *, who: str, until: datetime) -> dict[str, Any]:
    now = datetime.now(UTC)
    if not key or len(key) > 600 or key.count("|") != 2:
        raise InputError("alert: not an alert key")
    body = {"key": key, "who": who, "at": iso(now), "until": iso(_hold(until, now))}
    store.put_record(SILENCE_KIND, key, body)
    return body


def with_silences(store: Store, board: dict[str, Any]) -> dict[str, Any]:
    """The board with each alert's ``key`` and, while an acknowledgement (silence) lasts, ``silenced`` (the
    silence record) and ``acknowledged_by``, ``acknowledged_at``, ``acknowledged_until`` (else ``None``):
    what the API's and the CLI's dashboards show too."""
    now = datetime.now(UTC)
    live = {
        s["key"]: s
        for s in store.list_records(SILENCE_KIND)
        if isinstance(s.get("until"), str) and parse_iso(s["until"]) > now
    }
    for alert in board.get("alerts") or []:
        alert["key"] = alert_key(alert)
        found = live.get(alert["key"])
        alert["silenced"] = found
        alert["acknowledged_by"] = None if found is None else found.get("who")
        alert["acknowledged_at"] = None if found is None else found.get("at")
        alert["acknowledged_until"] = None if found is None else found.get("until")
    return board
