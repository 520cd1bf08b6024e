"""``cavra db``: manage the evidence store's schema."""

from __future__ import annotations

import typer

from cavra.cli.common import console, handled
from cavra.cli.stores import (
    MetadataJsonOption,
    StoreOption,
    announce_created,
    check_store_options,
    missing_store_file,
)
from cavra.store import redact_url, upgrade

app = typer.Typer(help="Manage the evidence metadata store.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(store: StoreOption = None, metadata_json: MetadataJsonOption = None) -> None:
    """Create the store or migrate it to the newest schema (safe to run while others use it)."""
    with handled():
        check_store_options(store, metadata_json)
        loc, missing = missing_store_file(store, metadata_json)
        location = loc.display
        revision = upgrade(store, metadata_json=metadata_json)
        announce_created(loc, missing)
    console.print(f"store {redact_url(location)} is at revision [bold]{revision}[/]", highlight=False)
