"""Outbox jobs as the store keeps them: the job row, what an enqueue and a completion carry, queue numbers.

A job is one delivery request for one provider (DESIGN principle 4): ``payload`` holds the event and the
options (``retries``, ``timeout_seconds``), never a secret: the worker resolves the target from the connector
config when it runs the job. States::

    queued ──claim──▶ running ──complete──▶ succeeded | failed | dead
      ▲                 │  │
      └──reschedule─────┘  └─ lease expires (worker killed) / release (graceful stop) ─▶ claimable again

``attempts`` counts attempt runs started (a claim starts one). A completion stores the run's delivery record
and the job's new state in one transaction; the store writes the record's ``job`` section itself, so
``final`` is true on exactly one record per job (the run that ended it while holding the lease). Both
backends build rows and sections with the helpers here, so they agree on one definition.

:class:`Destination` is what every worker shares about one provider (circuit breaker, a provider-wide pause
after ``Retry-After``, the rate-limit bucket). The store only offers an atomic read-modify-write of it
(:meth:`cavra.store.Store.update_destination`); the rules live in :mod:`cavra.delivery.guard`.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cavra.store.base import iso

QUEUED, RUNNING, SUCCEEDED, FAILED, DEAD = "queued", "running", "succeeded", "failed", "dead"
JOB_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, DEAD)
FINAL_STATES = (SUCCEEDED, FAILED, DEAD)
#: Longest ``last_error`` kept on a job row (the full text is in the run's delivery record).
ERROR_CHARS = 2000

#: Payload keys the store reads when it appends a job's delivery record.
SUBJECT_KEYS = ("subject_kind", "subject_id", "integration_id")


_sequence = itertools.count(secrets.randbelow(1 << 16))


def new_job_id() -> str:
    """``job_`` + 12 hex digits of epoch milliseconds + a 4-digit per-process counter + 8 random hex digits:
    sortable by creation (and, within one millisecond, by enqueue order in one process)."""
    return f"job_{int(time.time() * 1000):012x}{next(_sequence) & 0xFFFF:04x}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue. ``kind`` is the metadata kind its delivery records are stored under."""

    idempotency_key: str
    kind: str
    provider: str
    payload: Mapping[str, Any]
    run_after: datetime | None = None
    replay_of: str | None = None


@dataclass(frozen=True)
class RecordPut:
    """A plain record written in the same transaction as the jobs that depend on it."""

    kind: str
    record_id: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Job:
    """A job as stored. ``provider`` is the name of its destination (the key of the entry in the
    connectors file; for an entry without a ``provider`` key, the provider's name); the payload's
    ``provider``, when there, is the destination's provider."""

    id: str
    idempotency_key: str
    kind: str
    provider: str
    payload: dict[str, Any]
    state: str
    attempts: int
    run_after: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    delivery_id: str | None
    replay_of: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def event(self) -> dict[str, Any]:
        event = self.payload.get("event")
        return dict(event) if isinstance(event, dict) else {}

    def append_args(self) -> dict[str, Any]:
        """The ``append_delivery`` keywords for this job's records."""
        args: dict[str, Any] = {"metadata_kind": self.kind}
        for key in SUBJECT_KEYS:
            value = self.payload.get(key)
            args[key] = value if isinstance(value, str) else None
        return args

    def to_dict(self) -> dict[str, Any]:
        """The public view (``GET /jobs/{id}``, ``cavra deliveries``): everything but the event body."""
        event = self.event
        return {
            "job_id": self.id,
            "kind": self.kind,
            "provider": self.payload.get("provider") or self.provider,
            "destination": self.provider,
            "state": self.state,
            "attempts": self.attempts,
            "run_after": iso(self.run_after),
            "lease_owner": self.lease_owner,
            "lease_expires_at": iso(self.lease_expires_at),
            "last_error": self.last_error,
            "delivery_id": self.delivery_id,
            "replay_of": self.replay_of,
            "event_id": event.get("event_id"),
            "event_type": event.get("event_type"),
            "integration_id": self.payload.get("integration_id"),
            "subject_kind": self.payload.get("subject_kind"),
            "subject_id": self.payload.get("subject_id"),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True)
class Enqueued:
    """The job for a requested key, and whether this enqueue created it (``False``: it existed) or re-armed
    it (``rearmed``: it existed after a failed run and was queued to run now); ``claimed``: created already
    claimed (see :class:`ClaimNew`)."""

    job: Job
    created: bool
    rearmed: bool = False
    claimed: bool = False


