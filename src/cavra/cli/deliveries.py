"""``cavra deliveries``: the outbox seen from the command line: list jobs, replay what was not delivered,
purge finished jobs past their retention."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from cavra.app import FINAL_STATES, JOB_STATES, SUCCEEDED, JobFilter, check_purge_states, iso, replay_states
from cavra.cli.common import console, handled, print_json
from cavra.cli.stores import MetadataJsonOption, StoreOption, open_selected
from cavra.cli.tables import Col, Grid

app = typer.Typer(
    help="Outbox jobs: list them, replay failed and dead-letter deliveries, purge old finished jobs.",
    no_args_is_help=True,
)

Provider = Annotated[str | None, typer.Option("--provider", help="Only jobs for this provider.")]
Since = Annotated[
    datetime | None,
    typer.Option("--since", help="Only jobs queued at or after this time (UTC if no offset)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Limit = Annotated[int, typer.Option("--limit", help="At most this many jobs (1-10000).")]


@app.command("replay")
def replay(
    store: StoreOption = None,
    metadata_json: MetadataJsonOption = None,
    provider: Provider = None,
    since: Since = None,
    failed: Annotated[bool, typer.Option("--failed", help="Jobs whose delivery was rejected.")] = False,
    dead: Annotated[bool, typer.Option("--dead", help="Dead letters (retries exhausted).")] = False,
    include_succeeded: Annotated[
        bool, typer.Option("--all", help="Also jobs that were delivered (e.g. to refill a SIEM).")
    ] = False,
    limit: Limit = 1000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be replayed; change nothing.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Queue finished jobs again (default: --failed and --dead), each as a new job linked to its last record.

    A job replayed before is not queued twice; workers (cavra worker, or cavra serve) deliver the replays.
    """
    with handled():
        states = replay_states(failed=failed, dead=dead, include_succeeded=include_succeeded)
        with open_selected(store, metadata_json) as svc:
            items = svc.replay(states=states, provider=provider, since=since, limit=limit, dry_run=dry_run)
    if as_json:
        print_json({"dry_run": dry_run, "count": len(items), "items": [i.to_dict() for i in items]})
        return
    queued = sum(1 for i in items if i.created)
    table = Grid(["job", "provider", "state", "event", "replay job"])
    for item in items:
        d = item.to_dict()
        shown = (
            "(dry run)" if dry_run else f"{d['replay_job_id']}{' (already)' if d['already_replayed'] else ''}"
        )
        table.add_row(d["job_id"], d["provider"], d["state"], str(d["event_id"]), shown)
    if items:
        console.print(table)
    verb = "would replay" if dry_run else "queued"
    console.print(
        f"{verb} {len(items) if dry_run else queued} of {len(items)} matching jobs ({', '.join(states)})",
        highlight=False,
    )


@app.command("jobs")
def jobs(
    store: StoreOption = None,
    metadata_json: MetadataJsonOption = None,
    state: Annotated[
        str | None, typer.Option("--state", help=f"One of: {', '.join(JOB_STATES)} (comma-separated).")
    ] = None,
    provider: Provider = None,
    since: Since = None,
    limit: Limit = 100,
    as_json: AsJson = False,
) -> None:
    """List outbox jobs, oldest first, with their state, runs and last error."""
    from cavra.errors import InputError

    with handled():
        states = None
        if state:
            states = tuple(s.strip() for s in state.split(",") if s.strip())
            bad = [s for s in states if s not in JOB_STATES]
            if bad:
                raise InputError(f"--state: {bad[0]!r} is not one of {', '.join(JOB_STATES)}")
        if not 1 <= limit <= 10_000:
            raise InputError(f"--limit: must be between 1 and 10000, got {limit}")
        with open_selected(store, metadata_json) as svc:
            found, stats = svc.list_jobs(
                JobFilter(states=states, provider=provider, since=since), limit=limit
            )
    if as_json:
        print_json({"count": len(found), "items": [j.to_dict() for j in found]})
        return
    table = Grid(
        [
            Col("job"),
            Col("provider"),
            Col("state"),
            Col("runs", "num", "right"),
            Col("next run"),
            Col("last error", "text"),
        ]
    )
    for j in found:
        d = j.to_dict()
        error = (j.last_error or "")[:200]
        table.add_row(j.id, j.provider, j.state, str(j.attempts), str(d["run_after"]), error)
    console.print(table)
    summary = ", ".join(f"{stats.count(s)} {s}" for s in JOB_STATES)
    console.print(f"queue: {summary}; {stats.due} due now", highlight=False)


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def older_than_cutoff(text: str, now: datetime) -> datetime:
    """``now`` minus ``--older-than`` (``30d``, ``12h``, ``90m``, ``3600s``) of ``cavra deliveries purge``."""
    from cavra.errors import InputError

    m = re.fullmatch(r"\s*(\d{1,9})\s*([dhms])\s*", text)
    if m is None:
        raise InputError(f"--older-than: {text!r} is not an age like 30d, 12h, 90m or 3600s")
    try:
        return now - timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    except OverflowError:
        raise InputError(f"--older-than: {text!r} reaches before year 1") from None


@app.command("purge")
def purge(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Purge jobs finished more than AGE ago: <n>d, <n>h, <n>m or <n>s (e.g. 30d).",
        ),
    ],
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help=f"Final state to purge, repeatable: {', '.join(FINAL_STATES)} (default: succeeded only).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be purged; change nothing.")
    ] = False,
    as_json: AsJson = False,
    store: StoreOption = None,
    metadata_json: MetadataJsonOption = None,
) -> None:
    """Delete finished outbox jobs older than the retention; their delivery records (the chain) stay.

    Failed and dead jobs are what `deliveries replay` works on, so they are purged only when asked for
    (--state failed --state dead). A purged job's idempotency key is free again: a repeated request after
    the purge delivers again (the retention is the idempotency window).
    """
    from cavra.errors import InputError

    with handled():
        before = older_than_cutoff(older_than, datetime.now(UTC))
        given = [s.strip() for value in state or [] for s in value.split(",") if s.strip()]
        bad = [s for s in given if s not in FINAL_STATES]
        if bad:
            raise InputError(
                f"--state: {bad[0]!r} is not one of {', '.join(FINAL_STATES)} (finished jobs only)"
            )
        states = check_purge_states(given or [SUCCEEDED])
        with open_selected(store, metadata_json) as svc:
            purged = svc.purge_jobs(states, finished_before=before, dry_run=dry_run)
    if as_json:
        print_json(
            {"dry_run": dry_run, "states": list(states), "finished_before": iso(before), "purged": purged}
        )
        return
    verb = "would purge" if dry_run else "purged"
    noun = "job" if purged == 1 else "jobs"
    console.print(
        f"{verb} {purged} {noun} ({', '.join(states)}) finished before {iso(before)}", highlight=False
    )
