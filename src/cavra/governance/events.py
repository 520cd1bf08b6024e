"""Governance records → the events connectors deliver.

* evidence bundle → ``cavra.evidence_bundle`` (counts and ``max_severity`` by severity order);
* promotion execution → ``cavra.release.promotion_audit``;
* rollback execution → ``cavra.release.rollback_execution`` (severity ``critical``);
* endpoint-management export → ``cavra.endpoint_management.publication`` (artifacts with their SHA-256 and,
  up to 256 KiB each, their content in base64), built only when the export may be published.

Every event's ``event_id`` is ``evt_`` + SHA-256 of (event type, record id, canonical record): the same
record always gives the same id, so a re-delivery reaches providers with the same idempotency key.
Builders take normalized records (see :func:`cavra.governance.records.validate_record`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cavra.errors import InputError
from cavra.events import ENDPOINT_PUBLICATION, EVIDENCE_BUNDLE, canonical_json, max_severity

PROMOTION_AUDIT = "cavra.release.promotion_audit"
ROLLBACK_EXECUTION = "cavra.release.rollback_execution"
PUBLICATION = ENDPOINT_PUBLICATION
#: Artifacts up to this size travel inline (``content_base64``), while the inline total stays within it too
#: (the endpoint connectors embed at most this much); the others by name, size and hash only.
INLINE_LIMIT = 256 * 1024
_LISTED = 50  # at most this many blocked actions / affected targets are listed in an event


def stable_event_id(event_type: str, record_id: str, record: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(
        event_type.encode() + b"\0" + record_id.encode() + b"\0" + canonical_json(dict(record))
    )
    return f"evt_{digest.hexdigest()[:32]}"


def evidence_bundle_event(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """The SIEM event of a session's decisions."""
    decisions: list[Mapping[str, Any]] = list(bundle.get("decisions") or [])
    blocked = [d for d in decisions if d.get("decision") == "block"]
    blocked_actions = list(dict.fromkeys(str(d.get("action")) for d in blocked))
    event: dict[str, Any] = {
        "event_type": EVIDENCE_BUNDLE,
        "event_id": stable_event_id(EVIDENCE_BUNDLE, str(bundle["session_id"]), bundle),
        "session_id": bundle["session_id"],
        "agent_id": bundle.get("agent_id"),
        "generated_at": bundle.get("generated_at"),
        "decision_count": len(decisions),
        "allowed_count": sum(1 for d in decisions if d.get("decision") == "allow"),
        "blocked_count": len(blocked),
        "approval_required_count": sum(1 for d in decisions if d.get("decision") == "approval_required"),
        "max_severity": max_severity(d.get("severity") for d in decisions),
        "blocked_actions": blocked_actions[:_LISTED],
    }
    return event


def promotion_audit_event(execution: Mapping[str, Any]) -> dict[str, Any]:
    """The audit event of a promotion execution; a failed promotion is ``high``, an aborted one ``medium``."""
    gates: list[Mapping[str, Any]] = list(execution.get("gates") or [])
    status = execution.get("status")
    severity = {"failed": "high", "aborted": "medium"}.get(str(status), "info")
    return {
        "event_type": PROMOTION_AUDIT,
        "event_id": stable_event_id(PROMOTION_AUDIT, str(execution["execution_id"]), execution),
        "execution_id": execution["execution_id"],
        "release": execution.get("release"),
        "from_environment": execution.get("from_environment"),
        "to_environment": execution.get("to_environment"),
        "status": status,
        "severity": severity,
        "strategy": execution.get("strategy"),
        "initiated_by": execution.get("initiated_by"),
        "approved_by": execution.get("approved_by"),
        "change_ticket": execution.get("change_ticket"),
        "started_at": execution.get("started_at"),
        "completed_at": execution.get("completed_at"),
        "gate_count": len(gates),
        "failed_gates": [g.get("name") for g in gates if g.get("status") == "failed"],
        "gates": [{"name": g.get("name"), "status": g.get("status")} for g in gates],
        "evidence_sessions": list(execution.get("evidence_sessions") or []),
    }


def rollback_execution_event(execution: Mapping[str, Any]) -> dict[str, Any]:
    """The event of a rollback execution: always ``critical``."""
    targets = list(execution.get("affected_targets") or [])
    return {
        "event_type": ROLLBACK_EXECUTION,
        "event_id": stable_event_id(ROLLBACK_EXECUTION, str(execution["execution_id"]), execution),
        "execution_id": execution["execution_id"],
        "release": execution.get("release"),
        "rolled_back_to": execution.get("rolled_back_to"),
        "environment": execution.get("environment"),
        "reason": execution.get("reason"),
        "trigger": execution.get("trigger"),
        "status": execution.get("status"),
        "severity": "critical",
        "initiated_by": execution.get("initiated_by"),
        "promotion_execution_id": execution.get("promotion_execution_id"),
        "started_at": execution.get("started_at"),
        "completed_at": execution.get("completed_at"),
        "affected_target_count": len(targets),
        "affected_targets": targets[:_LISTED],
    }


