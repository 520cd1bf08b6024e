"""Request and response models of the HTTP API (they are also its OpenAPI document).

Requests are strict (unknown fields are 422 with their path). Responses describe the fields clients rely
on and allow more (``extra="allow"``), so a record stays whole as the service returns it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cavra.app import DEFAULT_WAIT_SECONDS
from cavra.service import MAX_RETRIES

Category = Literal["siem", "chatops", "itsm", "endpoint"]
IntegrationStatus = Literal["active", "inactive", "disabled"]
HealthStatus = Literal["healthy", "degraded", "failing", "unknown"]
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorOut(BaseModel):
    """Every error answer: a stable code, a one-line message (never a secret or traceback), the request id."""

    error: str = Field(examples=["not_found"])
    detail: str = Field(examples=["integration 'splunk' is not registered"])
    request_id: str = Field(examples=["req_4f2a9c0d1e2b3a4c5d6e"])


# --- integrations --------------------------------------------------------------------------------------
class IntegrationIn(_In):
    """Create or update an integration. ``category`` must match the provider's (it defaults to it)."""

    integration_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", examples=["splunk"])
    provider: str = Field(
        min_length=1, max_length=64, examples=["splunk"], description="a provider, or a destination's name"
    )
    destination: str | None = Field(
        default=None,
        max_length=63,
        examples=["slack-release"],
        description="the destination it delivers to (default: the one named like its provider)",
    )
    category: Category | None = None
    status: IntegrationStatus = "active"
    health_status: HealthStatus = "unknown"
    display_name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    labels: dict[str, str] = Field(default_factory=dict)


class IntegrationOut(_Out):
    """A registered integration (``cavra.integration.v1``)."""

    integration_id: str
    provider: str
    destination: str | None = None
    category: Category
    status: IntegrationStatus
    health_status: HealthStatus


class IntegrationList(BaseModel):
    items: list[IntegrationOut]
    count: int


class Deleted(BaseModel):
    deleted: bool
    id: str


class DeliverIn(_In):
    """Deliver one event through an integration (to its provider, or to ``providers``)."""

    event: dict[str, Any] = Field(
        description="the event; event_type is required, event_id is derived if absent"
    )
    retries: int = Field(default=1, ge=0, le=MAX_RETRIES, description="retries after the first attempt")
    timeout_seconds: float | None = Field(default=None, gt=0, le=300, description="per-attempt timeout")
    providers: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="providers instead of the integration's own (names, or ['all'])",
    )
    wait: bool = Field(
        default=True,
        description="wait for the first attempt run and answer its record (false: answer 202 at once)",
    )
    wait_seconds: float = Field(
        default=DEFAULT_WAIT_SECONDS,
        ge=0,
        le=120,
        description="longest wait before answering 202 with the job ids and their status URLs",
    )


class ReleaseDeliverIn(_In):
    """Deliver a release record's event to a provider (a name, a comma-separated list, or ``all``)."""

    provider: str = Field(min_length=1, max_length=200, examples=["webhook"])
    retries: int = Field(default=1, ge=0, le=MAX_RETRIES)
    wait: bool = Field(
        default=True,
        description="wait for the first attempt run and answer its record (false: answer 202 at once)",
    )
    wait_seconds: float = Field(
        default=DEFAULT_WAIT_SECONDS,
        ge=0,
        le=120,
        description="longest wait before answering 202 with the job ids and their status URLs",
    )


# --- delivery records ----------------------------------------------------------------------------------
class RedactedRequestOut(_Out):
    method: str
    url: str
    headers: dict[str, str]


class AttemptOut(_Out):
    number: int
    step: str
    status_code: int | None = None
    verdict: str
    reason: str | None = None
    request: RedactedRequestOut | None = None


class ProviderDeliveryOut(_Out):
    provider: str
    destination: str | None = None
    success: bool
    status: str
    status_code: int | None = None
    attempt_count: int
    error: str | None = None
    request: RedactedRequestOut | None = None
    attempts: list[AttemptOut] = Field(default_factory=list)


class DeliveryRecordOut(_Out):
    """A ``cavra.connector.delivery.v1`` record, with the store's fields once persisted."""

    schema_version: Literal["cavra.connector.delivery.v1"]
    event_type: str | None = None
    event_id: str | None = None
    success: bool
    deliveries: list[ProviderDeliveryOut]
    errors: list[dict[str, Any]] = Field(default_factory=list)
    id: str | None = Field(default=None, description="the stored delivery id (GET /deliveries/{id})")
    metadata_kind: str | None = None


# --- destinations --------------------------------------------------------------------------------------
class DestinationOut(_Out):
    """A destination of the connectors file (no secrets)."""

    name: str
    provider: str
    category: Category | None = None
    enabled: bool
    loaded: bool
    error: str | None = None
    health: dict[str, Any]
    breaker: dict[str, Any]
    pause: dict[str, Any] | None = Field(
        default=None, description="an operator's pause while it lasts: by, at, until (null: until resumed)"
    )


class DestinationList(BaseModel):
    items: list[DestinationOut]
    count: int


# --- history and dashboards ----------------------------------------------------------------------------
class HistoryItemOut(_Out):
    delivery_id: str
    provider: str
    destination: str | None = None
    success: bool
    status: str
    status_code: int | None = None
    attempt_count: int
    event_type: str | None = None
    event_id: str | None = None
    created_at: str | None = None
    error: str | None = None


class HistoryPage(_Out):
    """One page, newest first; pass ``next_cursor`` as ``cursor`` for the next (``null``: no more)."""

    items: list[HistoryItemOut]
    count: int
    total: int
    limit: int
    next_cursor: str | None = None


class AlertOut(_Out):
    level: Literal["critical", "warning"]
    code: str
    message: str
    key: str | None = Field(default=None, description="what identifies the alert (to acknowledge it)")
    acknowledged_by: str | None = Field(default=None, description="who acknowledged (silenced) it")
    acknowledged_at: str | None = Field(default=None, description="when it was acknowledged")
    acknowledged_until: str | None = Field(default=None, description="until when it stays silenced")


class Dashboard(_Out):
    """Delivery totals per provider and event type, latest failures, and the alerts they raise."""

    schema_version: str
    generated_at: str
    status: Literal["ok", "warning", "critical"]
    totals: dict[str, int]
    success_rate: float | None = None
    providers: list[dict[str, Any]]
    destinations: list[dict[str, Any]] = Field(default_factory=list)
    event_types: list[dict[str, Any]]
    latest_failures: list[HistoryItemOut]
    alerts: list[AlertOut]


class RecordOut(_Out):
    """A governance record (promotion execution, rollback execution, endpoint-management export)."""

    schema_version: str


# --- health --------------------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"]
    version: str


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


class ConnectorStatus(BaseModel):
    """What the loaded connector config holds: providers that loaded, and why others did not."""

    source: str | None
    providers: dict[str, str] = Field(description="provider -> category")
    errors: dict[str, str]
    loaded_at: str | None


_ERROR_TEXT = {
    401: "No or invalid API token (the detail names the role needed)",
    403: "The token's role is not enough, or protected mode refused a non-loopback client",
    404: "Unknown id",
    409: "The request conflicts with the current state (an inactive integration, an idempotency key "
    "already used for a different request)",
    413: "The request body is over the size limit",
    422: "Invalid JSON or fields (the detail names them), or a configuration problem",
    503: "The store or the connector config is not available",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses (all with the one error shape)."""
    return {code: {"model": ErrorOut, "description": _ERROR_TEXT[code]} for code in codes}
