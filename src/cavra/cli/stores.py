"""The ``--store URL`` / ``--metadata-json FILE`` options every store-backed command shares."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from cavra.app import ENV_URL, Cavra, StoreWhere
from cavra.cli.common import err_console
from cavra.errors import InputError

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


def service_for(store: str | None, metadata_json: str | None) -> Cavra:
    """The service object for the store the options name (nothing is opened yet)."""
    check_store_options(store, metadata_json)
    return Cavra(store_url=store, metadata_json=metadata_json)


def open_selected(store: str | None, metadata_json: str | None, *, create: bool = False) -> Cavra:
    """The service object with the store the options name open (raises StoreError/InputError with a
    one-line message); a context manager that closes the store.

    A command that only reads (history, dashboards, verify, the queue) never creates a store: a store file
    that does not exist is refused, naming it, so a typo in a path is not answered "0 records". A command
    that writes (``create=True``) may create one and says so the first time.
    """
    service = service_for(store, metadata_json)
    where = service.where()
    if where.missing is not None and not create:
        raise InputError(
            f"{_named_by(store, metadata_json)}: no evidence store at {where.missing}; check the path "
            "(this command only reads a store, it never creates one)"
        )
    service.store  # noqa: B018  (opens it now, so that a failure is this command's one-line error)
    announce_created(where)
    return service


def announce_created(where: StoreWhere) -> None:
    """Say, once, that a writing command created the store (``where`` taken before it was opened)."""
    path = where.missing
    if path is not None and path.exists():
        kind = "JSON-file" if where.backend == "json" else "SQLite"
        err_console.print(f"created new {kind} store at {path}", highlight=False, soft_wrap=True)


def open_if_exists(store: str | None, metadata_json: str | None) -> Cavra | None:
    """The service object when the store's file exists (or it is not a file: PostgreSQL), else None;
    never creates one."""
    service = service_for(store, metadata_json)
    return None if service.where().missing is not None else service
