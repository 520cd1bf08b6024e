"""The governance façade: store, look up and deliver governance records; integrations; history.

The HTTP API and the CLI call these functions and nothing below them. Bad input (an unknown kind, a body
that fails its schema, an unknown id or provider, a config problem) raises before the store is written.
A delivery request is queued as outbox jobs, one per provider (:mod:`cavra.governance.outbox`), together
with a new record it depends on; each run's record is appended to the tamper-evident chain. The answer is
the stored document (the ``cavra.connector.delivery.v1`` record plus ``delivery_id``, ``metadata_kind``,
``record_sha256`` and the other store fields, and its ``job`` section) once the first run has ended, or
the 202 body (:func:`is_accepted`) when the caller does not wait or the deadline passes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cavra import history
from cavra.config import LoadedConfig
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import build_record
from cavra.delivery.runtime import DeliveryRuntime
from cavra.errors import InputError, NotFoundError, not_found
from cavra.governance.actions import list_actions, record_action, replay_failed, silence_alert, with_silences
from cavra.governance.boards import (
    combined_totals,
    delivery_dashboard,
    integration_delivery_dashboard,
    integration_delivery_history,
)
from cavra.governance.destinations import check_testable, list_destinations, send_destination_test
from cavra.governance.events import (
    PUBLICATION,
    PublicationRefused,
    promotion_audit_event,
    publication_event,
    rollback_execution_event,
    stable_event_id,
)
from cavra.governance.integrations import (
    delete_integration,
    deliver_events_recorded,
    deliver_integration,
    get_integration,
    list_integrations,
    upsert_integration,
)
from cavra.governance.notes import PUBLICATION_HOOK, delivery_runtime, note_publication
from cavra.governance.operations import (
    integration_health,
    queue_overview,
    search_values,
    unresolved_first,
    with_lifecycle,
)
from cavra.governance.outbox import Request, check_wait, is_accepted, submit
from cavra.governance.pause import pause_destination, paused_destinations, resume_destination
from cavra.governance.publish import publish_events, route_table
from cavra.governance.records import Kind, kind_of, record_id, validate_record
from cavra.governance.routetest import explain as test_route
from cavra.governance.routetest import load_cases as load_route_cases
from cavra.governance.routetest import run_cases as run_route_cases
from cavra.governance.trends import delivery_trend
from cavra.service import parse_providers, select_targets, validate_retries
from cavra.store import Store
from cavra.store.base import PUBLICATION_DELIVERY, RELEASE_DELIVERY
from cavra.store.jobs import RecordPut
from cavra.templates import KEYS as TEMPLATE_PROVIDERS
from cavra.templates import default_source as default_templates
from cavra.transport import Transport

__all__ = [
    "TEMPLATE_PROVIDERS",
    "check_testable",
    "combined_totals",
    "connector_delivery_dashboard",
    "connector_delivery_history",
    "default_templates",
    "delete_integration",
    "deliver_events_recorded",
    "deliver_integration",
    "deliver_promotion_audit",
    "deliver_rollback_execution",
    "delivery_dashboard",
    "delivery_followups",
    "delivery_history",
    "delivery_runtime",
    "delivery_trend",
    "endpoint_publication_dashboard",
    "endpoint_publication_history",
    "get_delivery",
    "get_integration",
    "get_record",
    "integration_delivery_dashboard",
    "integration_delivery_history",
    "integration_health",
    "is_accepted",
    "list_actions",
    "list_destinations",
    "list_integrations",
    "load_record_file",
    "load_route_cases",
    "pause_destination",
    "paused_destinations",
    "publish_endpoint_export",
    "publish_events",
    "queue_overview",
    "record_action",
    "register_record",
    "replay_failed",
    "resume_destination",
    "route_table",
    "run_route_cases",
    "search_values",
    "send_destination_test",
    "silence_alert",
    "test_route",
    "unresolved_first",
    "upsert_integration",
    "with_lifecycle",
    "with_silences",
]

EventBuilder = Callable[[Mapping[str, Any]], dict[str, Any]]


# --- records ----------------------------------------------------------------------------------------------
def register_record(store: Store, kind: str, body: object) -> dict[str, Any]:
    """Validate and store (create or replace) a governance record; return the normalized record."""
    k = kind_of(kind)
    record = validate_record(k, body)
    store.put_record(k.name, record_id(k, record), record)
    return record


def get_record(store: Store, kind: str, record_id_: str) -> dict[str, Any]:
    k = kind_of(kind)
    found = store.get_record(k.name, record_id_)
    if found is None:
        raise NotFoundError(f"{k.label} {record_id_!r} not found")
    return found


def load_record_file(path: str | Path, kind: str) -> dict[str, Any]:
    """Read and validate a record file; errors name the file (and the field)."""
    k = kind_of(kind)
    source = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise InputError(not_found(source)) from None
    except IsADirectoryError:
        raise InputError(f"{source}: is a directory, expected a JSON file") from None
    except UnicodeDecodeError:
        raise InputError(f"{source}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except OSError as exc:
        raise InputError(f"{source}: cannot be read ({exc.strerror})") from None
    return validate_record(k, raw, source=source)


def _resolve(store: Store, k: Kind, given: str | Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """(record, is_new): a stored record by id, or a given body validated (stored later by the caller)."""
    if isinstance(given, str):
        return get_record(store, k.name, given), False
    return validate_record(k, dict(given)), True


# --- release deliveries -----------------------------------------------------------------------------------
async def _deliver_release(
    store: Store,
    config: LoadedConfig,
    kind: str,
    given: str | Mapping[str, Any],
    build: EventBuilder,
    *,
    provider: str,
    retries: int,
    transport: Transport | None,
    policy: RetryPolicy | None,
    idempotency_key: str | None,
    wait: bool,
    wait_seconds: float | None,
    runtime: DeliveryRuntime | None,
) -> dict[str, Any]:
    k = kind_of(kind)
    record, is_new = _resolve(store, k, given)
    providers = parse_providers(provider)
    validate_retries(retries)
    # config problems are bad input: raise before anything is written
    targets, errors = select_targets(config, providers)
    rid = record_id(k, record)
    request = Request(
        build(record),
        [t.destination for t in targets] + list(errors),
        kind=RELEASE_DELIVERY,
        retries=retries,
        subject_kind=k.name,
        subject_id=rid,
        idempotency_key=idempotency_key,
    )
    return await submit(
        store,
        config,
        request,
        runtime=runtime,
        records=[RecordPut(k.name, rid, record)] if is_new else (),
        wait=wait,
        wait_seconds=wait_seconds,
        transport=transport,
        policy=policy,
    )


async def deliver_promotion_audit(
    store: Store,
    config: LoadedConfig,
    execution: str | Mapping[str, Any],
    *,
    provider: str,
    retries: int,
    transport: Transport | None = None,
    policy: RetryPolicy | None = None,
    idempotency_key: str | None = None,
    wait: bool = True,
    wait_seconds: float | None = None,
    runtime: DeliveryRuntime | None = None,
) -> dict[str, Any]:
    """Deliver a promotion execution's audit event (``execution``: an ``rpe_`` id or the record itself)."""
    return await _deliver_release(
        store,
        config,
        "promotion_execution",
        execution,
        promotion_audit_event,
        provider=provider,
        retries=retries,
        transport=transport,
        policy=policy,
        idempotency_key=idempotency_key,
        wait=wait,
        wait_seconds=wait_seconds,
        runtime=runtime,
    )


