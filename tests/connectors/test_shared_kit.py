"""What every connector must do, run for all of them against their emulators over loopback.

* the happy path delivers;
* one shared status table: 429 and 503 are retried, 400/401/403/404 are not (the provider's own overrides,
  each with its reason, are listed in OVERRIDES);
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
from tests.connectors.kit import EMULATORS, event_for, target_for

ALL = sorted(PROVIDERS)
FAST = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.02)

RETRIED = [429, 503]
NOT_RETRIED = [400, 401, 403, 404]
#: (provider, status) -> expected "retry" / "reject", where a provider deliberately differs from the default
OVERRIDES: dict[tuple[str, int], str] = {}


def test_every_registered_provider_has_a_connector_and_an_emulator() -> None:
    for provider, (module, _cls, _cat) in PROVIDERS.items():
        assert importlib.util.find_spec(module) is not None, provider
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


@pytest.mark.parametrize("status", RETRIED + NOT_RETRIED)
@pytest.mark.parametrize("provider", ALL)
async def test_status_table(provider: str, status: int) -> None:
    names, answering = EMULATORS[provider]
    expected = OVERRIDES.get((provider, status), "retry" if status in RETRIED else "reject")
    async with EmulatorServer(providers=names) as srv, AiohttpTransport() as tr:
        target, _ = target_for(srv, provider)
        headers = {"Retry-After": "0"} if status == 429 else {}
        srv.hub.add_fault(answering, Fault(status=status, count=1, headers=headers, body="{}"))
        d = await deliver_one(target, event_for(provider), policy=FAST, transport=tr)
        faulted = [a for a in d.attempts if a.status_code == status]
        assert faulted, f"{provider}: the faulted answer was not recorded"
        assert faulted[0].verdict == expected, (provider, status, faulted[0].reason)
        if expected == "retry":
            assert d.success, d.error
        else:
            assert not d.success
            assert len(srv.hub.received(answering)) == 1, "a rejected answer must not be retried"


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
