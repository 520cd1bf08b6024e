"""Outbox operations on the JSON file's ``jobs`` list and ``destinations`` map (``--metadata-json``).

The caller holds the file lock (``JsonFileStore._update``) for every change, so the same rules as the SQL
backend hold: one claimer at a time, a completion's record and job state land in one file write. Jobs are
kept as JSON objects with ISO timestamps, oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.store.base import iso, parse_iso, utc
from cavra.store.jobs import (
    QUEUED,
    RUNNING,
    ClaimNew,
    Destination,
    Enqueued,
    Job,
    JobFilter,
    JobOutcome,
    NewJob,
    QueueStats,
    clip_error,
    new_job_id,
    rearmable,
)


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


def to_job(item: dict[str, Any]) -> Job:
    payload = item.get("payload")
    epoch = datetime.fromtimestamp(0, UTC)
    return Job(
        id=str(item.get("id")),
        idempotency_key=str(item.get("idempotency_key")),
        kind=str(item.get("kind")),
        provider=str(item.get("provider")),
        payload=json.loads(json.dumps(payload)) if isinstance(payload, dict) else {},
        state=str(item.get("state")),
        attempts=int(item.get("attempts") or 0),
        run_after=_when(item.get("run_after")) or epoch,
        lease_owner=item.get("lease_owner"),
        lease_expires_at=_when(item.get("lease_expires_at")),
        last_error=item.get("last_error"),
        delivery_id=item.get("delivery_id"),
        replay_of=item.get("replay_of"),
        created_at=_when(item.get("created_at")) or epoch,
        updated_at=_when(item.get("updated_at")) or epoch,
    )


def _items(data: dict[str, Any]) -> list[dict[str, Any]]:
    items = data.setdefault("jobs", [])
    assert isinstance(items, list)
    return items


def enqueue(
    data: dict[str, Any], new: Sequence[NewJob], now: datetime, claim: ClaimNew | None = None
) -> list[Enqueued]:
    items = _items(data)
    by_key = {i.get("idempotency_key"): i for i in items}
    out: list[Enqueued] = []
    for job in new:
        found = by_key.get(job.idempotency_key)
        if found is not None:
            rearmed = rearmable(to_job(found), job)
            if rearmed:  # its last run failed: run it now (same id, attempts and records)
                found.update(
                    state=QUEUED,
                    run_after=iso(now),
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=iso(now),
                )
            out.append(Enqueued(to_job(found), created=False, rearmed=rearmed))
            continue
        item = {
            "id": new_job_id(),
            "idempotency_key": job.idempotency_key,
            "kind": job.kind,
            "provider": job.provider,
            "payload": json.loads(json.dumps(dict(job.payload), default=str)),
            "state": QUEUED,
            "attempts": 0,
            "run_after": iso(job.run_after or now),
            "lease_owner": None,
            "lease_expires_at": None,
            "last_error": None,
            "delivery_id": None,
            "replay_of": job.replay_of,
            "created_at": iso(now),
            "updated_at": iso(now),
        }
        taken = claim is not None and claim.takes(job, now)
        if claim is not None and taken:
            item.update(
                state=RUNNING,
                attempts=1,
                lease_owner=claim.owner,
                lease_expires_at=iso(claim.lease_until(now)),
            )
        items.append(item)
        by_key[job.idempotency_key] = item
        out.append(Enqueued(to_job(item), created=True, claimed=taken))
    return out


def _is_due(item: dict[str, Any], now: datetime) -> bool:
    if item.get("state") == QUEUED:
        when = _when(item.get("run_after"))
        return when is None or when <= now
    if item.get("state") == RUNNING:
        expires = _when(item.get("lease_expires_at"))
        return expires is None or expires <= now
    return False


def _claimable(
    data: dict[str, Any],
    exclude: Sequence[str],
    job_ids: Sequence[str] | None,
    now: datetime,
    providers: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    wanted = None if job_ids is None else set(job_ids)
    only = None if providers is None else set(providers)
    return [
        i
        for i in _items(data)
        if _is_due(i, now)
        and i.get("provider") not in exclude
        and (wanted is None or i.get("id") in wanted)
        and (only is None or i.get("provider") in only)
    ]


def has_due(
    data: dict[str, Any],
    exclude: Sequence[str],
    job_ids: Sequence[str] | None,
    now: datetime,
    providers: Sequence[str] | None = None,
) -> bool:
    return bool(_claimable(data, exclude, job_ids, now, providers))


def claim(
    data: dict[str, Any],
    owner: str,
    *,
    limit: int,
    lease_seconds: float,
    exclude: Sequence[str],
    job_ids: Sequence[str] | None,
    now: datetime,
    providers: Sequence[str] | None = None,
) -> list[Job]:
    due = _claimable(data, exclude, job_ids, now, providers)
    due.sort(key=lambda i: (str(i.get("run_after")), str(i.get("id"))))
    claimed = []
    for item in due[: max(0, limit)]:
        item.update(
            state=RUNNING,
            lease_owner=owner,
            lease_expires_at=iso(now + timedelta(seconds=lease_seconds)),
            attempts=int(item.get("attempts") or 0) + 1,
            updated_at=iso(now),
        )
        claimed.append(to_job(item))
    return claimed


def _held(data: dict[str, Any], owner: str, job_ids: Sequence[str]) -> list[dict[str, Any]]:
    wanted = set(job_ids)
    return [
        i
        for i in _items(data)
        if i.get("id") in wanted and i.get("state") == RUNNING and i.get("lease_owner") == owner
    ]


def extend(
    data: dict[str, Any], owner: str, job_ids: Sequence[str], lease_seconds: float, now: datetime
) -> list[str]:
    held = _held(data, owner, job_ids)
    for item in held:
        item["lease_expires_at"] = iso(now + timedelta(seconds=lease_seconds))
    return [str(i["id"]) for i in held]


def find(data: dict[str, Any], job_id: str) -> dict[str, Any] | None:
    return next((i for i in _items(data) if i.get("id") == job_id), None)


def finish(item: dict[str, Any], outcome: JobOutcome, delivery_id: str, now: datetime) -> Job:
    item.update(
        state=outcome.state,
        lease_owner=None,
        lease_expires_at=None,
        last_error=clip_error(outcome.error),
        delivery_id=delivery_id,
        updated_at=iso(now),
    )
    if outcome.state == QUEUED and outcome.run_after is not None:
        item["run_after"] = iso(outcome.run_after)
    return to_job(item)


def release(
    data: dict[str, Any],
    owner: str,
    job_ids: Sequence[str],
    *,
    run_after: datetime | None,
    uncount: bool,
    now: datetime,
) -> int:
    held = _held(data, owner, job_ids)
    for item in held:
        item.update(
            state=QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            run_after=iso(run_after or now),
            updated_at=iso(now),
        )
        if uncount:
            item["attempts"] = max(0, int(item.get("attempts") or 0) - 1)
    return len(held)


def reclaim(data: dict[str, Any], now: datetime) -> int:
    n = 0
    for item in _items(data):
        if item.get("state") == RUNNING and _is_due(item, now):
            item.update(state=QUEUED, lease_owner=None, lease_expires_at=None, updated_at=iso(now))
            item["last_error"] = item.get("last_error") or "the worker's lease expired before it finished"
            n += 1
    return n


def select(data: dict[str, Any], flt: JobFilter, limit: int) -> list[Job]:
    out = []
    for item in _items(data):
        job = to_job(item)
        if flt.states is not None and job.state not in flt.states:
            continue
        if flt.provider is not None and job.provider != flt.provider:
            continue
        if flt.kind is not None and job.kind != flt.kind:
            continue
        if flt.since is not None and job.created_at < utc(flt.since):
            continue
        if flt.until is not None and job.created_at >= utc(flt.until):
            continue
        out.append(job)
    out.sort(key=lambda j: (j.created_at, j.id))
    return out[:limit]


def stats(data: dict[str, Any], now: datetime) -> QueueStats:
    by_state: dict[str, int] = {}
    by_provider: dict[tuple[str, str], int] = {}
    oldest: datetime | None = None
    expired = due = 0
    for item in _items(data):
        state, provider = str(item.get("state")), str(item.get("provider"))
        by_state[state] = by_state.get(state, 0) + 1
        by_provider[(provider, state)] = by_provider.get((provider, state), 0) + 1
        if not _is_due(item, now):
            continue
        since = _when(item.get("run_after" if state == QUEUED else "lease_expires_at")) or now
        expired += state == RUNNING
        due += 1
        oldest = since if oldest is None else min(oldest, since)
    return QueueStats(by_state, by_provider, oldest, expired, due)


_DEST_TIMES = ("opened_at", "probe_at", "paused_until", "tokens_at", "updated_at", "held_at", "held_until")


def to_destination(provider: str, raw: object) -> Destination:
    names = {f.name for f in fields(Destination)} - {"provider"}
    values: dict[str, Any] = {}
    for key, value in raw.items() if isinstance(raw, dict) else []:
        if key in names:
            values[key] = _when(value) if key in _DEST_TIMES else value
    return Destination(provider=provider, **values)


def from_destination(dest: Destination) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(Destination):
        if f.name == "provider":
            continue
        value = getattr(dest, f.name)
        out[f.name] = iso(value) if f.name in _DEST_TIMES else value
    return out


def purge(data: dict[str, Any], states: Sequence[str], before: datetime, *, dry_run: bool) -> int:
    """Retention (``Store.purge_jobs``): drop the jobs in ``states`` (final states, checked by the caller)
    last changed before ``before``; how many (``dry_run``: how many would be, ``data`` unchanged)."""
    wanted = set(states)

    def old(item: dict[str, Any]) -> bool:
        if item.get("state") not in wanted:
            return False
        when = _when(item.get("updated_at"))
        return when is not None and when < before

    items = data.get("jobs")
    if not isinstance(items, list):
        return 0
    gone = sum(1 for i in items if old(i))
    if gone and not dry_run:
        items[:] = [i for i in items if not old(i)]
    return gone
