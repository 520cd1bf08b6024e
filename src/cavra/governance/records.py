"""Governance record models: what CAVRA hands this service to store and deliver.

Four kinds, each a strict pydantic model with a JSON schema (``cavra/schemas/<kind>.v1.json``, documented
in ``docs/release.md``):

* ``promotion_execution`` (id ``rpe_…``): a release promoted from one environment to another, with gates;
* ``rollback_execution`` (id ``rre_…``): a release rolled back to an earlier one;
* ``endpoint_export`` (id ``eme_…``): an endpoint-management export manifest (release, approval, channel,
  providers, artifacts with size and SHA-256, paths relative to the manifest);
* ``evidence_bundle`` (id = ``session_id``): the decisions one agent session made.

:func:`validate_record` turns a JSON object into the normalized record (timestamps in UTC ``Z`` form,
``schema_version`` filled in) or raises :class:`~cavra.errors.InputError` naming the source and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from cavra.errors import InputError
from cavra.events import SEVERITIES
from cavra.storable import check_storable

Severity = Literal["info", "low", "medium", "high", "critical"]
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"


def _to_utc(value: Any) -> Any:
    if not isinstance(value, datetime):
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00
        raise ValueError("out of range when converted to UTC") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return _to_utc(value)


class Gate(_Strict):
    """One promotion gate and how it ended."""

    name: str = Field(min_length=1, max_length=200)
    status: Literal["passed", "failed", "waived", "skipped"]
    detail: str | None = Field(default=None, max_length=2000)


class PromotionExecution(_Strict):
    """A release promoted from one environment to another (``cavra.release.promotion_execution.v1``)."""

    schema_version: Literal["cavra.release.promotion_execution.v1"] = "cavra.release.promotion_execution.v1"
    execution_id: str = Field(pattern=rf"^rpe_{_NAME}$", description="rpe_ followed by a name")
    release: str = Field(min_length=1, max_length=128)
    from_environment: str = Field(min_length=1, max_length=128)
    to_environment: str = Field(min_length=1, max_length=128)
    status: Literal["succeeded", "failed", "in_progress", "aborted"]
    strategy: str | None = Field(default=None, max_length=128)
    initiated_by: str = Field(min_length=1, max_length=200)
    approved_by: str | None = Field(default=None, max_length=200)
    change_ticket: str | None = Field(default=None, max_length=200)
    started_at: AwareDatetime
    completed_at: AwareDatetime | None = None
    gates: list[Gate] = Field(default_factory=list, max_length=200)
    evidence_sessions: list[str] = Field(default_factory=list, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _times(self) -> PromotionExecution:
        _check_order(self.started_at, self.completed_at)
        return self


class RollbackExecution(_Strict):
    """A release rolled back to an earlier one (``cavra.release.rollback_execution.v1``)."""

    schema_version: Literal["cavra.release.rollback_execution.v1"] = "cavra.release.rollback_execution.v1"
    execution_id: str = Field(pattern=rf"^rre_{_NAME}$", description="rre_ followed by a name")
    release: str = Field(min_length=1, max_length=128, description="the release that was rolled back")
    rolled_back_to: str = Field(min_length=1, max_length=128, description="the release restored")
    environment: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=2000)
    trigger: Literal["manual", "automatic"] = "manual"
    status: Literal["succeeded", "failed", "in_progress"]
    initiated_by: str = Field(min_length=1, max_length=200)
    promotion_execution_id: str | None = Field(default=None, pattern=rf"^rpe_{_NAME}$")
    started_at: AwareDatetime
    completed_at: AwareDatetime | None = None
    affected_targets: list[str] = Field(default_factory=list, max_length=1000)
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _times(self) -> RollbackExecution:
        _check_order(self.started_at, self.completed_at)
        return self


class Approval(_Strict):
    """Who approved an export for publication; ``approved`` needs ``approver`` and ``approved_at``."""

    status: Literal["approved", "pending", "rejected"]
    approver: str | None = Field(default=None, max_length=200)
    approved_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _complete(self) -> Approval:
        if self.status == "approved" and (not self.approver or self.approved_at is None):
            raise ValueError("an approved export needs approver and approved_at")
        return self


class Artifact(_Strict):
    """One exported file: ``path`` is relative to the manifest's directory and may not leave it."""

    name: str = Field(min_length=1, max_length=200)
    path: str = Field(min_length=1, max_length=1000)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="lower-case hex SHA-256 of the file")
    media_type: str | None = Field(default=None, max_length=200)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        p = PurePosixPath(value.replace("\\", "/"))
        if p.is_absolute() or re.match(r"^[A-Za-z]:", value) or ".." in p.parts:
            raise ValueError("must be a path relative to the manifest, inside its directory")
        return p.as_posix()

    @field_validator("sha256", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


def endpoint_providers() -> list[str]:
    """The providers an endpoint export may name: those whose ``ProviderSpec.takes`` the export's
    publication event (read from the registry when first needed, so a new endpoint provider is one)."""
    from cavra.connectors.registry import providers_taking
    from cavra.connectors.spec import ENDPOINT_PUBLICATION

    return providers_taking(ENDPOINT_PUBLICATION)


def _endpoint_provider(value: str) -> str:
    known = endpoint_providers()
    if value not in known:
        raise ValueError(f"{value!r} is not an endpoint-management provider (one of: {', '.join(known)})")
    return value


class _EndpointProviderSchema:
    """The JSON schema of an endpoint provider's name: an enum of today's endpoint providers."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"enum": endpoint_providers(), "type": "string"}


EndpointProvider = Annotated[str, AfterValidator(_endpoint_provider), _EndpointProviderSchema()]


class EndpointExport(_Strict):
    """An endpoint-management export manifest (``cavra.endpoint_management.export.v1``)."""

    schema_version: Literal["cavra.endpoint_management.export.v1"] = "cavra.endpoint_management.export.v1"
    export_id: str = Field(pattern=rf"^eme_{_NAME}$", description="eme_ followed by a name")
    release: str = Field(min_length=1, max_length=128)
    channel: str = Field(min_length=1, max_length=128)
    approval: Approval
    providers: list[EndpointProvider] = Field(min_length=1)
    artifacts: list[Artifact] = Field(min_length=1, max_length=100)
    generated_at: AwareDatetime
    generated_by: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> EndpointExport:
        names = [a.name for a in self.artifacts]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"artifact name {dup!r} appears more than once")
        return self


class Decision(BaseModel):
    """One decision of a session. Fields beyond these are kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=True)

    decision: Literal["allow", "block", "approval_required"]
    severity: Severity
    action: str = Field(min_length=1, max_length=500)
    decision_id: str | None = Field(default=None, max_length=200)
    policy: str | None = Field(default=None, max_length=500)
    reason: str | None = Field(default=None, max_length=2000)
    decided_at: AwareDatetime | None = None

    @field_validator("severity", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) and value.lower() in SEVERITIES else value

    @field_validator("decided_at", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return _to_utc(value)


class EvidenceBundle(_Strict):
    """The decisions one agent session made (``cavra.evidence_bundle.v1``)."""

    schema_version: Literal["cavra.evidence_bundle.v1"] = "cavra.evidence_bundle.v1"
    session_id: str = Field(pattern=rf"^{_NAME}$")
    agent_id: str | None = Field(default=None, max_length=200)
    generated_at: AwareDatetime | None = None
    decisions: list[Decision] = Field(max_length=100_000)
    labels: dict[str, str] = Field(default_factory=dict)


def _check_order(started: datetime, completed: datetime | None) -> None:
    if completed is not None and completed < started:
        raise ValueError("completed_at is before started_at")


@dataclass(frozen=True)
class Kind:
    """How one record kind is named, identified and validated."""

    name: str  # the store's kind
    label: str  # for messages
    model: type[BaseModel]
    id_field: str
    id_prefix: str  # "" when the id has no prefix


KINDS: dict[str, Kind] = {
    "promotion_execution": Kind(
        "promotion_execution", "promotion execution", PromotionExecution, "execution_id", "rpe_"
    ),
    "rollback_execution": Kind(
        "rollback_execution", "rollback execution", RollbackExecution, "execution_id", "rre_"
    ),
    "endpoint_export": Kind(
        "endpoint_export", "endpoint-management export", EndpointExport, "export_id", "eme_"
    ),
    "evidence_bundle": Kind("evidence_bundle", "evidence bundle", EvidenceBundle, "session_id", ""),
}
_ALIASES = {
    "promotion-execution": "promotion_execution",
    "promotion-executions": "promotion_execution",
    "rollback-execution": "rollback_execution",
    "rollback-executions": "rollback_execution",
    "endpoint-management-export": "endpoint_export",
    "endpoint-management-exports": "endpoint_export",
    "endpoint-export": "endpoint_export",
    "evidence-bundle": "evidence_bundle",
}
_SCHEMA_KIND = {str(k.model.model_fields["schema_version"].default): name for name, k in KINDS.items()}


def kind_of(name: str) -> Kind:
    """The record kind by store name (``promotion_execution``) or route alias (``promotion-execution``)."""
    key = _ALIASES.get(name, name)
    try:
        return KINDS[key]
    except KeyError:
        raise InputError(f"unknown record kind {name!r} (expected one of: {', '.join(KINDS)})") from None


def _detected(raw: Mapping[str, Any]) -> Kind | None:
    """The kind a body claims to be, from its ``schema_version`` or id prefix."""
    schema = raw.get("schema_version")
    if isinstance(schema, str) and schema in _SCHEMA_KIND:
        return KINDS[_SCHEMA_KIND[schema]]
    for kind in KINDS.values():
        value = raw.get(kind.id_field)
        if kind.id_prefix and isinstance(value, str) and value.startswith(kind.id_prefix):
            return kind
    if "decisions" in raw and "session_id" in raw:
        return KINDS["evidence_bundle"]
    return None


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_errors(source: str, exc: ValidationError) -> str:
    """``SOURCE: field a.b[2].c: problem; field …`` (at most five problems, never the input values)."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = _loc(tuple(err["loc"]))
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        problems.append(f"field {loc}: {msg}" if loc else msg)
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return f"{source}: " + "; ".join(problems[:5]) + more


def validate_record(kind: str | Kind, raw: object, *, source: str = "request body") -> dict[str, Any]:
    """Validate a JSON object as ``kind``; return the normalized record or raise InputError.

    Text the store cannot keep (a NUL character or a lone surrogate anywhere, an artifact path included;
    see :mod:`cavra.storable`) is refused with the field's path."""
    k = kind if isinstance(kind, Kind) else kind_of(kind)
    if not isinstance(raw, Mapping):
        raise InputError(f"{source}: a {k.label} must be a JSON object, got {type(raw).__name__}")
    check_storable(raw, source)
    claimed = _detected(raw)
    if claimed is not None and claimed is not k:
        raise InputError(
            f"{source}: this is a {claimed.label} ({claimed.id_field} or schema_version), "
            f"expected a {k.label}"
        )
    try:
        model = k.model.model_validate(dict(raw))
    except ValidationError as exc:
        raise InputError(format_errors(source, exc)) from None
    return model.model_dump(mode="json", exclude_none=False)


def record_id(kind: str | Kind, record: Mapping[str, Any]) -> str:
    k = kind if isinstance(kind, Kind) else kind_of(kind)
    return str(record[k.id_field])


def json_schema(kind: str | Kind) -> dict[str, Any]:
    """The JSON schema of a record kind (draft 2020-12, as shipped in ``cavra/schemas``)."""
    k = kind if isinstance(kind, Kind) else kind_of(kind)
    schema = k.model.model_json_schema(mode="validation")
    version = str(k.model.model_fields["schema_version"].default)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://cavra.dev/schemas/{version}.json",
        **schema,
        "title": version,
    }
