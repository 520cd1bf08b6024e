"""``cavra release``: deliver release governance records and review their delivery history and dashboards.

Exit codes: 0 delivered, 1 a delivery failed (the failure is stored), 2 bad input (wrong record kind or
schema, unknown provider, config or store problem, publication refused), with one line on stderr.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cavra import service
from cavra.app import Store
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
from cavra.cli.common import EXIT_FAILED, EXIT_OK, console, delivery_status, handled, print_json
from cavra.cli.release_render import delivery_summary, followup_lines
from cavra.cli.render import delivery_table
from cavra.cli.stores import MetadataJsonOption, StoreOption, check_store_options, open_selected
from cavra.config import LoadedConfig, load_config
from cavra.governance import service as governance

app = typer.Typer(
    help="Deliver release governance records (promotion audits, rollbacks, endpoint exports) and review "
    "their delivery history.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="Connector config (JSON or YAML); default $CAVRA_CONNECTOR_CONFIG."),
]
ProviderOption = Annotated[
    str, typer.Option("--provider", help="The provider to deliver to (or a comma-separated list).")
]
RetriesOption = Annotated[int, typer.Option("--retries", help="Retries after the first attempt (0-10).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

Result = Coroutine[Any, Any, dict[str, Any]]
Deliver = Callable[[Store, LoadedConfig, dict[str, Any]], Result]


def _deliver(
    path: str,
    kind: str,
    what: str,
    run: Deliver,
    *,
    config: str | None,
    provider: str,
    retries: int,
    store: str | None,
    metadata_json: str | None,
    as_json: bool,
) -> None:
    with handled():
        check_store_options(store, metadata_json)
        record = governance.load_record_file(path, kind)
        service.parse_providers(provider)
        service.validate_retries(retries)
        loaded = load_config(config)
        with open_selected(store, metadata_json, create=True) as svc:
            st = svc.store
            location = st.location
            started = datetime.now(UTC)
            with delivery_status(f"delivering {what} to {provider} …"):
                result = asyncio.run(run(st, loaded, record))
            followups = governance.delivery_followups(st, result, started)
    if as_json:
        print_json(result)
    else:
        console.print(delivery_table(result))
        console.print(delivery_summary(result, location), soft_wrap=True)
        for line in followup_lines(followups, location):
            console.print(line, soft_wrap=True, highlight=False)
    raise typer.Exit(EXIT_OK if result.get("success") else EXIT_FAILED)


@app.command("deliver-promotion-audit")
def deliver_promotion_audit(
    file: Annotated[str, typer.Argument(metavar="FILE", help="A promotion execution (rpe_…) JSON file.")],
    provider: ProviderOption,
    config: ConfigOption = None,
    retries: RetriesOption = 1,
    metadata_json: MetadataJsonOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deliver a promotion execution's audit event (cavra.release.promotion_audit)."""

    def run(st: Store, loaded: LoadedConfig, record: dict[str, Any]) -> Result:
        return governance.deliver_promotion_audit(st, loaded, record, provider=provider, retries=retries)

    _deliver(
        file,
        "promotion_execution",
        "promotion audit",
        run,
        config=config,
        provider=provider,
        retries=retries,
        store=store,
        metadata_json=metadata_json,
        as_json=as_json,
    )


@app.command("deliver-rollback-execution")
def deliver_rollback_execution(
    file: Annotated[str, typer.Argument(metavar="FILE", help="A rollback execution (rre_…) JSON file.")],
    provider: ProviderOption,
    config: ConfigOption = None,
    retries: RetriesOption = 1,
    metadata_json: MetadataJsonOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deliver a rollback execution event (cavra.release.rollback_execution, severity critical)."""

    def run(st: Store, loaded: LoadedConfig, record: dict[str, Any]) -> Result:
        return governance.deliver_rollback_execution(st, loaded, record, provider=provider, retries=retries)

    _deliver(
        file,
        "rollback_execution",
        "rollback execution",
        run,
        config=config,
        provider=provider,
        retries=retries,
        store=store,
        metadata_json=metadata_json,
        as_json=as_json,
    )


@app.command("deliver-endpoint-export")
def deliver_endpoint_export(
    manifest: Annotated[
        str, typer.Argument(metavar="MANIFEST", help="An endpoint-management export manifest (eme_…).")
    ],
    provider: ProviderOption,
    config: ConfigOption = None,
    retries: RetriesOption = 1,
    metadata_json: MetadataJsonOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish an approved endpoint-management export (artifacts checked against their sha256)."""
    base_dir = Path(manifest).parent

    def run(st: Store, loaded: LoadedConfig, record: dict[str, Any]) -> Result:
        return governance.publish_endpoint_export(
            st, loaded, record, provider=provider, retries=retries, base_dir=base_dir
        )

    _deliver(
        manifest,
        "endpoint_export",
        "endpoint export",
        run,
        config=config,
        provider=provider,
        retries=retries,
        store=store,
        metadata_json=metadata_json,
        as_json=as_json,
    )


DestinationFilter = Annotated[
    str | None, typer.Option("--destination", help="Only this destination (a connectors-file key).")
]


@app.command("connector-delivery-history")
def connector_delivery_history(
    metadata_json: MetadataJsonOption = None,
    store: StoreOption = None,
    provider: ProviderFilter = None,
    destination: DestinationFilter = None,
    event_type: EventTypeFilter = None,
    event_id: EventIdFilter = None,
    success: SuccessFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Release connector deliveries (metadata_kind=release-connector-delivery), newest first."""
    history_command(
        "release connector deliveries",
        governance.connector_delivery_history,
        store=store,
        metadata_json=metadata_json,
        as_json=as_json,
        provider=provider,
        destination=destination,
        event_type=event_type,
        event_id=event_id,
        success=success,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )


@app.command("connector-delivery-dashboard")
def connector_delivery_dashboard(
    metadata_json: MetadataJsonOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Release connector delivery totals, per provider and event type, and alerts."""
    dashboard_command(
        "release connector deliveries",
        governance.connector_delivery_dashboard,
        store=store,
        metadata_json=metadata_json,
        as_json=as_json,
    )


@app.command("endpoint-publication-history")
def endpoint_publication_history(
    metadata_json: MetadataJsonOption = None,
    store: StoreOption = None,
    provider: ProviderFilter = None,
    destination: DestinationFilter = None,
    event_type: EventTypeFilter = None,
    event_id: EventIdFilter = None,
    success: SuccessFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Endpoint-management publication deliveries (Jamf, Intune, Linux fleet), newest first."""
    history_command(
        "endpoint-management publications",
        governance.endpoint_publication_history,
        store=store,
        metadata_json=metadata_json,
        as_json=as_json,
        provider=provider,
        destination=destination,
        event_type=event_type,
        event_id=event_id,
        success=success,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )


@app.command("endpoint-publication-dashboard")
def endpoint_publication_dashboard(
    metadata_json: MetadataJsonOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Publication totals, exports not yet published, and alerts."""
    dashboard_command(
        "endpoint-management publications",
        governance.endpoint_publication_dashboard,
        store=store,
        metadata_json=metadata_json,
        as_json=as_json,
    )
