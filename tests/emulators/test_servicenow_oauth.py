"""The ServiceNow emulator's ``/oauth_token.do`` and the Bearer tokens it issues, over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from cavra.emulators.framework import IssuedToken
from cavra.emulators.server import EmulatorServer
from cavra.emulators.servicenow import AUDIENCE, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, servicenow_emulator

USER, PASSWORD = "cavra.integration", "sn-demo-password-2b9d"
TABLE = "/api/now/table/change_request"
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
NOT_AUTH = {
    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
    "status": "failure",
}


@pytest.fixture
async def server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["servicenow"]) as srv:
        yield srv


async def token_call(
    srv: EmulatorServer, form: dict[str, str] | None = None, *, raw: bytes | None = None, **headers: str
) -> tuple[int, Any]:
    data = raw if raw is not None else aiohttp.FormData(form or {})
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            srv.base_url + "/servicenow/oauth_token.do", data=data, headers={**FORM, **headers}
        ) as r,
    ):
        return r.status, json.loads(await r.text())


async def api_call(srv: EmulatorServer, method: str, token: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Accept": "application/json", "Content-Type": "application/json", "Authorization": token}
    data = None if body is None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, srv.base_url + "/servicenow" + TABLE, data=data, headers=headers) as r,
    ):
        return r.status, json.loads(await r.text())


def client_form(**extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        **extra,
    }


async def test_client_credentials_token_is_recorded_and_accepted(server: EmulatorServer) -> None:
    status, body = await token_call(server, client_form())
    assert status == 200
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 1799, "useraccount")
    assert "refresh_token" not in body
    issued = server.hub.tokens[body["access_token"]]
    assert (issued.audience, issued.client_id) == (AUDIENCE, DEMO_CLIENT_ID)
    assert 1790 < issued.expires_at - time.time() <= 1799
    status, created = await api_call(
        server, "POST", f"Bearer {body['access_token']}", {"short_description": "x"}
    )
    assert status == 201 and created["result"]["sys_created_by"] == "cavra.oauth"
    status, listed = await api_call(server, "GET", f"Bearer {body['access_token']}")
    assert status == 200 and len(listed["result"]) == 1


async def test_password_grant_acts_as_the_user(server: EmulatorServer) -> None:
    status, body = await token_call(
        server, client_form(grant_type="password", username=USER, password=PASSWORD)
    )
    assert status == 200 and body["refresh_token"] and body["scope"] == "useraccount"
    status, created = await api_call(
        server, "POST", f"Bearer {body['access_token']}", {"short_description": "x"}
    )
    assert status == 201 and created["result"]["sys_created_by"] == USER
    status, refused = await token_call(
        server, client_form(grant_type="password", username=USER, password="wrong-password")
    )
    assert (status, refused["error"]) == (401, "invalid_grant")


@pytest.mark.parametrize(
    "form",
    [
        client_form(client_secret="wrong-secret"),
        client_form(client_id="unknown-client"),
        client_form(client_secret=""),
    ],
)
async def test_bad_client_credentials_are_401_server_error_access_denied(
    server: EmulatorServer, form: dict[str, str]
) -> None:
    # what real instances answer (not RFC 6749's invalid_client)
    status, body = await token_call(server, form)
    assert (status, body) == (401, {"error": "server_error", "error_description": "access_denied"})
    assert server.hub.tokens == {}


async def test_inactive_client_and_missing_application_user(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    overrides = {"servicenow": {"inactive_clients": [DEMO_CLIENT_ID]}}
    async with emulator_factory(providers=["servicenow"], overrides=overrides) as srv:
        status, body = await token_call(srv, client_form())
        assert (status, body["error"], body["error_description"]) == (401, "server_error", "access_denied")
    no_user = {"servicenow": {"oauth_user": ""}}
    async with emulator_factory(providers=["servicenow"], overrides=no_user) as srv:
        status, body = await token_call(srv, client_form())
        assert (status, body["error"]) == (401, "unauthorized_client")
        assert srv.hub.tokens == {}


async def test_unsupported_grant_and_non_form_bodies_are_400(server: EmulatorServer) -> None:
    status, body = await token_call(server, client_form(grant_type="authorization_code"))
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    raw = json.dumps(client_form()).encode()
    status, body = await token_call(server, raw=raw, **{"Content-Type": "application/json"})
    assert (status, body["error"]) == (400, "invalid_request")
    assert server.hub.tokens == {}


async def test_expired_or_foreign_tokens_are_refused(server: EmulatorServer) -> None:
    _, body = await token_call(server, client_form())
    token = body["access_token"]
    server.hub.tokens[token].expires_at = time.time() - 1
    assert await api_call(server, "GET", f"Bearer {token}") == (401, NOT_AUTH)
    # a token some other emulated identity provider issued is not a ServiceNow token
    server.hub.tokens["jamf-token-value"] = IssuedToken(
        "jamf-token-value", "c", "jamf", ("user:admin",), time.time() + 60
    )
    assert await api_call(server, "GET", "Bearer jamf-token-value") == (401, NOT_AUTH)


async def test_token_lifetime_is_configurable_and_reset_forgets_tokens(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    async with emulator_factory(
        providers=["servicenow"], overrides={"servicenow": {"token_lifetime": 0.2}}
    ) as srv:
        _, body = await token_call(srv, client_form())
        assert body["expires_in"] == 0.2
        assert (await api_call(srv, "GET", f"Bearer {body['access_token']}"))[0] == 200
        await asyncio.sleep(0.25)
        assert (await api_call(srv, "GET", f"Bearer {body['access_token']}"))[0] == 401
        srv.hub.reset()
        assert srv.hub.tokens == {}
        assert servicenow_emulator(srv.hub).store.tables["change_request"] == []
