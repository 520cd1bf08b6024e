"""``cavra integration deliver``: deliver one event, or a file of many, to one, several or all providers."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cavra import service
from cavra.cli.boards import (
    CursorOption,
    EventIdFilter,
    EventTypeFilter,
    LimitOption,
    ProviderFilter,
    SinceFilter,
    SuccessFilter,
    UntilFilter,
    dashboard_command,
    history_command,
)
from cavra.cli.common import EXIT_FAILED, EXIT_OK, console, delivery_status, err_console, handled, print_json
from cavra.cli.render import batch_summary_table, delivery_table, provider_counts
from cavra.cli.stores import MetadataJsonOption, StoreOption, check_store_options, open_selected
from cavra.config import LoadedConfig, load_config
from cavra.events import DELIVERY_BATCH_SCHEMA, load_events_file
from cavra.governance import service as governance

app = typer.Typer(help="Deliver CAVRA events through configured connectors.", no_args_is_help=True)


@app.command("deliver")
def deliver(
    event_file: Annotated[
        str,
        typer.Argument(
            metavar="EVENT.json",
            help="The event to deliver (a JSON object), or many: a JSON array of objects or JSON Lines "
            "(.jsonl/.ndjson, or one JSON object per line).",
        ),
    ],
    config: Annotated[
        str | None,
        typer.Option("--config", help="Connector config (JSON or YAML); default $CAVRA_CONNECTOR_CONFIG."),
    ] = None,
    provider: Annotated[
        str, typer.Option("--provider", help="A provider, a comma-separated list, or 'all'.")
    ] = "all",
    retries: Annotated[int, typer.Option("--retries", help="Retries after the first attempt (0-10).")] = 1,
    output: Annotated[
        str | None,
        typer.Option("--output", help="Directory for the delivery evidence file (one per event)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the delivery record(s) as JSON.")] = False,
    store: StoreOption = None,
    metadata_json: MetadataJsonOption = None,
) -> None:
    """Deliver EVENT.json and write redacted delivery evidence (cavra.connector.delivery.v1).

    With --store or --metadata-json, every delivery goes through that store's outbox and is recorded
    (integration-delivery: history, dashboards, replay), as an API delivery is."""
    with handled():
        events, many = load_events_file(event_file)  # every event is validated before anything is sent
        providers = service.parse_providers(provider)
        service.validate_retries(retries)
        loaded = load_config(config)
        if providers is None:  # 'all': the destinations that take these events, saying which were skipped
            providers, skipped = service.all_that_take(loaded, events)
            for name, why in skipped.items():
                err_console.print(f"skipped {name}: {why}", highlight=False, soft_wrap=True)
        if store is not None or metadata_json is not None:
            check_store_options(store, metadata_json)
            _deliver_recorded(
                events, many, loaded, providers, retries, output, as_json, (store, metadata_json)
            )
        if many:
            _deliver_many(events, loaded, providers, retries=retries, output=output, as_json=as_json)
        event = events[0]
        with delivery_status(f"delivering {event['event_id']} …"):
            record = asyncio.run(service.deliver_event(event, loaded, providers, retries=retries))
        path = service.write_evidence(output, record) if output else None
    if as_json:
        print_json(record)
    else:
        console.print(delivery_table(record))
        if path is not None:
            console.print(f"evidence: {path}", highlight=False)
    raise typer.Exit(EXIT_OK if record["success"] else EXIT_FAILED)


def _deliver_many(
    events: Sequence[dict[str, Any]],
    loaded: LoadedConfig,
    providers: list[str] | None,
    *,
    retries: int,
    output: str | None,
    as_json: bool,
) -> None:
    """A file of many events: progress on stderr, then a per-provider summary (or JSON); exits."""
    service.select_targets(loaded, providers)  # config errors before the output directory is made
    if output:
        service.ensure_output_dir(output)
    progress = Progress(
        TextColumn("delivering"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events  {task.fields[providers]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    task = progress.add_task("deliver", total=len(events), providers="")

    def show(state: service.BatchProgress) -> None:
        per = "  ".join(f"{name} {n}" for name, n in state.per_provider.items())
        progress.update(task, completed=state.done, providers=per)

    # one warning per failed delivery would bury the bar and the summary (which names the first error)
    quiet = None if "CAVRA_LOG_LEVEL" in os.environ else logging.getLogger("cavra.delivery")
    level = quiet.level if quiet is not None else logging.NOTSET
    try:
        if quiet is not None:
            quiet.setLevel(logging.ERROR)
        with progress:
            records = asyncio.run(
                service.deliver_events(events, loaded, providers, retries=retries, on_progress=show)
            )
    finally:
        if quiet is not None:
            quiet.setLevel(level)
    _report_many(records, output, as_json)


def _report_many(records: Sequence[dict[str, Any]], output: str | None, as_json: bool) -> None:
    """The evidence files, then a per-destination summary (or JSON); exits 0 when all were delivered."""
    written = service.write_evidence_many(output, records) if output else []
    success = all(r["success"] for r in records)
    if as_json:
        print_json(
            {
                "schema_version": DELIVERY_BATCH_SCHEMA,
                "events": len(records),
                "success": success,
                "providers": provider_counts(records),
                "records": records,
            }
        )
    else:
        console.print(batch_summary_table(records))
        if written:
            console.print(f"evidence: {len(written)} files in {output}", highlight=False)
    raise typer.Exit(EXIT_OK if success else EXIT_FAILED)


def _deliver_recorded(
    events: Sequence[dict[str, Any]],
    many: bool,
    loaded: LoadedConfig,
    providers: list[str] | None,
    retries: int,
    output: str | None,
    as_json: bool,
    where: tuple[str | None, str | None],
) -> None:
    """Through the store's outbox, run now in this process: each delivery recorded; exits."""
    service.select_targets(loaded, providers)  # config errors before a store or directory is made
    if output:
        service.ensure_output_dir(output)
    with open_selected(*where, create=True) as svc:
        st = svc.store
        if many:
            progress = Progress(
                TextColumn("delivering"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
            task = progress.add_task("deliver", total=len(events))
            with progress:
                records = asyncio.run(
                    governance.deliver_events_recorded(
                        st, loaded, events, providers, retries=retries,
                        on_done=lambda n: progress.update(task, completed=n),
                    )
                )  # fmt: skip
        else:
            with delivery_status(f"delivering {events[0]['event_id']} …"):
                records = asyncio.run(
                    governance.deliver_events_recorded(st, loaded, events, providers, retries=retries)
                )
    if many:
        _report_many(records, output, as_json)
    record = records[0]
    path = service.write_evidence(output, record) if output else None
    if as_json:
        print_json(record)
    else:
        console.print(delivery_table(record))
        if path is not None:
            console.print(f"evidence: {path}", highlight=False)
    raise typer.Exit(EXIT_OK if record["success"] else EXIT_FAILED)


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command("delivery-history")
def delivery_history(
    metadata_json: MetadataJsonOption = None,
    store: StoreOption = None,
    provider: ProviderFilter = None,
    event_type: EventTypeFilter = None,
    event_id: EventIdFilter = None,
    success: SuccessFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Integration (SIEM and ChatOps) deliveries (metadata_kind=integration-delivery), newest first."""
    history_command(
        "integration deliveries",
        governance.integration_delivery_history,
        store=store,
        metadata_json=metadata_json,
        as_json=as_json,
        provider=provider,
        event_type=event_type,
        event_id=event_id,
        success=success,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )


@app.command("delivery-dashboard")
def delivery_dashboard(
    metadata_json: MetadataJsonOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Integration delivery totals, per provider and event type, and alerts."""
    dashboard_command(
        "integration deliveries",
        governance.integration_delivery_dashboard,
        store=store,
        metadata_json=metadata_json,
        as_json=as_json,
    )
