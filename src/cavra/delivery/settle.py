"""Writing a run's completion when the store fails, and what a job's recorded runs say.

A completion (the run's record and the job's new state, :class:`cavra.delivery.completer.Completer`) can
fail in two ways, and they are handled apart:

* **for a while** (:class:`~cavra.errors.StoreError`: a lost connection, a lock or statement timeout, a
  deadlock): the completion is written again after :data:`COMPLETION_RETRY_DELAYS` while the worker keeps
  the job's lease, so a store that comes back in time costs no second send;
* **for good** (:class:`~cavra.errors.UnstorableError`: PostgreSQL refuses a NUL character, text that is
  not valid Unicode, a value too large; or any error of the record itself): writing it again would fail
  again, and leaving the job ``running`` made every lease expiry send the event once more. The job is
  ended ``failed`` with the reason (redacted) in ``last_error``, and a cleaned copy of the record is
  stored in its place (:func:`refused_record`: NUL and lone surrogates replaced by U+FFFD, texts cut,
  the store's reason in ``record_refused``), so the run still leaves evidence and the chain stays whole.

Runs are counted when they start (a claim counts one), so :func:`past_max_runs` can bound the sends of a
job whose runs never complete at all (a worker killed by every run, a store that fails longer than the
retries): the claim that would start run ``max_runs + 1`` ends the job as a dead letter instead of sending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from cavra.delivery.completer import Completer, Done
from cavra.errors import CavraError, StoreError, UnstorableError
from cavra.redaction import Redactor
from cavra.storable import clean_text, storable_copy
from cavra.store import Store
from cavra.store.base import CompletionNote
from cavra.store.jobs import DEAD, FAILED, Job, JobOutcome

log = logging.getLogger("cavra.worker")

#: seconds between tries of a completion the store failed for a while (about 16 s in all)
COMPLETION_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
#: longest text kept in a record stored in place of one the store refused
REFUSED_TEXT_CHARS = 500
#: most items kept of any list of such a record (attempts: at most 11)
REFUSED_LIST_ITEMS = 20
#: longest reason kept
REASON_CHARS = 300


def is_permanent(exc: Exception) -> bool:
    """Writing the same completion again would fail again: the store refused the data
    (UnstorableError), or the record itself is wrong (any error but a StoreError)."""
    return isinstance(exc, UnstorableError) or not isinstance(exc, StoreError)


def reason_of(exc: Exception, redactor: Redactor) -> str:
    """One redacted line, no longer than :data:`REASON_CHARS`, saying why the store refused."""
    if isinstance(exc, UnstorableError):
        text = exc.reason
    else:
        text = str(exc) if isinstance(exc, CavraError) else f"{type(exc).__name__}: {exc}"
    line = " ".join(text.split())
    return clean_text(redactor.scrub(line), REASON_CHARS)


def refused_record(record: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """What is stored when the store refused ``record``: a copy every store can keep (NUL and lone
    surrogates replaced by U+FFFD, texts cut to :data:`REFUSED_TEXT_CHARS`), with ``record_refused``."""
    kept = storable_copy(dict(record), text_limit=REFUSED_TEXT_CHARS, list_limit=REFUSED_LIST_ITEMS)
    assert isinstance(kept, dict)
    kept["record_refused"] = f"the record as built could not be stored ({reason}); this copy is cleaned"
    return kept


Retrying = Callable[[Exception, float], None]


async def write_completion(
    completer: Completer,
    job: Job,
    record: dict[str, Any],
    outcome: JobOutcome,
    note: CompletionNote | None,
    *,
    redactor: Redactor,
    retrying: Retrying,
    delays: tuple[float, ...] = COMPLETION_RETRY_DELAYS,
) -> tuple[Done, JobOutcome]:
    """Store the run's completion; the answer and the outcome that was stored. A completion the store
    refuses for good is stored as :func:`refused_record` with the job ended ``failed``; one that fails for
    a while is tried again (``retrying(error, delay)`` is told first). Raises when neither can be stored."""
    try:
        return await _with_retries(completer, job, record, outcome, note, retrying, delays), outcome
    except Exception as exc:
        if not is_permanent(exc):
            raise
        reason = reason_of(exc, redactor)
    log.error(
        "job %s: the store refused its record (%s); the job is ended so it is not sent again", job.id, reason
    )
    ended = JobOutcome(
        FAILED,
        f"the run's delivery record could not be stored ({reason}); a cleaned copy is stored and the job "
        "is ended, not run again",
    )
    kept = refused_record(record, reason)
    return await _with_retries(completer, job, kept, ended, note, retrying, delays), ended


async def _with_retries(
    completer: Completer,
    job: Job,
    record: dict[str, Any],
    outcome: JobOutcome,
    note: CompletionNote | None,
    retrying: Retrying,
    delays: tuple[float, ...],
) -> Done:
    waits = iter(delays)
    while True:
        try:
            return await completer.complete(job.id, record, outcome, note)
        except Exception as exc:
            delay = next(waits, None)
            if is_permanent(exc) or delay is None:
                raise
            retrying(exc, delay)
            await asyncio.sleep(delay)


# --- what a job's recorded runs say ---------------------------------------------------------------------
def past_max_runs(store: Store, job: Job, max_runs: int) -> bool:
    """The run just claimed is past ``max_runs`` and must not be sent: the job's earlier runs did not end it
    (each claim counts a run, so runs that never completed count too). The first run after a repeated
    request re-armed an ended job is allowed (its latest record ended the job one run before), and so is a
    run whose latest record cannot be read now (its completion still bounds it)."""
    if job.attempts <= max_runs:
        return False
    if job.delivery_id is None:
        return True
    try:
        doc = store.get_delivery(job.delivery_id)
    except CavraError:
        return False
    section = (doc or {}).get("job")
    if not isinstance(section, dict):
        return True
    return not (bool(section.get("final")) and section.get("run") == job.attempts - 1)


def past_max_runs_outcome(job: Job, max_runs: int) -> JobOutcome:
    return JobOutcome(
        DEAD,
        f"dead letter: {job.attempts - 1} attempt runs started (max {max_runs}) and none ended the job "
        "(the worker stopped, or the store failed, before each run's record was stored); not sent again",
    )


def resumed_since(store: Store, job: Job) -> float | None:
    """When the delivery this run continues began (epoch seconds), or ``None`` when the run starts a new one.

    A run continues the delivery of the runs before it, since the last run that *ended* the job: what one of
    them created (an AWX job whose launch answer was lost) may exist, and the connector looks for it from
    then. A repeated request re-arms a finished job: its next run is a new delivery (as a replay is), so an
    earlier delivery's AWX job is not adopted again. Read from the job's latest record (``job.run``,
    ``job.final``; the delivery's ``started_at``):

    * no record yet: every run so far died unrecorded: since the job was created;
    * the latest record ended the job and this is the next run: a new delivery (``None``);
    * it ended the job and a run since died unrecorded: since that record;
    * it did not end the job (rescheduled, lease lost): since that run began.
    """
    if job.delivery_id is None:
        return job.created_at.timestamp()
    try:
        doc = store.get_delivery(job.delivery_id)
    except CavraError:
        return job.created_at.timestamp()  # cannot tell: look back to the start (never launch blindly)
    section = (doc or {}).get("job")
    if not isinstance(doc, dict) or not isinstance(section, dict):
        return job.created_at.timestamp()
    run = section.get("run")
    if section.get("final"):
        if isinstance(run, int) and job.attempts <= run + 1:
            return None
        return _epoch(doc.get("created_at")) or job.created_at.timestamp()
    starts = [_epoch(d.get("started_at")) for d in doc.get("deliveries") or [] if isinstance(d, dict)]
    return (
        min((s for s in starts if s is not None), default=None)
        or _epoch(doc.get("created_at"))
        or (job.created_at.timestamp())
    )


def _epoch(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