@dataclass(frozen=True)
class ClaimNew:
    """Claim the jobs an enqueue creates, in the enqueue's transaction, for ``owner`` (a face that runs a
    request's jobs at once): each is written running, with its lease and its first attempt counted, as a
    claim right after the enqueue would leave it. Jobs for ``exclude_providers`` (breaker open, paused),
    jobs due later, and existing or re-armed jobs are written or left as a plain enqueue does."""

    owner: str
    lease_seconds: float
    exclude_providers: tuple[str, ...] = ()

    def takes(self, job: NewJob, now: datetime) -> bool:
        return job.provider not in self.exclude_providers and (job.run_after is None or job.run_after <= now)

    def lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_seconds)


def rearmable(job: Job, new: NewJob) -> bool:
    """A repeated request re-arms the existing job (runs it now, same id and history) when its last run
    failed: it is failed or dead, or queued for a retry after a failed run. A job queued and not yet run,
    running, or succeeded is returned as it is (nothing is delivered twice), and so is a job of a
    different request under the same key (the caller answers 409)."""
    same = (
        job.kind == new.kind
        and job.provider == new.provider
        and job.event.get("event_id") == dict(new.payload.get("event") or {}).get("event_id")
    )
    if not same:
        return False
    return job.state in (FAILED, DEAD) or (job.state == QUEUED and job.attempts > 0)


@dataclass(frozen=True)
class JobOutcome:
    """How an attempt run ended: a final state, or ``queued`` again at ``run_after``."""

    state: str
    error: str | None = None
    run_after: datetime | None = None

    def __post_init__(self) -> None:
        if self.state not in (QUEUED, *FINAL_STATES):
            raise ValueError(f"job outcome state must be queued or final, got {self.state!r}")
        if self.state == QUEUED and self.run_after is None:
            raise ValueError("a rescheduled job needs run_after")


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing covers (``None``: any). ``since`` applies to ``created_at``."""

    states: tuple[str, ...] | None = None
    provider: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class QueueStats:
    """Jobs per state (and per provider and state), and the oldest due job's ``run_after``."""

    by_state: dict[str, int] = field(default_factory=dict)
    by_provider: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_due: datetime | None = None
    #: running jobs whose lease has expired (their worker stopped without finishing)
    expired_leases: int = 0
    #: jobs a worker could claim now (queued and due, plus expired leases)
    due: int = 0

    def count(self, state: str) -> int:
        return self.by_state.get(state, 0)


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class Destination:
    """Shared state of one provider; changed only inside :meth:`Store.update_destination`."""

    provider: str
    breaker_state: str = CLOSED
    consecutive_failures: int = 0
    opened_at: datetime | None = None
    #: when an open breaker lets one probe delivery through
    probe_at: datetime | None = None
    #: the job that is probing a half-open breaker
    probe_owner: str | None = None
    #: no delivery to this provider before this time (the provider's ``Retry-After``)
    paused_until: datetime | None = None
    #: rate-limit bucket level (may be negative: reservations) and when it was last refilled
    tokens: float | None = None
    tokens_at: datetime | None = None
    last_error: str | None = None
    updated_at: datetime | None = None
    #: an operator's pause: who paused it, when, and until when (``None``: until resumed); only a
    #: resume (or ``held_until`` passing) ends it, and no Retry-After or breaker change touches it
    held_by: str | None = None
    held_at: datetime | None = None
    held_until: datetime | None = None

    def held(self, now: datetime) -> bool:
        """Paused by an operator now?"""
        return self.held_at is not None and (self.held_until is None or self.held_until > now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "breaker_state": self.breaker_state,
            "consecutive_failures": self.consecutive_failures,
            "opened_at": iso(self.opened_at),
            "probe_at": iso(self.probe_at),
            "paused_until": iso(self.paused_until),
            "last_error": self.last_error,
            "updated_at": iso(self.updated_at),
            "held_by": self.held_by,
            "held_at": iso(self.held_at),
            "held_until": iso(self.held_until),
        }


DESTINATION_FIELDS = (
    "breaker_state",
    "consecutive_failures",
    "opened_at",
    "probe_at",
    "probe_owner",
    "paused_until",
    "tokens",
    "tokens_at",
    "last_error",
    "updated_at",
    "held_by",
    "held_at",
    "held_until",
)


def clip_error(text: str | None) -> str | None:
    return None if text is None else text[:ERROR_CHARS]


def job_section(job: Job, outcome: JobOutcome, held: bool) -> dict[str, Any]:
    """The ``job`` object a completion writes into the run's delivery record.

    ``run`` is the attempt run (1-based); ``final`` is true only on the record of the run that ended the
    job while holding its lease. A worker that lost its lease still stores what it sent (``lease_lost``),
    but leaves the job to the worker that holds it.
    """
    return {
        "job_id": job.id,
        "kind": job.kind,
        "run": job.attempts,
        "state": outcome.state if held else job.state,
        "final": held and outcome.state in FINAL_STATES,
        "next_run_at": iso(outcome.run_after) if held and outcome.state == QUEUED else None,
        "replay_of": job.replay_of,
        "lease_lost": not held,
    }


def payload_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(dict(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
