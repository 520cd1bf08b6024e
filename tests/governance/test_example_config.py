"""examples/connectors/cavra-connectors.example.json: every provider, valid keys, secrets only by *_env."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cavra.config import load_config
from cavra.connectors.registry import PROVIDERS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/connectors/cavra-connectors.example.json"

#: plausible production values for every variable the example names
ENVIRONMENT = {
    "SPLUNK_HEC_URL": "https://splunk.example/services/collector",
    "SPLUNK_HEC_TOKEN": "3f9c1e2a-5b7d-4c8e-9a0b-1d2e3f4a5b6c",
    "SENTINEL_DCE_URL": "https://cavra-dce-abcd.westeurope-1.ingest.monitor.azure.com",
    "SENTINEL_CLIENT_SECRET": "sentinel-client-secret-value-0001",
    "DATADOG_API_KEY": "0123456789abcdef0123456789abcdef",
    "WEBHOOK_URL": "https://hooks.example/cavra",
    "WEBHOOK_SIGNING_SECRET": "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode(),
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "TEAMS_WEBHOOK_URL": "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=xyz",
    "JIRA_URL": "https://example.atlassian.net",
    "JIRA_API_TOKEN": "jira-api-token-value-0001",
    "SERVICENOW_URL": "https://example.service-now.com",
    "SERVICENOW_PASSWORD": "servicenow-password-0001",
    "JAMF_URL": "https://example.jamfcloud.com",
    "JAMF_CLIENT_SECRET": "jamf-client-secret-0001",
    "INTUNE_GRAPH_URL": "https://graph.microsoft.com",
    "INTUNE_CLIENT_SECRET": "intune-client-secret-0001",
    "AWX_URL": "https://awx.example",
    "AWX_TOKEN": "awx-token-value-0001",
}


def _env_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_env") and isinstance(value, str):
                names.add(value)
            names |= _env_names(value)
    return names


def test_example_names_every_provider_and_only_env_secrets() -> None:
    data = json.loads(EXAMPLE.read_text())
    assert sorted(data["connectors"]) == sorted(PROVIDERS)
    assert _env_names(data) == set(ENVIRONMENT)
    assert {"SPLUNK_HEC_URL", "SPLUNK_HEC_TOKEN"} <= _env_names(data["connectors"]["splunk"])
    for provider, entry in data["connectors"].items():
        inline = {"url", "token", "api_key", "authorization", "client_secret", "api_token", "password"} & set(
            entry
        )
        assert not inline, f"{provider} has inline secrets {inline}"


def test_example_loads_with_every_variable_set() -> None:
    loaded = load_config(str(EXAMPLE), environ=ENVIRONMENT)
    assert loaded.errors == {}
    assert sorted(loaded.targets) == sorted(PROVIDERS)
    for provider, target in loaded.targets.items():
        assert target.category == PROVIDERS[provider][2]


def test_a_missing_variable_stops_only_its_connector() -> None:
    env = {k: v for k, v in ENVIRONMENT.items() if k != "JAMF_CLIENT_SECRET"}
    loaded = load_config(str(EXAMPLE), environ=env)
    assert list(loaded.errors) == ["jamf"]
    assert "JAMF_CLIENT_SECRET" in loaded.errors["jamf"]
    assert len(loaded.targets) == len(PROVIDERS) - 1
