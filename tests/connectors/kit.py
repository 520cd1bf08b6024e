"""The shared test kit every connector runs: events per category, emulator wiring, secrets of a target.

``tests/leak/test_no_canary.py`` runs the canary leak check for every registered provider through
:data:`EMULATORS`: a new connector is covered once its emulator writes a demo config entry and it is
listed here."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cavra.config import Target, target_from_mapping
from cavra.emulators.server import EmulatorServer

#: provider -> the emulators it needs (token issuers first) and the emulator that answers its deliveries
EMULATORS: dict[str, tuple[list[str], str]] = {
    "splunk": (["splunk"], "splunk"),
    "sentinel": (["entra", "sentinel"], "sentinel"),
    "datadog": (["datadog"], "datadog"),
    "webhook": (["webhook"], "webhook"),
    "slack": (["slack"], "slack"),
    "teams": (["teams"], "teams"),
    "jira": (["jira"], "jira"),
    "servicenow": (["servicenow"], "servicenow"),
    "jamf": (["jamf"], "jamf"),
    "intune": (["entra", "graph"], "graph"),
    "linux": (["awx"], "awx"),
}

ENDPOINT = {"jamf", "intune", "linux"}


def evidence_event(event_id: str = "evt_kit_bundle") -> dict[str, Any]:
    return {
        "event_type": "cavra.evidence_bundle",
        "event_id": event_id,
        "session_id": "demo-session",
        "decision_count": 7,
        "blocked_count": 4,
        "approval_required_count": 1,
        "max_severity": "high",
    }


def publication_event(event_id: str = "evt_kit_publication") -> dict[str, Any]:
    content = b"#!/bin/sh\necho governed runtime\n"
    return {
        "event_type": "cavra.endpoint_management.publication",
        "event_id": event_id,
        "export_id": "eme_kit",
        "release": "2026.11.1",
        "channel": "stable",
        "approval": {"status": "approved", "approver": "release-board"},
        "artifacts": [
            {
                "name": "runtime-policy.sh",
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
                "content_base64": base64.b64encode(content).decode(),
            }
        ],
    }


def event_for(provider: str, event_id: str | None = None) -> dict[str, Any]:
    if provider in ENDPOINT:
        return publication_event(event_id or f"evt_kit_{provider}")
    return evidence_event(event_id or f"evt_kit_{provider}")


def target_for(server: EmulatorServer, provider: str, **extra: Any) -> tuple[Target, dict[str, str]]:
    """The target the emulator's demo config describes, and the secrets (env values) it holds."""
    config, env = server.demo_environment()
    raw = {**config["connectors"][provider], **extra}
    target = target_from_mapping(provider, raw, environ=env)
    used = {v for v in raw.values() if isinstance(v, str)}  # the variables this destination names
    secrets = {
        k: v
        for k, v in env.items()
        if k in used and (not k.endswith("_URL") or "slack" in k.lower() or "teams" in k.lower())
    }
    return target, secrets