class PublicationRefused(InputError):
    """An export may not be published (not approved, or an artifact is missing or differs)."""

    def __init__(self, export_id: str, reason: str, *, delivery_id: str | None = None) -> None:
        recorded = f" (recorded as failed delivery {delivery_id})" if delivery_id else ""
        super().__init__(f"{export_id}: publication refused: {reason}{recorded}")
        self.export_id = export_id
        self.reason = reason
        #: the failed publication delivery that records this refusal, once stored
        self.delivery_id = delivery_id


@dataclass(frozen=True)
class CheckedArtifact:
    """An artifact whose file matched the manifest; ``content`` is kept when it travels inline."""

    name: str
    size: int
    sha256: str
    media_type: str | None
    content: bytes | None


def _hash_file(path: Path) -> tuple[int, str, bytes | None]:
    digest = hashlib.sha256()
    size = 0
    head = bytearray()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            size += len(chunk)
            digest.update(chunk)
            if size <= INLINE_LIMIT:
                head += chunk
    return size, digest.hexdigest(), bytes(head) if size <= INLINE_LIMIT else None


def check_artifacts(export: Mapping[str, Any], base_dir: Path) -> list[CheckedArtifact]:
    """Every artifact must exist inside ``base_dir`` and match its manifest size and SHA-256."""
    export_id = str(export["export_id"])
    root = base_dir.resolve()
    checked: list[CheckedArtifact] = []
    for artifact in export.get("artifacts") or []:
        name, rel = str(artifact["name"]), str(artifact["path"])
        if "\x00" in rel:  # a record stored before paths were checked: refused, not a 500
            raise PublicationRefused(export_id, f"artifact {name}: its path contains a NUL character")
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise PublicationRefused(export_id, f"artifact {name}: {rel} leaves the manifest's directory")
        try:
            size, sha, content = _hash_file(path)
        except FileNotFoundError:
            raise PublicationRefused(export_id, f"artifact {name}: file {rel} not found") from None
        except IsADirectoryError:
            raise PublicationRefused(export_id, f"artifact {name}: {rel} is a directory") from None
        except OSError as exc:
            raise PublicationRefused(
                export_id, f"artifact {name}: {rel} cannot be read ({exc.strerror})"
            ) from None
        if sha != artifact["sha256"]:
            raise PublicationRefused(
                export_id,
                f"artifact {name}: sha256 of {rel} is {sha[:16]}…, "
                f"the manifest says {artifact['sha256'][:16]}…",
            )
        if size != artifact["size"]:
            raise PublicationRefused(
                export_id, f"artifact {name}: {rel} is {size} bytes, the manifest says {artifact['size']}"
            )
        checked.append(CheckedArtifact(name, size, sha, artifact.get("media_type"), content))
    return checked


def check_publishable(export: Mapping[str, Any], provider: str | None = None) -> None:
    """Refuse an export that is not approved, or not meant for ``provider``."""
    export_id = str(export["export_id"])
    approval = export.get("approval") or {}
    status = approval.get("status")
    if status != "approved":
        raise PublicationRefused(export_id, f"approval is {status!r}; only an approved export is published")
    providers = list(export.get("providers") or [])
    if provider is not None and provider not in providers:
        raise PublicationRefused(
            export_id, f"provider {provider!r} is not one of the export's providers ({', '.join(providers)})"
        )


def publication_event(
    export: Mapping[str, Any], base_dir: Path, *, provider: str | None = None
) -> dict[str, Any]:
    """The publication event of an approved export whose artifacts all match; else PublicationRefused."""
    check_publishable(export, provider)
    artifacts = check_artifacts(export, base_dir)
    approval = dict(export.get("approval") or {})
    items: list[dict[str, Any]] = []
    budget = INLINE_LIMIT
    for a in artifacts:
        item: dict[str, Any] = {
            "name": a.name,
            "size": a.size,
            "sha256": a.sha256,
            "media_type": a.media_type,
        }
        inline = a.content is not None and a.size <= budget
        item["content_included"] = inline
        if inline and a.content is not None:
            item["content_base64"] = base64.b64encode(a.content).decode("ascii")
            budget -= a.size
        items.append(item)
    return {
        "event_type": PUBLICATION,
        "event_id": stable_event_id(PUBLICATION, str(export["export_id"]), export),
        "export_id": export["export_id"],
        "release": export.get("release"),
        "channel": export.get("channel"),
        "severity": "info",
        "approval": {
            "status": approval.get("status"),
            "approver": approval.get("approver"),
            "approved_at": approval.get("approved_at"),
        },
        "providers": list(export.get("providers") or []),
        "generated_at": export.get("generated_at"),
        "artifact_count": len(items),
        "total_size": sum(a.size for a in artifacts),
        "artifacts": items,
    }
