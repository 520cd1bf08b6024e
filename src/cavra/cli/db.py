"""``cavra db``: manage the evidence store's schema."""

from __future__ import annotations

import typer

from cavra.app import redact_url
from cavra.cli.common import console, handled
from cavra.cli.stores import MetadataJsonOption, StoreOption, announce_created, service_for

app = typer.Typer(help="Manage the evidence metadata store.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(store: StoreOption = None, metadata_json: MetadataJsonOption = None) -> None:
    """Create the store or migrate it to the newest schema (safe to run while others use it)."""
    with handled():
        service = service_for(store, metadata_json)
        where = service.where()
        revision = service.upgrade_store()
        announce_created(where)
    location = where.display
    console.print(f"store {redact_url(location)} is at revision [bold]{revision}[/]", highlight=False)
