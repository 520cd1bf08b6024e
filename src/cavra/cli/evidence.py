"""``cavra evidence``: build the SIEM event of a session's decisions; verify the stored evidence chain and
export or deliver signed checkpoints of its head (:mod:`cavra.governance.checkpoints`)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cavra import service
from cavra.cli.common import EXIT_FAILED, EXIT_OK, console, err_console, handled, print_json
from cavra.cli.render import delivery_table
from cavra.cli.stores import MetadataJsonOption, StoreOption, open_selected
from cavra.config import load_config
from cavra.errors import InputError
from cavra.governance import checkpoints
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


KeyFileOption = Annotated[
    str | None,
    typer.Option(
        "--key-file",
        metavar="FILE",
        help="Checkpoint key (Ed25519 private key or HMAC secret); default $CAVRA_CHECKPOINT_KEY(_FILE).",
    ),
]
PublicKeyFileOption = Annotated[
    list[str] | None,
    typer.Option(
        "--public-key-file",
        metavar="FILE",
        help="Ed25519 public key(s) that verify checkpoints (repeatable); default "
        "$CAVRA_CHECKPOINT_PUBLIC_KEY(_FILE).",
    ),
]

OldKeyFileOption = Annotated[
    list[str] | None,
    typer.Option(
        "--old-key-file",
        metavar="FILE",
        help="A retired checkpoint key (either type; repeatable): verifies checkpoints signed before a "
        "rotation, never signs. Default $CAVRA_CHECKPOINT_OLD_KEY_FILE.",
    ),
]


@app.command("verify")
def verify(
    metadata_json: MetadataJsonOption = None,
    store: StoreOption = None,
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--checkpoint",
            metavar="FILE",
            help="A checkpoint exported by `cavra evidence checkpoint` (repeatable): fail if any record up "
            "to it was removed or rewritten.",
        ),
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option(
            "--witness",
            metavar="FILE",
            help="Checkpoint events exported from a SIEM (JSON lines, any envelope; repeatable): check "
            "the store against every one.",
        ),
    ] = None,
    key_file: KeyFileOption = None,
    public_key_file: PublicKeyFileOption = None,
    old_key_file: OldKeyFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verification report as JSON.")] = False,
) -> None:
    """Verify the chain of stored delivery records (and its signed checkpoints); exit 1 naming the first
    bad record. Without a checkpoint key this checks order only."""
    with handled():
        keys = checkpoints.checkpoint_keys(key_file, public_key_file or (), old_key_file or ())
        with open_selected(store, metadata_json) as svc:
            st = svc.store
            result = checkpoints.verify_evidence(
                st, keys, checkpoint_files=checkpoint or (), witness_files=witness or ()
            )
    if as_json:
        print_json(result.to_dict())
    elif result.ok:
        _print_intact(result)
    else:
        _print_broken(result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _print_intact(result: checkpoints.Verification) -> None:
    report = result.report
    signed = result.mode == checkpoints.SIGNED
    line = Text("chain intact and signed: " if signed else "chain intact (order only): ", style="bold green")
    line.append(f"{report.count} delivery records in {result.location}; head sha256 {report.head_sha256}")
    console.print(line, soft_wrap=True)
    for c in result.checkpoints:
        console.print(f"  checkpoint #{c.count} holds: {c.label}", highlight=False, soft_wrap=True)
    console.print(
        Text(result.statement(), style="green" if signed else "yellow"), highlight=False, soft_wrap=True
    )


def _print_broken(result: checkpoints.Verification) -> None:
    bad = result.report.first_bad
    if bad is not None and bad.reason == checkpoints.REWRITTEN:
        err_console.print(
            f"[bold red]chain broken:[/] record #{bad.sequence} or a later one is rewritten: {bad.detail}",
            highlight=False,
            soft_wrap=True,
        )
    elif bad is not None:
        err_console.print(
            f"[bold red]chain broken:[/] {bad.delivery_id} is {bad.reason} "
            f"(record #{bad.sequence}): {bad.detail}",
            highlight=False,
            soft_wrap=True,
        )
    for c in result.rejected:
        err_console.print(f"[bold red]checkpoint rejected:[/] {c.detail}", highlight=False, soft_wrap=True)
    err_console.print(result.statement(), highlight=False, soft_wrap=True, markup=False)


@app.command("checkpoint")
def checkpoint_command(
    metadata_json: MetadataJsonOption = None,
    store: StoreOption = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            metavar="FILE",
            help="Write the signed checkpoint to FILE (a new file: keep it elsewhere, e.g. a ticket or a "
            "WORM bucket).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --output file.")] = False,
    deliver: Annotated[
        str | None,
        typer.Option(
            "--deliver",
            metavar="PROVIDER",
            help="Also deliver it as a cavra.evidence.checkpoint event (a provider, a list, or 'all').",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="Connector config for --deliver; default $CAVRA_CONNECTOR_CONFIG."),
    ] = None,
    retries: Annotated[int, typer.Option("--retries", help="Retries after the first attempt (0-10).")] = 1,
    key_file: KeyFileOption = None,
    public_key_file: PublicKeyFileOption = None,
    old_key_file: OldKeyFileOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the checkpoint (and delivery) as JSON.")
    ] = False,
) -> None:
    """Export a signed checkpoint of the chain head (cavra.evidence.checkpoint.v1), to a file or a SIEM."""
    with handled():
        keys = checkpoints.checkpoint_keys(key_file, public_key_file or (), old_key_file or ())
        providers = service.parse_providers(deliver) if deliver is not None else None
        loaded = load_config(config) if deliver is not None else None
        if deliver is not None:
            service.validate_retries(retries)
        with open_selected(store, metadata_json) as svc:
            st = svc.store
            if output is not None:
                cp = checkpoints.export_checkpoint(st, keys, output, force=force)
            else:
                cp = checkpoints.current_checkpoint(st, keys)
            record = None
            if loaded is not None:
                with err_console.status("delivering the checkpoint …", spinner="dots"):
                    _, record = asyncio.run(
                        checkpoints.deliver_checkpoint(st, keys, loaded, providers, retries=retries)
                    )
    ok = record is None or bool(record["success"])
    if as_json or (output is None and record is None):
        print_json(cp.to_dict() if record is None else {"checkpoint": cp.to_dict(), "delivery": record})
    else:
        console.print(
            f"checkpoint #{cp.count}: head sha256 {cp.head_sha256}, {cp.algorithm} key {cp.key_id}",
            highlight=False,
            soft_wrap=True,
        )
        if output is not None:
            console.print(f"wrote {output}", highlight=False, soft_wrap=True)
        if record is not None:
            console.print(delivery_table(record))
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)
