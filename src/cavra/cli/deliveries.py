"""``cavra deliveries``: the outbox seen from the command line: list jobs, replay what was not delivered."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from cavra.cli.common import console, handled, print_json
from cavra.cli.stores import MetadataJsonOption, StoreOption, open_selected
from cavra.store.jobs import JOB_STATES, JobFilter

app = typer.Typer(
    help="Outbox jobs: list them, replay failed and dead-letter deliveries.", no_args_is_help=True
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
    from cavra.delivery.replay import replay as do_replay
    from cavra.delivery.replay import states_for

    with handled():
        states = states_for(failed=failed, dead=dead, include_succeeded=include_succeeded)
        with open_selected(store, metadata_json) as opened:
            items = do_replay(
                opened, states=states, provider=provider, since=since, limit=limit, dry_run=dry_run
            )
    if as_json:
        print_json({"dry_run": dry_run, "count": len(items), "items": [i.to_dict() for i in items]})
        return
    queued = sum(1 for i in items if i.created)
    table = Table("job", "provider", "state", "event", "replay job", title=None, show_lines=False)
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
        with open_selected(store, metadata_json) as opened:
            found = opened.list_jobs(JobFilter(states=states, provider=provider, since=since), limit=limit)
            stats = opened.queue_stats()
    if as_json:
        print_json({"count": len(found), "items": [j.to_dict() for j in found]})
        return
    table = Table("job", "provider", "state", "runs", "next run", "last error")
    for j in found:
        d = j.to_dict()
        error = (j.last_error or "")[:80]
        table.add_row(j.id, j.provider, j.state, str(j.attempts), str(d["run_after"]), error)
    console.print(table)
    summary = ", ".join(f"{stats.count(s)} {s}" for s in JOB_STATES)
    console.print(f"queue: {summary}; {stats.due} due now", highlight=False)
