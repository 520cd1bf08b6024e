"""No configured secret (connector credentials, secret webhook URLs, OAuth tokens fetched during delivery,
API tokens), in any encoded form, appears on any console page, with right and with wrong credentials."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from cavra.api.settings import ApiSettings
from cavra.config import load_config
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.governance import service as governance
from cavra.store import open_store

from .conftest import EXPORT, EXPORT_DIR, POLICY, PROMOTION, ROLLBACK, TOKENS, load, running, token_set

SIEM_CHAT_ITSM = "webhook,slack,teams,jira,servicenow,sentinel,splunk,datadog"


def forms(value: str) -> Iterator[str]:
    yield from (
        value,
        quote(value, safe=""),
        quote_plus(value),
        base64.b64encode(value.encode()).decode()[:-2],
    )
    yield json.dumps(value)[1:-1]


def secret_values(env: dict[str, str], srv: EmulatorServer) -> set[str]:
    found = {v for v in env.values() if not v.startswith("http")}
    for v in env.values():  # webhook URLs that are credentials: the path (Slack) and signature (Teams)
        if "/slack/services/" in v:
            found.add(v.split("/slack/services/", 1)[1])
        if "sig=" in v:
            found.add(v.split("sig=", 1)[1])
    found |= set(TOKENS.values())
    found |= {t.value for t in srv.hub.tokens.values()} | set(srv.hub.tokens)
    return {f for s in found for f in forms(s) if len(f) >= 8}


def wrong(env: dict[str, str]) -> dict[str, str]:
    return {k: v if v.startswith("http") else f"WRONG-{k}-7e6d5c4b3a29" for k, v in env.items()}


@pytest.mark.parametrize("credentials", ["right", "wrong"])
async def test_no_secret_on_any_console_page(tmp_path: Path, credentials: str) -> None:
    async with EmulatorServer() as srv:
        config, env = demo_environment(srv.base_url, srv.settings)
        used = env if credentials == "right" else wrong(env)
        path = tmp_path / "connectors.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        loaded = load_config(str(path), used)
        store_url = str(tmp_path / "metadata.db")
        echo = '{"echo": "' + used["WEBHOOK_SIGNING_SECRET"] + '", "key": "' + used["DATADOG_API_KEY"] + '"}'
        srv.hub.add_fault("webhook", Fault(status=503, count=1, body=echo))
        with open_store(store_url) as store:
            for iid, provider in (("siem", "splunk"), ("chat", "slack"), ("dd", "datadog")):
                governance.upsert_integration(store, {"integration_id": iid, "provider": provider})
                await governance.deliver_integration(
                    store, loaded, iid, {"event_type": "cavra.leak_test"}, retries=1, policy=POLICY
                )
            await governance.deliver_promotion_audit(
                store, loaded, load(PROMOTION), provider=SIEM_CHAT_ITSM, retries=1, policy=POLICY
            )
            srv.hub.add_fault("webhook", Fault(status=401, count=1, body=echo))
            await governance.deliver_rollback_execution(
                store, loaded, load(ROLLBACK), provider=SIEM_CHAT_ITSM, retries=1, policy=POLICY
            )
            for provider in ("jamf", "intune", "linux"):
                await governance.publish_endpoint_export(
                    store,
                    loaded,
                    load(EXPORT),
                    provider=provider,
                    retries=1,
                    base_dir=EXPORT_DIR,
                    policy=POLICY,
                )
            board = governance.connector_delivery_dashboard(store)
        if credentials == "right":
            assert board["totals"]["succeeded"] >= 12, "the happy path must really deliver"
            assert srv.hub.tokens, "OAuth tokens must have been fetched"
        else:
            assert board["totals"]["failed"] >= 10, "wrong credentials must really be refused"
        settings = ApiSettings(config_path=str(path), store_url=store_url, environ=used, tokens=token_set())
        pages: list[str] = []
        async with running(settings) as c:
            form = await c.get("/console/login")
            assert form.status_code == 200
            pages.append(form.text)
            login = await c.post(
                "/console/login", data={"token": TOKENS["auditor"]}, headers={"Origin": "http://console.test"}
            )
            assert login.status_code == 303
            pages.append(login.text)
            listing = await c.get("/console/deliveries?limit=500")
            ids = sorted(set(re.findall(r"/console/deliveries/(dlv_[0-9a-f]+)", listing.text)))
            # one record per provider: 3 integrations, 8 promotion and 8 rollback providers, 3 publications
            assert len(ids) == 3 + 8 + 8 + 3
            paths = [
                "/console",
                "/console/deliveries?limit=500",
                "/console/deliveries?success=false",
                "/console/publications",
                "/console/integrations",
                "/console/deliveries/dlv_missing",
                f"/console/deliveries?cursor={quote(used['SPLUNK_HEC_TOKEN'])}",
                *(f"/console/deliveries/{i}" for i in ids),
            ]
            for p in paths:
                resp = await c.get(p)
                assert resp.status_code in (200, 404, 422), (p, resp.status_code)
                pages.append(f"{resp.status_code} {dict(resp.headers)}\n{resp.text}")
            assert any("**REDACTED**" in text for text in pages)
        secrets = secret_values(env, srv) | secret_values(used, srv)
    assert len(secrets) > 30
    for text in pages:
        for secret in secrets:
            assert secret not in text, f"secret {secret[:4]}… leaked in {text[:400]}"
