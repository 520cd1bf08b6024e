"""A fetched access token, reused from the cache, is scrubbed bare (not only as ``Bearer <token>``) when a
provider's answer echoes it (issue 12: Sentinel's cached token was taught to the redactor only with its
scheme). Every connector that fetches a token: Sentinel and Intune (Entra ID), Jamf."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from cavra.connectors.base import TokenCache
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.transport import AiohttpTransport
from tests.connectors.kit import EMULATORS, event_for, target_for

POLICY = RetryPolicy(retries=0)


@pytest.mark.parametrize("provider", ["sentinel", "intune", "jamf"])
async def test_a_cached_token_echoed_bare_is_scrubbed(provider: str) -> None:
    async with EmulatorServer(providers=EMULATORS[provider][0]) as srv:
        target, _ = target_for(srv, provider)
        transport = AiohttpTransport()
        tokens = TokenCache()
        try:
            first = await deliver_one(
                target, event_for(provider), policy=POLICY, transport=transport, tokens=tokens
            )
            assert first.status == "delivered", first.error
            issued = {t.value for t in srv.hub.tokens.values()}
            assert issued, "a token must have been fetched"
            token = next(iter(issued))
            encoded = base64.b64encode(token.encode()).decode()
            echo = f"the credential {token} has expired; as sent: {quote(token, safe='')} {encoded}"
            body = json.dumps(
                {"error": {"code": "InvalidAuthenticationToken", "message": echo}, "detail": echo}
            )
            srv.hub.add_fault(EMULATORS[provider][1], Fault(status=400, count=5, body=body))
            second = await deliver_one(
                target,
                event_for(provider, f"evt_token_{provider}"),
                policy=POLICY,
                transport=transport,
                tokens=tokens,
            )
        finally:
            await transport.close()
    assert second.attempts and second.attempts[0].status_code == 400, "the cached token must have been used"
    assert all(a.step != "token" for a in second.attempts), "the token must come from the cache"
    record = json.dumps(second.to_dict(), default=str)
    for form in (token, quote(token, safe=""), base64.b64encode(token.encode()).decode()):
        for i in range(0, len(form) - 20, 10):
            assert form[i : i + 20] not in record, f"{provider}: the token leaked ({form[:8]}…)"
    assert "has expired" in record, "the echo must have reached the evidence"
