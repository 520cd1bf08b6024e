"""``cavra evidence``: build the SIEM event of a session's decisions; verify the stored evidence chain."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cavra.cli.common import EXIT_FAILED, EXIT_OK, console, err_console, handled, print_json
from cavra.cli.stores import MetadataJsonOption, StoreOption, open_selected
from cavra.errors import InputError
from cavra.governance import service as governance
from cavra.governance.events import evidence_bundle_event

app = typer.Typer(help="Build evidence events and verify stored delivery evidence.", no_args_is_help=True)


def write_json_file(path: Path, data: object) -> None:
    """Write JSON atomically (a temporary file renamed over the target); errors name the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"--output {path}: cannot write ({exc.strerror})") from None


@app.command("build-siem-event")
def build_siem_event(
    session_file: Annotated[
        str, typer.Argument(metavar="SESSION.json", help="A session's decisions (cavra.evidence_bundle.v1).")
    ],
    output: Annotated[
        str | None,
        typer.Option("--output", metavar="FILE", help="Write the event here (e.g. siem-event.json)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the event as JSON.")] = False,
) -> None:
    """Build the cavra.evidence_bundle SIEM event (counts, max severity) from a session's decisions."""
    with handled():
        bundle = governance.load_record_file(session_file, "evidence_bundle")
        event = evidence_bundle_event(bundle)
        if output is not None:
            write_json_file(Path(output), event)
    if as_json:
        print_json(event)
        return
    table = Table(title=f"{event['event_type']} {event['event_id']}", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key in ("session_id", "decision_count", "blocked_count", "approval_required_count", "max_severity"):
        table.add_row(key, str(event[key]))
    console.print(table)
    if output is not None:
        console.print(f"wrote {output}", highlight=False, soft_wrap=True)


@app.command("verify")
def verify(
    metadata_json: MetadataJsonOption = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verification report as JSON.")] = False,
) -> None:
    """Verify the tamper-evident chain of stored delivery records; exit 1 naming the first bad record."""
    with handled(), open_selected(store, metadata_json) as st:
        location = st.location
        report = st.verify_chain()
    data = report.to_dict()
    if as_json:
        print_json({**data, "store": location})
    elif report.ok:
        line = Text("chain intact: ", style="bold green")
        line.append(f"{report.count} delivery records in {location}; head sha256 {report.head_sha256}")
        console.print(line, soft_wrap=True)
    else:
        bad = report.first_bad
        assert bad is not None
        err_console.print(
            f"[bold red]chain broken:[/] {bad.delivery_id} is {bad.reason} "
            f"(record #{bad.sequence}): {bad.detail}",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)
