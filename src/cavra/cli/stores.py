"""The ``--store URL`` / ``--metadata-json FILE`` options every store-backed command shares."""

from __future__ import annotations

from typing import Annotated

import typer

from cavra.errors import InputError
from cavra.store import Store, open_store

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL",
        help="Evidence store: sqlite:///PATH, postgresql://…, json:FILE or a path "
        "(default $CAVRA_STORE_URL, else .cavra/evidence/metadata.db).",
    ),
]
MetadataJsonOption = Annotated[
    str | None,
    typer.Option(
        "--metadata-json",
        metavar="FILE",
        help="Use the JSON-file evidence metadata store FILE instead of --store.",
    ),
]


def check_store_options(store: str | None, metadata_json: str | None) -> None:
    if store is not None and metadata_json is not None:
        raise InputError("give --store or --metadata-json, not both")


def open_selected(store: str | None, metadata_json: str | None) -> Store:
    """Open the store the options name (raises StoreError/InputError with a one-line message)."""
    check_store_options(store, metadata_json)
    return open_store(store, metadata_json=metadata_json)