async def deliver_rollback_execution(
    store: Store,
    config: LoadedConfig,
    execution: str | Mapping[str, Any],
    *,
    provider: str,
    retries: int,
    transport: Transport | None = None,
    policy: RetryPolicy | None = None,
    idempotency_key: str | None = None,
    wait: bool = True,
    wait_seconds: float | None = None,
    runtime: DeliveryRuntime | None = None,
) -> dict[str, Any]:
    """Deliver a rollback execution event (``execution``: an ``rre_`` id or the record itself)."""
    return await _deliver_release(
        store,
        config,
        "rollback_execution",
        execution,
        rollback_execution_event,
        provider=provider,
        retries=retries,
        transport=transport,
        policy=policy,
        idempotency_key=idempotency_key,
        wait=wait,
        wait_seconds=wait_seconds,
        runtime=runtime,
    )


# --- endpoint-management publication ----------------------------------------------------------------------
def _publication_providers(spec: str, export: Mapping[str, Any], config: LoadedConfig) -> list[str]:
    """The requested destinations; each must be of a provider the export names (``all``: every provider it
    names, each through the destination named after it)."""
    meant = list(export.get("providers") or [])
    providers = parse_providers(spec)
    if providers is None:
        return meant
    for name in providers:
        if config.provider_type(name) not in meant:
            raise InputError(
                f"--provider: {export['export_id']} is for {', '.join(meant)}; {name!r} is not one of them"
            )
    return providers


