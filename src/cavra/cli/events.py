"""``cavra events publish``: publish one event, or a file of many, through the connectors file's routes.

Each event is routed and queued as one outbox job per matched destination in the store; like the release
commands the jobs then run in this process and the command waits for them (``--no-wait``: they stay
queued for ``cavra worker``). Exit codes: 0 every event routed (and, when waited, delivered everywhere), 1
a delivery failed or an event matched no route (it is recorded as ``unrouted``), 2 bad input.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cavra.app import Cavra
from cavra.cli.common import EXIT_FAILED, EXIT_OK, console, err_console, handled, print_json
from cavra.cli.stores import MetadataJsonOption, StoreOption, check_store_options, open_selected
from cavra.config import LoadedConfig, load_config
from cavra.events import load_events_file
from cavra.governance import service as governance
from cavra.service import validate_retries

app = typer.Typer(help="Publish events through the routes of the connectors file.", no_args_is_help=True)

#: events per publish call (one enqueue transaction each; the progress bar advances per chunk)
CHUNK = 50


@app.command("publish")
def publish(
    event_file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="One event (a JSON object) or many: a JSON array of objects or JSON Lines.",
        ),
    ],
    config: Annotated[
        str | None,
        typer.Option("--config", help="Connector config with routes; default $CAVRA_CONNECTOR_CONFIG."),
    ] = None,
    store: StoreOption = None,
    metadata_json: MetadataJsonOption = None,
    retries: Annotated[int, typer.Option("--retries", help="Retries after the first attempt (0-10).")] = 1,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Queue the jobs and return; `cavra worker` delivers them.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the publish answer as JSON.")] = False,
) -> None:
    """Route every event of FILE and deliver it to its destinations (one outbox job per destination)."""
    with handled():
        check_store_options(store, metadata_json)
        events, _many = load_events_file(event_file)  # every event is validated before anything is queued
        validate_retries(retries)
        loaded = load_config(config)
        governance.route_table(loaded)  # no routes: an error before the store is opened
        with open_selected(store, metadata_json, create=True) as svc:
            answer = _publish_all(svc, loaded, events, retries=retries, wait=not no_wait)
    if as_json:
        print_json(answer)
    else:
        console.print(summary_table(answer))
        unrouted = [e["event_id"] for e in answer["events"] if e["status"] == "unrouted"]
        if unrouted:
            console.print(f"unrouted (recorded): {', '.join(unrouted[:10])}", highlight=False)
        if no_wait:
            console.print(f"queued {answer['job_count']} jobs; `cavra worker` delivers them", highlight=False)
    ok = answer["unrouted"] == 0 and (no_wait or answer.get("success") is True)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


def _publish_all(
    svc: Cavra, config: LoadedConfig, events: Sequence[dict[str, Any]], *, retries: int, wait: bool
) -> dict[str, Any]:
    progress = Progress(
        TextColumn("publishing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=len(events) == 1,
    )
    task = progress.add_task("publish", total=len(events))
    answers: list[dict[str, Any]] = []
    # one warning per failed delivery would bury the bar and the summary
    quiet = None if "CAVRA_LOG_LEVEL" in os.environ else logging.getLogger("cavra.delivery")
    level = quiet.level if quiet is not None else logging.NOTSET
    try:
        if quiet is not None:
            quiet.setLevel(logging.ERROR)
        store, runtime = svc.store, svc.delivery  # the chunks share its access tokens and guard
        with progress:
            for start in range(0, len(events), CHUNK):
                chunk = events[start : start + CHUNK]
                answers.append(
                    asyncio.run(
                        governance.publish_events(
                            store, config, chunk, retries=retries, wait=wait, runtime=runtime
                        )
                    )
                )
                progress.update(task, advance=len(chunk))
    finally:
        if quiet is not None:
            quiet.setLevel(level)
    return merge_answers(answers, waited=wait)


def merge_answers(answers: Sequence[dict[str, Any]], *, waited: bool) -> dict[str, Any]:
    """One ``cavra.events.publish.v1`` answer for a file published in chunks."""
    events: list[dict[str, Any]] = []
    for a in answers:
        for item in a["events"]:
            events.append({**item, "index": len(events)})
    merged: dict[str, Any] = {
        "schema_version": answers[0]["schema_version"],
        "status": "completed" if all(a["status"] == "completed" for a in answers) else "accepted",
        "events": events,
        "event_count": len(events),
        "routed": sum(a["routed"] for a in answers),
        "unrouted": sum(a["unrouted"] for a in answers),
        "job_count": sum(a["job_count"] for a in answers),
    }
    grouped = sum(a.get("grouped") or 0 for a in answers)
    if grouped:  # destinations whose event joined a group (docs/routing.md, Grouping)
        merged["grouped"] = grouped
    if merged["status"] == "completed":
        merged["success"] = all(a.get("success") is True for a in answers)
    return merged


_STYLE = {"delivered": "green", "failed": "red", "queued": "yellow", "skipped": "dim"}


def summary_table(answer: dict[str, Any]) -> Table:
    """Per destination: its routes, and how many events it delivered, failed, still has queued."""
    rows: dict[str, dict[str, Any]] = {}
    for item in answer["events"]:
        for d in item["destinations"]:
            row = rows.setdefault(
                d["destination"], {"routes": {}, "delivered": 0, "failed": 0, "queued": 0, "skipped": 0}
            )
            row["routes"][d["route"]] = None
            success = d.get("success")
            row["delivered" if success else "queued" if success is None else "failed"] += 1
        for s in item.get("skipped") or []:
            row = rows.setdefault(
                s["destination"], {"routes": {}, "delivered": 0, "failed": 0, "queued": 0, "skipped": 0}
            )
            row["routes"][s["route"]] = None
            row["skipped"] += 1
    table = Table(
        title=f"{answer['event_count']} events: {answer['routed']} routed, {answer['unrouted']} unrouted, "
        f"{answer['job_count']} jobs",
        title_justify="left",
    )
    table.add_column("destination")
    table.add_column("routes", overflow="fold")
    for col in ("delivered", "failed", "queued", "skipped"):
        table.add_column(col, justify="right")
    for dest, row in rows.items():
        counts = (Text(str(row[k]), style=_STYLE[k] if row[k] else "") for k in _STYLE)
        table.add_row(dest, ", ".join(row["routes"]), *counts)
    return table
