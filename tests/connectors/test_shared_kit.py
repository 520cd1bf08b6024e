"""What every connector must do, run for all of them against their emulators over loopback.

* the happy path delivers;
* (the status table, timeouts, refused connections and Retry-After run without sockets in
  tests/connectors/test_kit_contract.py, with each provider's deviations in its OVERRIDES);
* no secret of the target (nor its encoded forms) appears in the record or the logs, on success and failure,
  even when the provider echoes it back.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
from urllib.parse import quote

import pytest

from cavra.connectors.registry import PROVIDERS
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.transport import AiohttpTransport
from tests.connectors.kit import EMULATORS, event_for, kit_providers, target_for

ALL = kit_providers()
FAST = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.02)


def test_every_registered_provider_has_a_connector_and_an_emulator() -> None:
    for provider, spec in PROVIDERS.items():
        assert spec.connector.provider == provider and spec.connector.category == spec.category
        for module in spec.emulators.values():
            assert importlib.util.find_spec(module) is not None, (provider, module)
        assert provider in EMULATORS


@pytest.mark.parametrize("provider", ALL)
async def test_happy_path(provider: str) -> None:
    names, _ = EMULATORS[provider]
    async with EmulatorServer(providers=names) as srv, AiohttpTransport() as tr:
        target, _secrets = target_for(srv, provider)
        d = await deliver_one(target, event_for(provider), policy=FAST, transport=tr)
    assert d.success, d.error
    assert d.status == "delivered"
    assert d.attempt_count >= 1


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), base64.b64encode(value.encode()).decode()]


@pytest.mark.parametrize("provider", ALL)
async def test_no_secret_leaks(provider: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    names, answering = EMULATORS[provider]
    async with EmulatorServer(providers=names) as srv, AiohttpTransport() as tr:
        target, secrets = target_for(srv, provider)
        assert secrets
        ok = await deliver_one(
            target, event_for(provider, f"evt_leak_ok_{provider}"), policy=FAST, transport=tr
        )
        echo = " ".join(secrets.values())
        srv.hub.add_fault(answering, Fault(status=500, count=5, body=f'{{"error": "bad credential {echo}"}}'))
        bad = await deliver_one(
            target,
            event_for(provider, f"evt_leak_bad_{provider}"),
            policy=RetryPolicy(retries=0),
            transport=tr,
        )
    assert ok.success, ok.error
    assert not bad.success
    texts = [json.dumps(ok.to_dict()), json.dumps(bad.to_dict()), caplog.text, repr(target.settings)]
    for name, value in secrets.items():
        for form in _forms(value):
            for text in texts:
                assert form not in text, f"{provider}: {name} leaked"
