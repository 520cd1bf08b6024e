"""Outbox statements for the SQL backend: enqueue, claim, lease upkeep, completion, statistics.

Each function runs on a connection inside the caller's transaction (``SqlStore._write``: ``BEGIN IMMEDIATE``
on SQLite, which serialises writers). On PostgreSQL a claim is one statement::

    WITH due AS (SELECT id FROM jobs WHERE <due> ORDER BY run_after, id LIMIT n FOR UPDATE SKIP LOCKED)
    UPDATE jobs SET state='running', lease_owner=..., attempts=attempts+1 FROM due WHERE jobs.id = due.id
    RETURNING jobs.*

so concurrent claimers skip each other's rows instead of waiting, and no row is leased twice. A completion
locks its job rows (in id order, like every multi-row writer) before the chain head, so it cannot deadlock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cavra.store import rawsql
from cavra.store.base import parse_iso, utc
from cavra.store.jobs import (
    DESTINATION_FIELDS,
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
    payload_json,
    rearmable,
)
from cavra.store.schema import destinations, jobs

T = TypeVar("T")


def _insert(backend: str, table: sa.Table) -> Any:
    return (postgresql.insert if backend == "postgresql" else sqlite.insert)(table)


def to_job(m: sa.RowMapping | dict[str, Any]) -> Job:
    try:
        payload = json.loads(m["payload"])
    except ValueError:
        payload = {}
    return Job(
        id=m["id"],
        idempotency_key=m["idempotency_key"],
        kind=m["kind"],
        provider=m["provider"],
        payload=payload if isinstance(payload, dict) else {},
        state=m["state"],
        attempts=int(m["attempts"]),
        run_after=m["run_after"],
        lease_owner=m["lease_owner"],
        lease_expires_at=m["lease_expires_at"],
        last_error=m["last_error"],
        delivery_id=m["delivery_id"],
        replay_of=m["replay_of"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


_JOB_COLUMNS = rawsql.columns(jobs)
_JOB_TYPES = [c.type for c in jobs.c]
assert [c.name for c in jobs.c] == [
    "id",
    "idempotency_key",
    "kind",
    "provider",
    "payload",
    "state",
    "attempts",
    "run_after",
    "lease_owner",
    "lease_expires_at",
    "last_error",
    "delivery_id",
    "replay_of",
    "created_at",
    "updated_at",
]


def _row_job(r: Sequence[Any]) -> Job:
    """:func:`to_job` of a row of ``jobs`` in column order (from a :mod:`rawsql` statement)."""
    return Job(
        id=r[0],
        idempotency_key=r[1],
        kind=r[2],
        provider=r[3],
        payload=_payload(r[4]),
        state=r[5],
        attempts=int(r[6]),
        run_after=r[7],
        lease_owner=r[8],
        lease_expires_at=r[9],
        last_error=r[10],
        delivery_id=r[11],
        replay_of=r[12],
        created_at=r[13],
        updated_at=r[14],
    )


#: what an enqueue writes: every column but a run's outcome (``last_error``, ``delivery_id``)
_ENQUEUE_COLUMNS = [c.name for c in jobs.c if c.name not in ("last_error", "delivery_id")]
_ON_KEY = ' ON CONFLICT ("idempotency_key") DO NOTHING'
_INSERT_JOBS = rawsql.insert(jobs, _ENQUEUE_COLUMNS, _ON_KEY)
_INSERT_JOB_RETURNING = rawsql.insert(jobs, _ENQUEUE_COLUMNS, _ON_KEY + ' RETURNING "id"')
_IDS_BY_KEY = rawsql.Raw(
    'SELECT "idempotency_key", "id" FROM jobs WHERE "idempotency_key" IN (?*)',
    [rawsql.many(jobs.c.idempotency_key.type)],
)


def enqueue(
    conn: sa.Connection, backend: str, new: Sequence[NewJob], now: datetime, claim: ClaimNew | None = None
) -> list[Enqueued]:
    """Insert the jobs (one ``INSERT ... ON CONFLICT DO NOTHING`` executemany), read them back by key in one
    query (a single job: its id comes back from the insert's ``RETURNING``); a key that already held a job
    keeps it (re-armed when its last run failed, one by one). With ``claim``, the jobs it takes are inserted
    claimed (running, leased, one attempt)."""
    if not new:
        return []
    rows: list[tuple[Any, ...]] = []
    for job in new:
        taken = claim is not None and claim.takes(job, now)
        rows.append(
            (
                new_job_id(),
                job.idempotency_key,
                job.kind,
                job.provider,
                payload_json(job.payload),
                RUNNING if taken else QUEUED,
                1 if taken else 0,
                job.run_after or now,
                claim.owner if claim is not None and taken else None,
                claim.lease_until(now) if claim is not None and taken else None,
                job.replay_of,
                now,
                now,
            )
        )
    found: dict[str, str] = {}
    if len(rows) == 1:
        got = _INSERT_JOB_RETURNING.rows(conn, rows[0])
        if got:
            found[new[0].idempotency_key] = got[0][0]
    else:
        _INSERT_JOBS.executemany(conn, rows)
        keys = sorted({job.idempotency_key for job in new})
        for start in range(0, len(keys), 500):
            found.update((str(k), str(i)) for k, i in _IDS_BY_KEY.rows(conn, [keys[start : start + 500]]))
    out: list[Enqueued] = []
    for job, row in zip(new, rows, strict=True):
        if found.get(job.idempotency_key) == row[0]:  # inserted now: the job is what was written
            out.append(Enqueued(_written(row), created=True, claimed=row[5] == RUNNING))
            continue
        old = to_job(_by_key(conn, job.idempotency_key))
        rearmed = rearmable(old, job) and _rearm(conn, old, now)
        out.append(Enqueued(to_job(_by_key(conn, job.idempotency_key)) if rearmed else old, False, rearmed))
    return out


def _written(row: tuple[Any, ...]) -> Job:
    """The job as a row just inserted (``_ENQUEUE_COLUMNS``) reads back (times as aware UTC, payload parsed
    from its JSON; no run's outcome yet)."""
    expires = utc(row[9]) if row[9] else None
    return _row_job((*row[:7], utc(row[7]), row[8], expires, None, None, row[10], utc(row[11]), utc(row[12])))


def _by_key(conn: sa.Connection, key: str) -> sa.RowMapping:
    return conn.execute(sa.select(jobs).where(jobs.c.idempotency_key == key)).mappings().one()


def _rearm(conn: sa.Connection, old: Job, now: datetime) -> bool:
    """Queue a job whose last run failed to run now (unless another writer changed it meanwhile)."""
    unchanged = sa.and_(jobs.c.id == old.id, jobs.c.state == old.state, jobs.c.attempts == old.attempts)
    values = {
        "state": QUEUED,
        "run_after": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": now,
    }
    return bool(conn.execute(sa.update(jobs).where(unchanged).values(**values)).rowcount)


_SET_CLAIMED = (
    'SET "state" = ?, "lease_owner" = ?, "lease_expires_at" = ?, "attempts" = "attempts" + 1, '
    '"updated_at" = ?'
)
_SET_CLAIMED_PG = _SET_CLAIMED.replace('= "attempts" + 1', "= jobs.attempts + 1")
_CLAIM_SET_TYPES = [
    jobs.c.state.type,
    jobs.c.lease_owner.type,
    jobs.c.lease_expires_at.type,
    jobs.c.updated_at.type,
]
assert QUEUED == "queued"
_CLAIMS: dict[tuple[str, bool, bool, bool], rawsql.Raw] = {}


def _claim_statement(backend: str, exclude: bool, providers: bool, job_ids: bool) -> rawsql.Raw:
    """The claim of one backend with the given filters (built once each; the SQL text is made of this
    module's constants and the schema's names only).

    PostgreSQL: the due jobs are picked, locked and skipped when locked in a CTE, and updated in one
    statement (the due condition again: a row may have changed before it was locked). SQLite, under the
    database write lock (``BEGIN IMMEDIATE``): the queued and the expired jobs are picked apart, each by its
    own index range in run_after order and LIMITed (so a claim reads a few index entries; one query with
    the OR and ORDER BY (run_after, id) sorted every due job first: 23 ms a claim with 20,000 queued jobs,
    whatever the limit), merged in (run_after, id) order, and updated by primary key (no second due
    condition: it would lead SQLite's planner to the OR of the due ranges instead of the primary key)."""
    key = (backend, exclude, providers, job_ids)
    got = _CLAIMS.get(key)
    if got is not None:
        return got
    extra, extra_types = "", []
    if exclude:
        extra += ' AND "provider" NOT IN (?*)'
        extra_types.append(rawsql.many(jobs.c.provider.type))
    if providers:
        extra += ' AND "provider" IN (?*)'
        extra_types.append(rawsql.many(jobs.c.provider.type))
    if job_ids:
        extra += ' AND "id" IN (?*)'
        extra_types.append(rawsql.many(jobs.c.id.type))
    run_after, lease = jobs.c.run_after.type, jobs.c.lease_expires_at.type
    limit = sa.Integer()
    if backend == "postgresql":
        due = (
            '(("state" = \'queued\' AND "run_after" <= ?) '
            'OR ("state" = \'running\' AND "lease_expires_at" <= ?))'
        )
        jdue = (
            "((jobs.state = 'queued' AND jobs.run_after <= ?) "
            "OR (jobs.state = 'running' AND jobs.lease_expires_at <= ?))"
        )
        sql = (
            f'WITH due AS (SELECT "id" FROM jobs WHERE {due}{extra} ORDER BY "run_after", "id" LIMIT ? '  # noqa: S608 - constants and schema names
            f"FOR UPDATE SKIP LOCKED) UPDATE jobs {_SET_CLAIMED_PG} "
            f"FROM due WHERE jobs.id = due.id AND {jdue} RETURNING {rawsql.columns(jobs, prefix='jobs')}"
        )
        types = [run_after, lease, *extra_types, limit, *_CLAIM_SET_TYPES, run_after, lease]
    else:
        queued = (
            f'SELECT "id", "run_after" FROM jobs WHERE "state" = \'queued\' AND "run_after" <= ?{extra} '  # noqa: S608 - constants and schema names
            'ORDER BY "run_after" LIMIT ?'
        )
        expired = (
            'SELECT "id", "run_after" FROM jobs WHERE "state" = \'running\' '  # noqa: S608 - constants and schema names
            f'AND "lease_expires_at" <= ?{extra} ORDER BY "run_after" LIMIT ?'
        )
        sql = (
            f'UPDATE jobs {_SET_CLAIMED} WHERE "id" IN (SELECT "id" FROM '  # noqa: S608 - constants and schema names
            f"(SELECT * FROM ({queued}) UNION ALL SELECT * FROM ({expired})) "
            f'ORDER BY "run_after", "id" LIMIT ?) RETURNING {_JOB_COLUMNS}'
        )
        types = [*_CLAIM_SET_TYPES, run_after, *extra_types, limit, lease, *extra_types, limit, limit]
    got = _CLAIMS[key] = rawsql.Raw(sql, types, result=_JOB_TYPES)
    return got


def claim(
    conn: sa.Connection,
    backend: str,
    owner: str,
    *,
    limit: int,
    lease_seconds: float,
    exclude: Sequence[str],
    job_ids: Sequence[str] | None,
    now: datetime,
    providers: Sequence[str] | None = None,
) -> list[Job]:
    if limit <= 0:
        return []
    if providers is not None and not providers:
        return []
    if job_ids is not None and not job_ids:
        return []
    extra: list[Any] = []
    if exclude:
        extra.append(list(exclude))
    if providers is not None:
        extra.append(list(providers))
    if job_ids is not None:
        extra.append(list(job_ids))
    stmt = _claim_statement(backend, bool(exclude), providers is not None, job_ids is not None)
    claimed_set = [RUNNING, owner, now + timedelta(seconds=lease_seconds), now]
    if backend == "postgresql":
        params = [now, now, *extra, limit, *claimed_set, now, now]
    else:
        params = [*claimed_set, now, *extra, limit, now, *extra, limit, limit]
    claimed = [_row_job(r) for r in stmt.rows(conn, params)]
    return sorted(claimed, key=lambda j: (j.run_after, j.id))


def lock_in_order(conn: sa.Connection, job_ids: Sequence[str]) -> None:
    """Lock job rows in id order (PostgreSQL): multi-row writers never wait on each other in a cycle."""
    if job_ids and conn.dialect.name == "postgresql":
        stmt = sa.select(jobs.c.id).where(jobs.c.id.in_(list(job_ids))).order_by(jobs.c.id).with_for_update()
        conn.execute(stmt).all()


def extend(
    conn: sa.Connection, owner: str, job_ids: Sequence[str], lease_seconds: float, now: datetime
) -> list[str]:
    if not job_ids:
        return []
    lock_in_order(conn, job_ids)
    held = sa.and_(jobs.c.id.in_(list(job_ids)), jobs.c.state == RUNNING, jobs.c.lease_owner == owner)
    conn.execute(sa.update(jobs).where(held).values(lease_expires_at=now + timedelta(seconds=lease_seconds)))
    return list(conn.execute(sa.select(jobs.c.id).where(held)).scalars())


def get(conn: sa.Connection, job_id: str) -> Job | None:
    row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return None if row is None else to_job(row)


_LOCK_JOBS = {
    backend: rawsql.Raw(
        f'SELECT {_JOB_COLUMNS} FROM jobs WHERE "id" IN (?*) ORDER BY "id"{lock}',  # noqa: S608 - constants and schema names
        [rawsql.many(jobs.c.id.type)],
        result=_JOB_TYPES,
    )
    for backend, lock in (("sqlite", ""), ("postgresql", " FOR UPDATE"))
}


def lock_jobs(conn: sa.Connection, job_ids: Sequence[str]) -> dict[str, Job]:
    """Read job rows, locked in id order on PostgreSQL (``FOR UPDATE``; SQLite holds the database lock)."""
    if not job_ids:
        return {}
    stmt = _LOCK_JOBS["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    return {r[0]: _row_job(r) for r in stmt.rows(conn, [sorted(set(job_ids))])}


def finished(job: Job, outcome: JobOutcome, delivery_id: str, now: datetime) -> Job:
    """The job as :func:`write_finished` stores it after ``outcome`` (its lease released)."""
    run_after = (
        outcome.run_after if outcome.state == QUEUED and outcome.run_after is not None else job.run_after
    )
    return replace(
        job,
        state=outcome.state,
        lease_owner=None,
        lease_expires_at=None,
        last_error=clip_error(outcome.error),
        delivery_id=delivery_id,
        run_after=utc(run_after),
        updated_at=now,
    )


_FINISH = rawsql.Raw(
    "UPDATE jobs SET state = ?, lease_owner = NULL, lease_expires_at = NULL, last_error = ?, "
    "delivery_id = ?, run_after = ?, updated_at = ? WHERE id = ? AND state = 'running' AND lease_owner = ?",
    [
        jobs.c.state.type,
        jobs.c.last_error.type,
        jobs.c.delivery_id.type,
        jobs.c.run_after.type,
        jobs.c.updated_at.type,
        jobs.c.id.type,
        jobs.c.lease_owner.type,
    ],
)
assert RUNNING == "running"


def write_finished(conn: sa.Connection, owner: str, done: Sequence[Job]) -> None:
    """Store finished jobs (from :func:`finished`) that ``owner`` held when they were read and locked."""
    rows = [(j.state, j.last_error, j.delivery_id, j.run_after, j.updated_at, j.id, owner) for j in done]
    _FINISH.executemany(conn, rows)


def release(
    conn: sa.Connection,
    owner: str,
    job_ids: Sequence[str],
    *,
    run_after: datetime | None,
    uncount: bool,
    now: datetime,
) -> int:
    if not job_ids:
        return 0
    values: dict[str, Any] = {
        "state": QUEUED,
        "lease_owner": None,
        "lease_expires_at": None,
        "run_after": run_after or now,
        "updated_at": now,
    }
    if uncount:
        values["attempts"] = sa.case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0)
    lock_in_order(conn, job_ids)
    held = sa.and_(jobs.c.id.in_(list(job_ids)), jobs.c.state == RUNNING, jobs.c.lease_owner == owner)
    return int(conn.execute(sa.update(jobs).where(held).values(**values)).rowcount)


def reclaim(conn: sa.Connection, now: datetime) -> int:
    expired = sa.and_(jobs.c.state == RUNNING, jobs.c.lease_expires_at <= now)
    values = {
        "state": QUEUED,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": sa.func.coalesce(jobs.c.last_error, "the worker's lease expired before it finished"),
        "updated_at": now,
    }
    return int(conn.execute(sa.update(jobs).where(expired).values(**values)).rowcount)


def select_jobs(flt: JobFilter, limit: int) -> sa.Select[Any]:
    stmt = sa.select(jobs)
    if flt.states is not None:
        stmt = stmt.where(jobs.c.state.in_(list(flt.states)))
    if flt.provider is not None:
        stmt = stmt.where(jobs.c.provider == flt.provider)
    if flt.kind is not None:
        stmt = stmt.where(jobs.c.kind == flt.kind)
    if flt.since is not None:
        stmt = stmt.where(jobs.c.created_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(jobs.c.created_at < flt.until)
    return stmt.order_by(jobs.c.created_at, jobs.c.id).limit(limit)


def stats(conn: sa.Connection, now: datetime) -> QueueStats:
    by_provider: dict[tuple[str, str], int] = {}
    by_state: dict[str, int] = {}
    grouped = sa.select(jobs.c.provider, jobs.c.state, sa.func.count()).group_by(
        jobs.c.provider, jobs.c.state
    )
    for provider, state, n in conn.execute(grouped).all():
        by_provider[(str(provider), str(state))] = int(n)
        by_state[str(state)] = by_state.get(str(state), 0) + int(n)
    due_q = sa.select(sa.func.count(), sa.func.min(jobs.c.run_after)).where(
        jobs.c.state == QUEUED, jobs.c.run_after <= now
    )
    due_count, due_queued = conn.execute(due_q).one()
    expired_q = sa.select(sa.func.count(), sa.func.min(jobs.c.lease_expires_at)).where(
        jobs.c.state == RUNNING, jobs.c.lease_expires_at <= now
    )
    expired, oldest_expired = conn.execute(expired_q).one()
    candidates = [t for t in (due_queued, oldest_expired) if t is not None]
    oldest = min(_aware(t) for t in candidates) if candidates else None
    return QueueStats(
        by_state, by_provider, oldest, int(expired or 0), int(due_count or 0) + int(expired or 0)
    )


def _aware(value: Any) -> datetime:
    return utc(value) if isinstance(value, datetime) else parse_iso(str(value))


def update_destination(
    conn: sa.Connection,
    backend: str,
    provider: str,
    change: Callable[[Destination, datetime], T],
    now: datetime,
) -> T:
    def locked() -> sa.RowMapping | None:
        stmt = sa.select(destinations).where(destinations.c.provider == provider).with_for_update()
        return conn.execute(stmt).mappings().first()

    row = locked()
    if row is None:
        conn.execute(
            _insert(backend, destinations)
            .values(provider=provider, breaker_state="closed", consecutive_failures=0, updated_at=now)
            .on_conflict_do_nothing(index_elements=[destinations.c.provider])
        )
        row = locked()
        assert row is not None
    dest = to_destination(row)
    result = change(dest, now)
    dest.updated_at = now
    conn.execute(
        sa.update(destinations)
        .where(destinations.c.provider == provider)
        .values(**{name: getattr(dest, name) for name in DESTINATION_FIELDS})
    )
    return result


def to_destination(m: sa.RowMapping) -> Destination:
    names = {f.name for f in fields(Destination)}
    return Destination(**{k: m[k] for k in m.keys() if k in names})  # noqa: SIM118 - RowMapping


# --- retention (Store.purge_jobs) ------------------------------------------------------------------------
#: jobs deleted per write transaction: SQLite's write lock is held for one chunk at a time
PURGE_CHUNK = 5000

_PURGE_MATCH = '"state" = ? AND "updated_at" < ?'
_PURGE_TYPES = [jobs.c.state.type, jobs.c.updated_at.type]
#: how many jobs of a state match, and the latest ``run_after`` among them (the bound of the deletes below)
_PURGE_COUNT = rawsql.Raw(
    f'SELECT count(*), max("run_after") FROM jobs WHERE {_PURGE_MATCH}',  # noqa: S608 - constants and schema names
    _PURGE_TYPES,
    result=[sa.Integer(), jobs.c.run_after.type],
)
_PICK = (
    'SELECT "id" FROM jobs WHERE "state" = ? AND "run_after" <= ? AND "updated_at" < ? '
    'ORDER BY "run_after" LIMIT ?'
)
_PICK_TYPES = [jobs.c.state.type, jobs.c.run_after.type, jobs.c.updated_at.type, sa.Integer()]
_PURGE_CHUNKS = {
    # SQLite: under the write lock nothing changes between the pick and the delete
    "sqlite": rawsql.Raw(f'DELETE FROM jobs WHERE "id" IN ({_PICK})', _PICK_TYPES),  # noqa: S608 - constants and schema names
    # PostgreSQL: a job re-armed by a repeated request after the pick is re-checked (and kept)
    "postgresql": rawsql.Raw(
        f'DELETE FROM jobs WHERE "id" IN ({_PICK}) AND {_PURGE_MATCH}',  # noqa: S608 - constants and schema names
        [*_PICK_TYPES, *_PURGE_TYPES],
    ),
}


def purge_count(conn: sa.Connection, state: str, before: datetime) -> tuple[int, datetime | None]:
    """(jobs of ``state`` last changed before ``before``, the latest ``run_after`` among them): one read of
    the state's range of ``ix_jobs_state_run_after``, outside the write lock."""
    ((n, last),) = _PURGE_COUNT.rows(conn, [state, before])
    return int(n or 0), None if last is None else _aware(last)


def purge_chunk(conn: sa.Connection, state: str, before: datetime, last_run_after: datetime) -> int:
    """Delete up to :data:`PURGE_CHUNK` jobs of ``state`` last changed before ``before``, oldest
    ``run_after`` first; the number deleted.

    The ids are picked by ``ix_jobs_state_run_after`` (``state`` = and ``run_after`` <= the latest
    ``run_after`` :func:`purge_count` saw), so a chunk reads about the rows it deletes, not every finished
    job kept. The bound only narrows (state and ``updated_at`` are matched all the same), and drops no job
    that matched at the count; a job that finishes after the count has ``updated_at`` = now, not before a
    ``before`` in the past (one after it, if any, is left to the next purge)."""
    stmt = _PURGE_CHUNKS["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    params: list[Any] = [state, last_run_after, before, PURGE_CHUNK]
    if conn.dialect.name == "postgresql":
        params += [state, before]
    return stmt.run(conn, params)
