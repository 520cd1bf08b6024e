"""The history and dashboard commands' shared options and bodies (``cavra release …-history|dashboard``,
``cavra integration delivery-history|delivery-dashboard``): one filter set, one rendering."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer

from cavra.app import Store
from cavra.cli.common import console, handled, print_json
from cavra.cli.release_render import dashboard_view, history_table
from cavra.cli.stores import check_store_options, open_selected
from cavra.errors import InputError


def _parse_time(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{option}: {value!r} is not an ISO 8601 time (e.g. 2025-11-20T10:00:00Z)") from None


HistoryQuery = Callable[..., dict[str, Any]]


def history_command(
    title: str,
    query: HistoryQuery,
    *,
    store: str | None,
    metadata_json: str | None,
    as_json: bool,
    **filters: Any,
) -> None:
    with handled():
        check_store_options(store, metadata_json)
        filters["since"] = _parse_time("--since", filters.get("since"))
        filters["until"] = _parse_time("--until", filters.get("until"))
        with open_selected(store, metadata_json) as svc:
            st = svc.store
            page = query(st, **filters)
    if as_json:
        print_json(page)
    else:
        console.print(history_table(title, page))


def dashboard_command(
    title: str,
    build: Callable[[Store], dict[str, Any]],
    *,
    store: str | None,
    metadata_json: str | None,
    as_json: bool,
) -> None:
    with handled(), open_selected(store, metadata_json) as svc:
        st = svc.store
        data = build(st)
    if as_json:
        print_json(data)
    else:
        console.print(dashboard_view(title, data))


ProviderFilter = Annotated[str | None, typer.Option("--provider", help="Only this provider (the type).")]
EventTypeFilter = Annotated[str | None, typer.Option("--event-type", help="Only this event type.")]
EventIdFilter = Annotated[str | None, typer.Option("--event-id", help="Only this event id.")]
SuccessFilter = Annotated[
    bool | None, typer.Option("--success/--no-success", help="Only successful (or only failed) deliveries.")
]
SinceFilter = Annotated[
    str | None, typer.Option("--since", metavar="ISO", help="From this time (inclusive).")
]
UntilFilter = Annotated[str | None, typer.Option("--until", metavar="ISO", help="Before this time.")]
LimitOption = Annotated[int, typer.Option("--limit", help="At most this many items (1-500).")]
CursorOption = Annotated[str | None, typer.Option("--cursor", help="Continue after a previous page.")]
