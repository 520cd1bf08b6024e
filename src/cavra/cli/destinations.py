"""``cavra destinations``: the destinations of the connectors file (with their health and breaker state),
and a test delivery to one of them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cavra.cli.common import EXIT_FAILED, EXIT_OK, console, err_console, handled, print_json
from cavra.cli.render import delivery_table
from cavra.cli.stores import MetadataJsonOption, StoreOption, open_if_exists, open_selected
from cavra.config import load_config
from cavra.governance import service as governance

app = typer.Typer(
    help="Destinations: list them with their health, send a test event to one.", no_args_is_help=True
)

ConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="Connector config (JSON or YAML); default $CAVRA_CONNECTOR_CONFIG."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]

_HEALTH = {"healthy": "green", "failing": "bold red", "unknown": "dim"}
_BREAKER = {"closed": "green", "open": "bold red", "half_open": "yellow"}


def _table(items: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(items)} destinations", title_justify="left")
    for col in ("destination", "provider", "category", "enabled", "health", "deliveries", "breaker", "note"):
        table.add_column(col, overflow="fold")
    for d in items:
        health, breaker = d["health"], d["breaker"]
        note = d.get("error") or ""
        if breaker.get("paused_until"):
            note = f"paused until {breaker['paused_until']}"
        table.add_row(
            d["name"],
            d["provider"],
            str(d.get("category") or ""),
            "yes" if d["enabled"] else Text("no", style="yellow"),
            Text(health["status"], style=_HEALTH.get(health["status"], "")),
            str(health.get("deliveries", 0)),
            Text(breaker["state"].replace("_", "-"), style=_BREAKER.get(breaker["state"], "")),
            note,
        )
    return table


@app.command("list")
def list_destinations(
    config: ConfigOption = None,
    store: StoreOption = None,
    metadata_json: MetadataJsonOption = None,
    as_json: AsJson = False,
) -> None:
    """Every destination of the connectors file: provider, category, enabled, health from real deliveries,
    circuit-breaker state. Never a URL or a credential."""
    with handled():
        loaded = load_config(config)
        svc = open_if_exists(store, metadata_json)  # no store yet: health is unknown, nothing is created
        if svc is None:
            items = governance.list_destinations(None, loaded)
        else:
            with svc:
                items = governance.list_destinations(svc.store, loaded)
    if as_json:
        print_json({"items": items, "count": len(items)})
    else:
        console.print(_table(items))


@app.command("test")
def send_test(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The destination (a connectors-file key).")],
    config: ConfigOption = None,
    store: StoreOption = None,
    metadata_json: MetadataJsonOption = None,
    as_json: AsJson = False,
) -> None:
    """Send a clearly marked test event to destination NAME now; show the redacted exchange and the verdict.

    The record is stored as metadata kind destination-test-delivery (never counted in a dashboard). Exit 0
    when the destination accepted it, 1 when not."""
    with handled():
        loaded = load_config(config)
        governance.check_testable(loaded, name)  # an unknown or disabled destination: before any store
        with (
            open_selected(store, metadata_json, create=True) as svc,
            err_console.status(f"sending a test event to {name} …", spinner="dots"),
        ):
            record = asyncio.run(governance.send_destination_test(svc.store, loaded, name))
    ok = record["verdict"] == "delivered"
    if as_json:
        print_json(record)
    else:
        console.print(delivery_table(record))
        for item in record.get("deliveries") or []:
            for attempt in item.get("attempts") or []:
                req = attempt.get("request") or {}
                console.print(
                    f"  {attempt.get('step')}: {req.get('method')} {req.get('url')} → "
                    f"{attempt.get('status_code') or 'no answer'} ({attempt.get('verdict')})",
                    highlight=False,
                    soft_wrap=True,
                )
                if attempt.get("response_excerpt"):
                    console.print(f"    {attempt['response_excerpt'][:300]}", highlight=False, soft_wrap=True)
        style = "green" if ok else "bold red"
        console.print(
            Text.assemble(
                ("verdict: ", ""), (record["verdict"], style), f"  (stored as {record['delivery_id']})"
            )
        )
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)
