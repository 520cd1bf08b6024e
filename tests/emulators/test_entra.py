"""The Entra ID token emulator: form POST, grant type, scope, client authentication, issued tokens."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from cavra.emulators import entra
from cavra.emulators.server import EmulatorServer

TENANT = entra.DEMO_TENANT_ID


def _form(**overrides: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "client_id": entra.SENTINEL_CLIENT_ID,
        "client_secret": entra.SENTINEL_CLIENT_SECRET,
        "scope": "https://monitor.azure.com/.default",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


async def _post(
    srv: EmulatorServer, data: Any, tenant: str = TENANT, **kw: Any
) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        url = f"{srv.base_url}/entra/{tenant}/oauth2/v2.0/token"
        async with http.post(url, data=data, **kw) as resp:
            return resp.status, await resp.json()


async def test_issues_a_token_recorded_with_audience_and_roles() -> None:
    async with EmulatorServer(providers=["entra"]) as srv:
        status, body = await _post(srv, _form())
        assert status == 200
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3599
        issued = srv.hub.tokens[body["access_token"]]
        assert issued.client_id == entra.SENTINEL_CLIENT_ID
        assert issued.audience == "https://monitor.azure.com"
        assert issued.roles == ("Monitoring Metrics Publisher",)
        assert issued.expires_at > time.time() + 3000


async def test_double_slash_scope_form_names_the_same_resource() -> None:
    async with EmulatorServer(providers=["entra"]) as srv:
        status, body = await _post(srv, _form(scope="https://monitor.azure.com//.default"))
        assert status == 200
        assert srv.hub.tokens[body["access_token"]].audience == "https://monitor.azure.com"


async def test_intune_client_gets_a_graph_token_with_its_role() -> None:
    async with EmulatorServer(providers=["entra"]) as srv:
        form = _form(
            client_id=entra.INTUNE_CLIENT_ID,
            client_secret=entra.INTUNE_CLIENT_SECRET,
            scope="https://graph.microsoft.com/.default",
        )
        status, body = await _post(srv, form)
        assert status == 200
        issued = srv.hub.tokens[body["access_token"]]
        assert issued.audience == "https://graph.microsoft.com"
        assert issued.roles == ("DeviceManagementConfiguration.ReadWrite.All",)


async def test_roles_are_per_audience() -> None:
    async with EmulatorServer(providers=["entra"]) as srv:
        status, body = await _post(srv, _form(scope="https://graph.microsoft.com/.default"))
        assert status == 200
        assert srv.hub.tokens[body["access_token"]].roles == ()


async def test_clients_are_configurable() -> None:
    clients = {"app-1": {"secret": "s3cret-value", "roles": {"https://graph.microsoft.com": ["X.Read"]}}}
    async with EmulatorServer(providers=["entra"], overrides={"entra": {"clients": clients}}) as srv:
        form = _form(
            client_id="app-1", client_secret="s3cret-value", scope="https://graph.microsoft.com/.default"
        )
        status, body = await _post(srv, form)
        assert status == 200
        assert srv.hub.tokens[body["access_token"]].roles == ("X.Read",)
        status, body = await _post(srv, _form())
        assert (status, body["error"]) == (400, "unauthorized_client")


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        (_form(scope="https://monitor.azure.com"), 400, "invalid_scope", 1002012),
        # an unknown resource is AADSTS500011 invalid_resource, not invalid_scope
        (_form(scope="https://unknown.example.com/.default"), 400, "invalid_resource", 500011),
        (_form(scope=None), 400, "invalid_request", 900144),
        (_form(grant_type=None), 400, "invalid_request", 900144),
        (_form(grant_type="password"), 400, "unsupported_grant_type", 70003),
        (_form(client_secret="wrong-secret"), 401, "invalid_client", 7000215),
        (_form(client_secret=None), 401, "invalid_client", 7000216),
        (_form(client_id="00000000-0000-0000-0000-000000000000"), 400, "unauthorized_client", 700016),
    ],
)
async def test_token_errors(form: dict[str, str], status: int, error: str, code: int) -> None:
    async with EmulatorServer(providers=["entra"]) as srv:
        got, body = await _post(srv, form)
        assert (got, body["error"], body["error_codes"]) == (status, error, [code])
        assert body["error_description"].startswith(f"AADSTS{code}:")
        assert body["trace_id"] and body["correlation_id"]
        assert srv.hub.tokens == {}


async def test_a_json_body_is_not_a_form() -> None:
    async with EmulatorServer(providers=["entra"]) as srv:
        status, body = await _post(srv, None, json=_form())
        assert (status, body["error"]) == (400, "invalid_request")


async def test_unknown_tenant() -> None:
    async with EmulatorServer(providers=["entra"]) as srv:
        status, body = await _post(srv, _form(), tenant="not-our-tenant")
        assert (status, body["error"]) == (400, "invalid_request")
        assert body["error_codes"] == [90002]


async def test_get_is_not_allowed() -> None:
    async with EmulatorServer(providers=["entra"]) as srv, aiohttp.ClientSession() as http:
        async with http.get(f"{srv.base_url}/entra/{TENANT}/oauth2/v2.0/token") as resp:
            assert resp.status == 405


async def test_reset_forgets_issued_tokens() -> None:
    async with EmulatorServer(providers=["entra"]) as srv:
        status, _ = await _post(srv, _form())
        assert status == 200
        assert len(srv.hub.tokens) == 1
        srv.hub.reset()
        assert srv.hub.tokens == {}


def test_demo_config_has_no_entry() -> None:
    assert entra.demo_config("http://127.0.0.1:1", entra.Settings()) == (None, {})
