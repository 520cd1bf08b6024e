"""Integration records: a named, registered use of one provider (``POST /integrations``).

An integration names a provider that the connector config knows, with the provider's category, an
operational ``status`` (only ``active`` integrations deliver) and a ``health_status`` set by operators.
It binds to one *destination* of that provider (``destination``: the key of an entry in the connectors
file; default: the destination named like its provider). ``provider`` may name a destination too: the
integration is then bound to it, and ``provider`` becomes the destination's provider.
The store keeps the record under kind ``integration``; delivering through an integration adds its last
delivery outcome (``last_delivery``) to the record (a completion hook of the delivery's outbox job, so a
run by any worker, later, is noted too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cavra.config import LoadedConfig
from cavra.connectors.registry import CATEGORY_OF, unknown_provider_message
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import iso
from cavra.delivery.runtime import DeliveryRuntime
from cavra.destinations import NAME_PATTERN
from cavra.errors import ConflictError, InputError, NotFoundError
from cavra.events import normalize_event
from cavra.governance.notes import INTEGRATION_HOOK, delivery_runtime
from cavra.governance.outbox import Request, check_timeout, submit
from cavra.governance.records import format_errors
from cavra.service import parse_providers, select_targets, validate_retries
from cavra.store import INTEGRATION_DELIVERY, Store
from cavra.transport import Transport

INTEGRATION_SCHEMA = "cavra.integration.v1"


class LastDelivery(BaseModel):
    """The outcome of the integration's latest delivery (set by the service, not by callers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delivery_id: str
    event_id: str | None = None
    event_type: str | None = None
    success: bool
    at: str
    error: str | None = None


class Integration(BaseModel):
    """A registered integration (``cavra.integration.v1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    integration_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    provider: str
    destination: str | None = Field(default=None, pattern=f"^{NAME_PATTERN}$")
    category: Literal["siem", "chatops", "itsm", "endpoint"] | None = None
    status: Literal["active", "inactive", "disabled"] = "active"
    health_status: Literal["healthy", "degraded", "failing", "unknown"] = "unknown"
    display_name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    labels: dict[str, str] = Field(default_factory=dict)
    last_delivery: LastDelivery | None = None

    @model_validator(mode="after")
    def _provider(self) -> Integration:
        expected = CATEGORY_OF.get(self.provider)
        if expected is None:
            raise ValueError(f"provider: {unknown_provider_message(self.provider)}")
        if self.category is None:
            object.__setattr__(self, "category", expected)
        elif self.category != expected:
            raise ValueError(
                f"category: {self.category!r} does not match provider {self.provider!r} "
                f"(category {expected!r})"
            )
        if self.destination is None:
            object.__setattr__(self, "destination", self.provider)
        return self


def _bind_destination(data: dict[str, Any], config: LoadedConfig | None, source: str) -> None:
    """Resolve ``provider`` / ``destination`` against the connectors file when there is one: a
    ``provider`` that names a destination binds to it; a ``destination`` must be one of the provider's."""
    if config is None:
        return
    provider, destination = data.get("provider"), data.get("destination")
    if isinstance(provider, str) and provider not in CATEGORY_OF and provider in config.provider_of:
        if destination not in (None, provider):
            raise InputError(
                f"{source}: field destination: {destination!r} differs from provider {provider!r}"
            )
        data["provider"], data["destination"] = config.provider_of[provider], provider
        return
    if isinstance(destination, str) and destination in config.provider_of:
        kind = config.provider_of[destination]
        if isinstance(provider, str) and provider in CATEGORY_OF and kind != provider:
            raise InputError(
                f"{source}: field destination: {destination!r} is a {kind} destination, not a {provider} one"
            )
    elif isinstance(destination, str):
        raise InputError(
            f"{source}: field destination: {destination!r} is not a destination of {config.source} "
            f"(its destinations: {', '.join(config.destinations) or 'none'})"
        )


def validate_integration(
    body: object, *, source: str = "request body", config: LoadedConfig | None = None
) -> dict[str, Any]:
    """The normalized integration record, or InputError naming the field. With ``config``, ``provider``
    may name a destination and ``destination`` must be one of the file's."""
    if not isinstance(body, dict):
        raise InputError(f"{source}: an integration must be a JSON object, got {type(body).__name__}")
    data = dict(body)
    if data.get("schema_version") == INTEGRATION_SCHEMA:
        del data["schema_version"]
    _bind_destination(data, config, source)
    try:
        model = Integration.model_validate(data)
    except ValidationError as exc:
        raise InputError(format_errors(source, exc)) from None
    return {"schema_version": INTEGRATION_SCHEMA, **model.model_dump(mode="json")}


# --- service functions (re-exported by cavra.governance.service) -----------------------------------
def _integration_answer(store: Store, integration_id: str) -> dict[str, Any]:
    entry = store.get_record_entry("integration", integration_id)
    if entry is None:
        raise NotFoundError(f"integration {integration_id!r} not found")
    return {**entry.body, "created_at": iso(entry.created_at), "updated_at": iso(entry.updated_at)}


