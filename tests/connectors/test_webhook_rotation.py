"""Webhook signing-secret rotation: a destination with several secrets signs each delivery once per secret
(Standard Webhooks' space-separated ``webhook-signature``), so a receiver holding either secret verifies
it. Verified with the ``standardwebhooks`` reference library and against the webhook emulator on loopback
(two receivers: one still on the old secret, one already on the new one)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from cavra.config import config_from_data
from cavra.service import deliver_event

NEW = "whsec_" + base64.b64encode(b"the-new-signing-secret-32-bytes!").decode()
OLD = "whsec_" + base64.b64encode(b"the-old-signing-secret-32-bytes!").decode()
OTHER = "whsec_" + base64.b64encode(b"a-secret-nobody-configured-here!").decode()
EVENT = {"event_type": "cavra.evidence_bundle", "event_id": "evt-rotate", "session_id": "s-1"}


async def test_each_delivery_is_signed_with_every_secret(emulator_factory: Any, transport: Any) -> None:
    overrides = {"webhook": {"receiver_secrets": {"old": OLD, "new": NEW}}}
    async with emulator_factory(providers=["webhook"], overrides=overrides) as srv:
        hook = {
            "provider": "webhook",
            "signing_secrets_env": ["NEW_SECRET", "OLD_SECRET"],
            "allow_http": True,
        }
        connectors = {
            "hook-old": {**hook, "url_env": "OLD_URL"},
            "hook-new": {**hook, "url_env": "NEW_URL"},
        }
        env = {
            "NEW_SECRET": NEW,
            "OLD_SECRET": OLD,
            "OLD_URL": f"{srv.base_url}/webhook/old",
            "NEW_URL": f"{srv.base_url}/webhook/new",
        }
        config = config_from_data({"connectors": connectors}, "connectors.json", env)
        assert not config.errors
        record = await deliver_event(EVENT, config, ["hook-old", "hook-new"], transport=transport)
        assert record["success"] is True, record["errors"]  # both receivers verified a signature
        received = srv.hub.received("webhook")
        assert len(received) == 2
        for request in received:
            headers = {k.lower(): v for k, v in request.headers.items()}
            signatures = headers["webhook-signature"].split(" ")
            assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
            for secret in (NEW, OLD):  # the reference library accepts the message with either secret
                Webhook(secret).verify(request.body, headers)
            with pytest.raises(WebhookVerificationError):
                Webhook(OTHER).verify(request.body, headers)
        text = str(record)
        assert NEW not in text and OLD not in text and "the-new-signing" not in text


def test_every_rotated_secret_is_checked_and_named(transport: Any) -> None:
    hook = {"url": "https://hooks.test/x", "signing_secrets": [NEW, "whsec_short"]}
    config = config_from_data({"connectors": {"webhook": hook}}, "connectors.json", {})
    assert "signing_secrets[1] must be a Standard Webhooks secret" in config.errors["webhook"]
    missing = {"url": "https://hooks.test/x", "signing_secrets_env": ["NEW_SECRET", "GONE"]}
    config = config_from_data({"connectors": {"webhook": missing}}, "connectors.json", {"NEW_SECRET": NEW})
    assert "connectors.webhook.signing_secrets_env[1]" in config.errors["webhook"]
    assert "GONE is not set" in config.errors["webhook"]
