"""examples/connectors/cavra-connectors.example.json: every provider, valid keys, secrets only by *_env.

The file is generated from each connector's ``ProviderSpec.example`` (``python -m cavra.connectors.registry``)
and every variable it names has a plausible production value in the spec's ``example_env``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cavra.config import load_config
from cavra.connectors.registry import BUILTIN, PROVIDERS, example_config, example_environment

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/connectors/cavra-connectors.example.json"
ENVIRONMENT = example_environment()


def _env_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_env") and isinstance(value, str):
                names.add(value)
            names |= _env_names(value)
    return names


def test_example_is_generated_from_the_specs() -> None:
    assert json.loads(EXAMPLE.read_text()) == example_config(), (
        "regenerate: python -m cavra.connectors.registry > examples/connectors/cavra-connectors.example.json"
    )


def test_example_names_every_provider_and_only_env_secrets() -> None:
    data = json.loads(EXAMPLE.read_text())
    assert sorted(data["connectors"]) == sorted(BUILTIN) == sorted(PROVIDERS)
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
        assert target.category == PROVIDERS[provider].category


def test_a_missing_variable_stops_only_its_connector() -> None:
    env = {k: v for k, v in ENVIRONMENT.items() if k != "JAMF_CLIENT_SECRET"}
    loaded = load_config(str(EXAMPLE), environ=env)
    assert list(loaded.errors) == ["jamf"]
    assert "JAMF_CLIENT_SECRET" in loaded.errors["jamf"]
    assert len(loaded.targets) == len(PROVIDERS) - 1
