"""``cavra integration deliver``: deliver one event file to one, several or all configured providers."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cavra import service
from cavra.cli.common import EXIT_FAILED, EXIT_OK, console, err_console, handled, print_json
from cavra.cli.render import delivery_table
from cavra.config import load_config
from cavra.events import load_event_file

app = typer.Typer(help="Deliver CAVRA events through configured connectors.", no_args_is_help=True)


@app.command("deliver")
def deliver(
    event_file: Annotated[
        str, typer.Argument(metavar="EVENT.json", help="The event to deliver (a JSON object).")
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
        str | None, typer.Option("--output", help="Directory for the delivery evidence file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the delivery record as JSON.")] = False,
) -> None:
    """Deliver EVENT.json and write redacted delivery evidence (cavra.connector.delivery.v1)."""
    with handled():
        event = load_event_file(event_file)
        providers = service.parse_providers(provider)
        service.validate_retries(retries)
        loaded = load_config(config)
        with err_console.status(f"delivering {event['event_id']} …", spinner="dots"):
            record = asyncio.run(service.deliver_event(event, loaded, providers, retries=retries))
        path = service.write_evidence(output, record) if output else None
    if as_json:
        print_json(record)
    else:
        console.print(delivery_table(record))
        if path is not None:
            console.print(f"evidence: {path}", highlight=False)
    raise typer.Exit(EXIT_OK if record["success"] else EXIT_FAILED)