async def publish_endpoint_export(
    store: Store,
    config: LoadedConfig,
    export: str | Mapping[str, Any],
    *,
    provider: str,
    retries: int,
    base_dir: Path | None = None,
    transport: Transport | None = None,
    policy: RetryPolicy | None = None,
    idempotency_key: str | None = None,
    wait: bool = True,
    wait_seconds: float | None = None,
    runtime: DeliveryRuntime | None = None,
) -> dict[str, Any]:
    """Publish an endpoint-management export (an ``eme_`` id or the manifest itself).

    Artifact paths are resolved against ``base_dir`` (the manifest's directory; default the working
    directory). A refusal (not approved, not meant for the provider, an artifact missing or different) is
    stored as a failed publication delivery and raised as :class:`PublicationRefused` (an InputError);
    nothing is queued. Otherwise one outbox job per provider is queued (with a new manifest, in the same
    transaction) and the answer is as :func:`cavra.governance.outbox.submit` says.
    """
    k = kind_of("endpoint_export")
    record, is_new = _resolve(store, k, export)
    providers = _publication_providers(provider, record, config)
    validate_retries(retries)
    select_targets(config, providers)
    check_wait(wait_seconds)
    rid = record_id(k, record)
    root = base_dir if base_dir is not None else Path.cwd()
    try:
        event = await asyncio.to_thread(publication_event, record, root)
    except PublicationRefused as refused:
        if is_new:
            await asyncio.to_thread(store.put_record, k.name, rid, record)
        summary = {
            "event_type": PUBLICATION,
            "event_id": stable_event_id(PUBLICATION, rid, record),
            "export_id": rid,
        }
        failed = build_record(
            summary,
            [],
            config_errors={p: f"not sent: {refused}" for p in providers},
            provider_of=config.provider_of,
        )
        stored = await asyncio.to_thread(
            store.append_delivery,
            failed,
            metadata_kind=PUBLICATION_DELIVERY,
            subject_kind=k.name,
            subject_id=rid,
        )
        await asyncio.to_thread(store.with_records, lambda records: note_publication(records, stored))
        raise PublicationRefused(refused.export_id, refused.reason, delivery_id=stored.id) from None
    request = Request(
        event,
        providers,
        kind=PUBLICATION_DELIVERY,
        retries=retries,
        subject_kind=k.name,
        subject_id=rid,
        on_complete=PUBLICATION_HOOK,
        idempotency_key=idempotency_key,
    )
    return await submit(
        store,
        config,
        request,
        runtime=runtime,
        records=[RecordPut(k.name, rid, record)] if is_new else (),
        wait=wait,
        wait_seconds=wait_seconds,
        transport=transport,
        policy=policy,
    )


# --- history and dashboards -------------------------------------------------------------------------------
def connector_delivery_history(store: Store, **filters: Any) -> dict[str, Any]:
    """Release connector deliveries (``metadata_kind=release-connector-delivery``), newest first."""
    return history.query_history(store, metadata_kinds=[RELEASE_DELIVERY], **filters).to_dict()


def connector_delivery_dashboard(store: Store) -> dict[str, Any]:
    """The release board; each alert says whether (and by whom) it is acknowledged (:func:`with_silences`)."""
    board = history.dashboard(store, metadata_kinds=[RELEASE_DELIVERY], schema=history.CONNECTOR_DASHBOARD)
    return with_silences(store, board)


def endpoint_publication_history(store: Store, **filters: Any) -> dict[str, Any]:
    """Endpoint-management publication deliveries, newest first."""
    return history.query_history(store, metadata_kinds=[PUBLICATION_DELIVERY], **filters).to_dict()


def endpoint_publication_dashboard(store: Store) -> dict[str, Any]:
    board = history.dashboard(
        store, metadata_kinds=[PUBLICATION_DELIVERY], schema=history.PUBLICATION_DASHBOARD
    )
    return with_silences(store, board)


def delivery_history(store: Store, *, metadata_kind: str | None = None, **filters: Any) -> dict[str, Any]:
    """Every kind of provider delivery (or one ``metadata_kind``'s), newest first."""
    kinds = None if metadata_kind is None else [metadata_kind]
    return history.query_history(store, metadata_kinds=kinds, **filters).to_dict()


def get_delivery(store: Store, delivery_id: str) -> dict[str, Any]:
    """One stored delivery record (the document with its attempts and chain hashes)."""
    found = store.get_delivery(delivery_id)
    if found is None:
        raise NotFoundError(f"delivery {delivery_id!r} not found")
    return found


def delivery_followups(store: Store, result: Mapping[str, Any], started_at: datetime) -> list[dict[str, Any]]:
    """What a person should be told beside a delivery answer, per provider delivery in ``result``:

    * ``already_delivered``: the record was completed before ``started_at``: this request sent nothing and
      answered the earlier record (a repeated request is idempotent);
    * ``retry_queued``: the delivery failed and its outbox job is queued to run again at ``run_after``
      (by ``cavra worker``, ``cavra serve``, or the same command run again).
    """
    notes: list[dict[str, Any]] = []
    for d in result.get("deliveries") or []:
        provider = d.get("provider")
        completed = _parse_time(d.get("completed_at"))
        if completed is not None and completed < started_at:
            notes.append(
                {
                    "kind": "already_delivered",
                    "provider": provider,
                    "at": completed,
                    "status": d.get("status"),
                }
            )
            continue
        job_id = d.get("job_id") or (result.get("job") or {}).get("job_id")
        if d.get("status") != "delivered" and isinstance(job_id, str):
            job = store.get_job(job_id)
            if job is not None and job.state == "queued":
                notes.append(
                    {"kind": "retry_queued", "provider": provider, "at": job.run_after, "job_id": job_id}
                )
    return notes


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
