"""``cavra db``: manage the evidence store's schema."""

from __future__ import annotations

import typer

from cavra.cli.common import console, handled
from cavra.cli.stores import MetadataJsonOption, StoreOption, check_store_options
from cavra.store import redact_url, upgrade
from cavra.store.engine import resolve

app = typer.Typer(help="Manage the evidence metadata store.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(store: StoreOption = None, metadata_json: MetadataJsonOption = None) -> None:
    """Create the store or migrate it to the newest schema (safe to run while others use it)."""
    with handled():
        check_store_options(store, metadata_json)
        location = resolve(store, metadata_json=metadata_json).display
        revision = upgrade(store, metadata_json=metadata_json)
    console.print(f"store {redact_url(location)} is at revision [bold]{revision}[/]", highlight=False)