def upsert_integration(store: Store, body: object, config: LoadedConfig | None = None) -> dict[str, Any]:
    """Create or replace an integration; ``last_delivery`` is kept from the stored record. ``config``: the
    connectors file its destination is checked against (when the server has one)."""
    if isinstance(body, dict) and "last_delivery" in body:
        raise InputError("request body: field last_delivery: is set by deliveries, not by callers")
    record = validate_integration(body, config=config)
    iid = str(record["integration_id"])
    existing = store.get_record("integration", iid)
    if existing is not None and existing.get("last_delivery") is not None:
        record["last_delivery"] = existing["last_delivery"]
    store.put_record("integration", iid, record)
    return _integration_answer(store, iid)


def list_integrations(store: Store) -> list[dict[str, Any]]:
    return [
        {**e.body, "created_at": iso(e.created_at), "updated_at": iso(e.updated_at)}
        for e in store.list_record_entries("integration")
    ]


def get_integration(store: Store, integration_id: str) -> dict[str, Any]:
    return _integration_answer(store, integration_id)


def delete_integration(store: Store, integration_id: str) -> None:
    if not store.delete_record("integration", integration_id):
        raise NotFoundError(f"integration {integration_id!r} not found")


async def deliver_integration(
    store: Store,
    config: LoadedConfig,
    integration_id: str,
    event: object,
    *,
    retries: int,
    providers: str | Sequence[str] | None = None,
    timeout_seconds: float | None = None,
    transport: Transport | None = None,
    policy: RetryPolicy | None = None,
    idempotency_key: str | None = None,
    wait: bool = True,
    wait_seconds: float | None = None,
    runtime: DeliveryRuntime | None = None,
) -> dict[str, Any]:
    """Deliver an event through an active integration; stored with kind ``integration-delivery``.

    The event goes to the integration's destination, or to ``providers`` when given (a list, a
    comma-separated string or ``all``). ``timeout_seconds`` overrides the per-attempt timeout. The request
    is queued as one outbox job per provider (``idempotency_key``: the caller's key; otherwise one derived
    from the event and the target) and answered as :func:`cavra.governance.outbox.submit` says.
    """
    integration = await asyncio.to_thread(get_integration, store, integration_id)  # off the event loop
    if integration.get("status") != "active":
        raise ConflictError(
            f"integration {integration_id!r} is {integration.get('status')}; "
            "only an active integration delivers"
        )
    requested = [_destination_of(config, integration)] if providers is None else parse_providers(providers)
    normalized = normalize_event(event, source="event")
    validate_retries(retries)
    check_timeout(timeout_seconds)
    targets, errors = select_targets(config, requested)
    request = Request(
        normalized,
        [t.destination for t in targets] + list(errors),
        kind=INTEGRATION_DELIVERY,
        retries=retries,
        subject_kind="integration",
        subject_id=integration_id,
        integration_id=integration_id,
        on_complete=INTEGRATION_HOOK,
        timeout_seconds=timeout_seconds,
        idempotency_key=idempotency_key,
    )
    return await submit(
        store,
        config,
        request,
        runtime=runtime,
        wait=wait,
        wait_seconds=wait_seconds,
        transport=transport,
        policy=policy,
    )


def _destination_of(config: LoadedConfig, integration: dict[str, Any]) -> str:
    """The integration's destination (records stored before destinations: the one named like its
    provider); a destination that is now of another provider is a conflict, not a delivery."""
    provider = str(integration["provider"])
    destination = str(integration.get("destination") or provider)
    kind = config.provider_of.get(destination)
    if kind is not None and kind != provider:
        raise ConflictError(
            f"integration {integration['integration_id']!r} is for provider {provider!r}, but its "
            f"destination {destination!r} is a {kind} destination in {config.source}"
        )
    return destination


#: events in flight when a file of many goes through the outbox (``cavra integration deliver --store``)
RECORDED_IN_FLIGHT = 32


async def deliver_events_recorded(
    store: Store,
    config: LoadedConfig,
    events: Sequence[Mapping[str, Any]],
    providers: list[str] | None,
    *,
    retries: int,
    on_done: Callable[[int], None] | None = None,
    runtime: DeliveryRuntime | None = None,
) -> list[dict[str, Any]]:
    """Deliver events to the selected destinations through the outbox of ``store`` (one job per event and
    destination, run now in this process), so each delivery is recorded (``integration-delivery``: history,
    dashboards, replay) like an API delivery; answer one combined record per event, in order. A repeated
    event answers its first records (the outbox's idempotency). ``on_done(n)``: n events finished so far.
    The events share one delivery runtime (``runtime``, or a new one): their jobs and records are written
    in shared transactions, their tokens fetched once.
    """
    shared = delivery_runtime() if runtime is None else runtime
    validate_retries(retries)
    targets, errors = select_targets(config, providers)
    names = [t.destination for t in targets] + list(errors)
    limit = asyncio.Semaphore(RECORDED_IN_FLIGHT)
    finished = 0

    async def one(event: Mapping[str, Any]) -> dict[str, Any]:
        nonlocal finished
        async with limit:
            kind, sid = event.get("subject_kind"), event.get("session_id")
            request = Request(
                event,
                names,
                kind=INTEGRATION_DELIVERY,
                retries=retries,
                subject_kind=str(kind) if kind else ("session" if sid else None),
                subject_id=str(event.get("subject_id") or sid) if (kind or sid) else None,
            )
            record = await submit(store, config, request, runtime=shared)
        finished += 1
        if on_done is not None:
            on_done(finished)
        return record

    return list(await asyncio.gather(*(one(event) for event in events)))
