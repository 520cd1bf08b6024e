"""The ``--store URL`` / ``--metadata-json FILE`` options every store-backed command shares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cavra.cli.common import err_console
from cavra.errors import InputError
from cavra.store import ENV_URL, Store, open_store
from cavra.store.engine import Location, resolve, store_file

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


def _named_by(store: str | None, metadata_json: str | None) -> str:
    if metadata_json is not None:
        return "--metadata-json"
    if store is not None:
        return "--store"
    return f"${ENV_URL}" if os.environ.get(ENV_URL) else "the default store"


def open_selected(store: str | None, metadata_json: str | None, *, create: bool = False) -> Store:
    """Open the store the options name (raises StoreError/InputError with a one-line message).

    A command that only reads (history, dashboards, verify, the queue) never creates a store: a store file
    that does not exist is refused, naming it, so a typo in a path is not answered "0 records". A command
    that writes (``create=True``) may create one and says so the first time.
    """
    check_store_options(store, metadata_json)
    loc, path = missing_store_file(store, metadata_json)
    if path is not None and not create:
        raise InputError(
            f"{_named_by(store, metadata_json)}: no evidence store at {path}; check the path "
            "(this command only reads a store, it never creates one)"
        )
    opened = open_store(store, metadata_json=metadata_json)
    announce_created(loc, path)
    return opened


def missing_store_file(store: str | None, metadata_json: str | None) -> tuple[Location, Path | None]:
    """The resolved location, and its file when that file does not exist yet (else None)."""
    loc = resolve(store, metadata_json=metadata_json)
    path = store_file(loc)
    return loc, path if path is not None and not path.exists() else None


def announce_created(loc: Location, path: Path | None) -> None:
    """Say, once, that a writing command created the store (``path`` from :func:`missing_store_file`)."""
    if path is not None and path.exists():
        kind = "JSON-file" if loc.backend == "json" else "SQLite"
        err_console.print(f"created new {kind} store at {path}", highlight=False, soft_wrap=True)


def open_if_exists(store: str | None, metadata_json: str | None) -> Store | None:
    """The store when its file exists (or it is not a file: PostgreSQL), else None; never creates one."""
    check_store_options(store, metadata_json)
    _, missing = missing_store_file(store, metadata_json)
    return None if missing is not None else open_store(store, metadata_json=metadata_json)
