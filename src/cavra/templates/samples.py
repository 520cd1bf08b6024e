"""Sample events of every kind CAVRA publishes, to check templates at load and in tests: an evidence
bundle, a promotion audit, a rollback execution and an endpoint-management publication (with a link)."""

from __future__ import annotations

from typing import Any

SAMPLES: tuple[dict[str, Any], ...] = (
    {
        "event_type": "cavra.evidence_bundle",
        "event_id": "evt_sample_bundle_0001",
        "session_id": "demo-session",
        "agent_id": "agent-build-helper",
        "generated_at": "2025-11-20T08:15:00Z",
        "decision_count": 7,
        "allowed_count": 2,
        "blocked_count": 4,
        "approval_required_count": 1,
        "max_severity": "high",
        "blocked_actions": ["secrets.read", "http.request", "shell.exec"],
        "labels": {"env": "prod", "team": "platform"},
    },
    {
        "event_type": "cavra.release.promotion_audit",
        "event_id": "evt_sample_promotion_0001",
        "execution_id": "rpe_prod_42",
        "release": "agent-policy 2.3.0",
        "from_environment": "staging",
        "to_environment": "prod",
        "status": "failed",
        "approved_by": "release-manager",
        "dry_run": False,
        "generated_at": "2025-11-20T09:00:00Z",
        "console_url": "https://cavra.example.com/releases/rpe_prod_42",
    },
    {
        "event_type": "cavra.release.rollback_execution",
        "event_id": "evt_sample_rollback_0001",
        "execution_id": "rre_prod",
        "release": "agent-policy 2.3.0",
        "rolled_back_to": "agent-policy 2.2.4",
        "environment": "prod",
        "reason": "blocked actions <over> budget & rising",
        "status": "completed",
        "generated_at": "2025-11-20T09:30:00Z",
    },
    {
        "event_type": "cavra.endpoint_management.publication",
        "event_id": "evt_sample_publication_0001",
        "export_id": "eme_fleet_7",
        "platform": "jamf",
        "profile": "CAVRA agent policy",
        "device_count": 312,
        "severity": "medium",
        "url": "https://cavra.example.com/exports/eme_fleet_7?a=1&b=2",
    },
)
