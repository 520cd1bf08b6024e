"""Registering a provider through docs/connectors/adding-a-provider.md makes it a provider everywhere, and
``registered`` undoes it. (The shared kit runs Twelfth in test_kit_contract.py and test_shared_kit.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from cavra.config import load_config
from cavra.connectors import registry
from cavra.connectors.registry import CATEGORY_OF, PROVIDERS, registered
from cavra.connectors.spec import ProviderSpec
from cavra.emulators.server import EMULATORS, EmulatorServer
from cavra.errors import ConfigError
from cavra.governance.records import endpoint_providers
from cavra.ratelimit import DEFAULT_RATE_LIMITS, RateLimit
from tests.connectors.kit import event_for
from tests.connectors.twelfth.connector import SPEC, TwelfthConnector


def _absent() -> None:
    assert "twelfth" not in PROVIDERS and "twelfth" not in CATEGORY_OF and "twelfth" not in EMULATORS
    assert "twelfth" not in DEFAULT_RATE_LIMITS and "twelfth" not in registry.example_config()["connectors"]


def test_not_a_provider_until_registered() -> None:
    _absent()
    with pytest.raises(ConfigError, match="unknown provider 'twelfth'"):
        registry.spec_of("twelfth")


def test_registered_it_is_a_provider_everywhere_and_unregistered_after() -> None:
    with registered(SPEC):
        assert PROVIDERS["twelfth"] is SPEC and CATEGORY_OF["twelfth"] == "siem"
        assert isinstance(registry.get_connector("twelfth"), TwelfthConnector)
        assert (TwelfthConnector.provider, TwelfthConnector.category) == ("twelfth", "siem")
        assert DEFAULT_RATE_LIMITS["twelfth"] == RateLimit(5.0, 10.0)
        assert EMULATORS["twelfth"] == "tests.connectors.twelfth.emulator"
        assert registry.example_config()["connectors"]["twelfth"]["token_env"] == "TWELFTH_TOKEN"
        assert registry.example_environment()["TWELFTH_TOKEN"] == "twelfth-token-0001"
        assert "twelfth" not in endpoint_providers()  # it takes every event, not only publications
        assert event_for("twelfth")["event_type"] == "cavra.evidence_bundle"
        assert list(PROVIDERS)[-1] == "twelfth"  # after the built-in ones
    _absent()


def test_the_example_entry_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"connectors": {"twelfth": {"url_env": "TWELFTH_URL", "token_env": "TWELFTH_TOKEN"}}}')
    env = dict(SPEC.example_env)
    with registered(SPEC):
        loaded = load_config(str(path), environ=env)
        assert loaded.errors == {} and loaded.targets["twelfth"].category == "siem"
    with pytest.raises(ConfigError, match=r"connectors\.twelfth: not a provider's name"):
        load_config(str(path), environ=env)  # no longer known once unregistered
    _absent()


async def test_its_emulator_is_mounted_and_writes_a_demo_entry() -> None:
    with registered(SPEC):
        async with EmulatorServer(providers=["twelfth"]) as srv:
            config, env = srv.demo_environment()
    assert config["connectors"]["twelfth"]["token_env"] == "TWELFTH_TOKEN"
    assert env["TWELFTH_URL"].endswith("/twelfth")


def test_a_built_in_name_and_a_reserved_one_are_refused() -> None:
    clash = ProviderSpec(
        name="splunk",
        category="siem",
        connector=type("Clash", (TwelfthConnector,), {}),
        emulator="tests.connectors.twelfth.emulator",
        example={},
        example_env={},
    )
    with pytest.raises(ConfigError, match="built in"):
        registry.register(clash)
    with pytest.raises(ValueError, match="reserved"):
        ProviderSpec(
            name="no-such-provider",
            category="siem",
            connector=type("Reserved", (TwelfthConnector,), {}),
            emulator="x.y",
            example={},
            example_env={},
        )
    with pytest.raises(ConfigError, match=r"ProviderSpec\('thirteenth'\)\.rate_limit: expected RATE"):
        ProviderSpec(
            name="thirteenth",
            category="siem",
            connector=type("Fast", (TwelfthConnector,), {}),
            emulator="x.y",
            example={},
            example_env={},
            rate_limit="fast",
        )
    with pytest.raises(ValueError, match="category"):
        ProviderSpec(
            name="thirteenth",
            category="pager",  # type: ignore[arg-type]
            connector=type("Pager", (TwelfthConnector,), {}),
            emulator="x.y",
            example={},
            example_env={},
        )
    _absent()


def test_a_connector_class_serves_one_provider() -> None:
    with pytest.raises(ValueError, match="already the connector of provider 'twelfth'"):
        ProviderSpec(
            name="thirteenth",
            category="siem",
            connector=TwelfthConnector,
            emulator="x.y",
            example={},
            example_env={},
        )
