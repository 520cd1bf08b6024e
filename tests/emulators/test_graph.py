"""The Graph (Intune) emulator: tokens, @odata.type, base64, create/filter/patch/assign, throttle."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from typing import Any

import aiohttp
import pytest

from cavra.emulators import entra, graph
from cavra.emulators.server import EmulatorServer

CONFIGS = "/graph/v1.0/deviceManagement/deviceConfigurations"
SCRIPTS = "/graph/beta/deviceManagement/deviceShellScripts"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PAYLOAD = base64.b64encode(b"<plist version='1.0'><dict/></plist>").decode()


def config_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.macOSCustomConfiguration",
        "displayName": "CAVRA eme_test",
        "payloadName": "CAVRA",
        "payloadFileName": "cavra.mobileconfig",
        "payload": PAYLOAD,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def get_token(
    srv: EmulatorServer,
    client_id: str = entra.INTUNE_CLIENT_ID,
    secret: str = entra.INTUNE_CLIENT_SECRET,
    scope: str = "https://graph.microsoft.com/.default",
) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": scope,
    }
    url = f"{srv.base_url}/entra/{entra.DEMO_TENANT_ID}/oauth2/v2.0/token"
    async with aiohttp.ClientSession() as http, http.post(url, data=form) as r:
        assert r.status == 200
        return str((await r.json())["access_token"])


async def call(
    srv: EmulatorServer, method: str, path: str, token: str | None, **kw: Any
) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, srv.base_url + path, headers=headers, **kw) as r,
    ):
        text = await r.text()
        return r.status, (await r.json() if text else None), r.headers


async def test_create_returns_guid_and_timestamps_then_filter_patch_and_read_back() -> None:
    async with EmulatorServer(providers=["entra", "graph"]) as srv:
        token = await get_token(srv)
        status, body, _ = await call(srv, "POST", CONFIGS, token, json=config_body())
        assert status == 201
        assert GUID.match(body["id"])
        assert body["createdDateTime"] and body["lastModifiedDateTime"]
        assert body["@odata.type"] == "#microsoft.graph.macOSCustomConfiguration"
        item_id = body["id"]
        status, listing, _ = await call(
            srv, "GET", CONFIGS, token, params={"$filter": "displayName eq 'CAVRA eme_test'"}
        )
        assert status == 200
        assert [i["id"] for i in listing["value"]] == [item_id]
        status, listing, _ = await call(
            srv, "GET", CONFIGS, token, params={"$filter": "displayName eq 'other'"}
        )
        assert listing["value"] == []
        new_payload = base64.b64encode(
            b"<plist><dict><key>v</key><integer>2</integer></dict></plist>"
        ).decode()
        status, body, _ = await call(
            srv,
            "PATCH",
            f"{CONFIGS}/{item_id}",
            token,
            json={"@odata.type": "#microsoft.graph.macOSCustomConfiguration", "payload": new_payload},
        )
        assert status == 200
        assert body["version"] == 2
        status, body, _ = await call(srv, "GET", f"{CONFIGS}/{item_id}", token)
        assert status == 200
        assert body["payload"] == new_payload
        assert len(graph.state(srv.hub).collection("deviceConfigurations")) == 1


async def test_filter_handles_quotes_and_rejects_other_clauses() -> None:
    async with EmulatorServer(providers=["entra", "graph"]) as srv:
        token = await get_token(srv)
        await call(srv, "POST", CONFIGS, token, json=config_body(displayName="O'Brien"))
        status, listing, _ = await call(
            srv, "GET", CONFIGS, token, params={"$filter": "displayName eq 'O''Brien'"}
        )
        assert status == 200
        assert len(listing["value"]) == 1
        status, body, _ = await call(
            srv, "GET", CONFIGS, token, params={"$filter": "startswith(displayName,'O')"}
        )
        assert status == 400
        assert body["error"]["code"] == "invalidRequest"


async def test_assign_to_a_group_and_expand_assignments() -> None:
    async with EmulatorServer(providers=["entra", "graph"]) as srv:
        token = await get_token(srv)
        _, created, _ = await call(srv, "POST", CONFIGS, token, json=config_body())
        target = {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": graph.DEMO_GROUP_ID}
        body = {
            "assignments": [
                {"@odata.type": "#microsoft.graph.deviceConfigurationAssignment", "target": target}
            ]
        }
        status, answer, _ = await call(srv, "POST", f"{CONFIGS}/{created['id']}/assign", token, json=body)
        assert status == 200
        assert answer["value"][0]["target"]["groupId"] == graph.DEMO_GROUP_ID
        status, item, _ = await call(
            srv, "GET", f"{CONFIGS}/{created['id']}", token, params={"$expand": "assignments"}
        )
        assert item["assignments"][0]["target"]["groupId"] == graph.DEMO_GROUP_ID
        status, listing, _ = await call(srv, "GET", f"{CONFIGS}/{created['id']}/assignments", token)
        assert len(listing["value"]) == 1
        bad = {
            "assignments": [
                {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "x"}}
            ]
        }
        status, answer, _ = await call(srv, "POST", f"{CONFIGS}/{created['id']}/assign", token, json=bad)
        assert status == 400
        status, _, _ = await call(srv, "POST", f"{CONFIGS}/{created['id']}/assign", token, json={})
        assert status == 400


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (config_body(**{"@odata.type": None}), "@odata.type"),
        (config_body(**{"@odata.type": "#microsoft.graph.deviceShellScript"}), "could not be resolved"),
        (config_body(**{"@odata.type": "#microsoft.graph.nonsense"}), "could not be resolved"),
        (config_body(payload="not base64!!"), "base64"),
        (config_body(displayName=None), "displayName"),
        (config_body(bogus=1), "The property 'bogus' does not exist"),
        # v1.0 macOSCustomConfiguration has no scope tags and no deployment channel (beta-only)
        (config_body(roleScopeTagIds=["0"]), "The property 'roleScopeTagIds' does not exist"),
        (config_body(deploymentChannel="deviceChannel"), "The property 'deploymentChannel' does not exist"),
        ([config_body()], "JSON object"),
    ],
)
async def test_invalid_bodies_are_400_bad_request(body: Any, needle: str) -> None:
    async with EmulatorServer(providers=["entra", "graph"]) as srv:
        token = await get_token(srv)
        status, answer, _ = await call(srv, "POST", CONFIGS, token, json=body)
        assert status == 400
        assert answer["error"]["code"] == "BadRequest"
        assert needle in answer["error"]["message"]
        assert "request-id" in answer["error"]["innerError"]
        assert graph.state(srv.hub).collection("deviceConfigurations") == {}


async def test_shell_scripts_are_beta_only_and_need_base64_content() -> None:
    async with EmulatorServer(providers=["entra", "graph"]) as srv:
        token = await get_token(srv)
        script = {
            "@odata.type": "#microsoft.graph.deviceShellScript",
            "displayName": "s",
            "fileName": "s.sh",
            "scriptContent": base64.b64encode(b"#!/bin/sh\necho hi\n").decode(),
            "runAsAccount": "system",
        }
        assert (await call(srv, "POST", SCRIPTS, token, json=script))[0] == 201
        assert (await call(srv, "POST", SCRIPTS.replace("beta", "v1.0"), token, json=script))[0] == 400
        status, answer, _ = await call(srv, "POST", SCRIPTS, token, json={**script, "scriptContent": "%%%"})
        assert status == 400
        assert "base64" in answer["error"]["message"]


async def test_patch_must_keep_the_type_and_unknown_id_is_404() -> None:
    async with EmulatorServer(providers=["entra", "graph"]) as srv:
        token = await get_token(srv)
        _, created, _ = await call(srv, "POST", CONFIGS, token, json=config_body())
        status, answer, _ = await call(
            srv,
            "PATCH",
            f"{CONFIGS}/{created['id']}",
            token,
            json={"@odata.type": "#microsoft.graph.iosCustomConfiguration"},
        )
        assert status == 400
        status, answer, _ = await call(srv, "GET", f"{CONFIGS}/00000000-0000-0000-0000-000000000000", token)
        assert status == 404
        assert answer["error"]["code"] == "itemNotFound"


async def test_tokens_are_checked_for_presence_audience_expiry_and_role() -> None:
    async with EmulatorServer(providers=["entra", "graph"]) as srv:
        status, answer, _ = await call(srv, "GET", CONFIGS, None)
        assert status == 401
        assert answer["error"]["code"] == "InvalidAuthenticationToken"
        assert (await call(srv, "GET", CONFIGS, "forged.token.value"))[0] == 401
        monitor = await get_token(srv, scope="https://monitor.azure.com/.default")
        status, answer, _ = await call(srv, "GET", CONFIGS, monitor)
        assert status == 401
        assert "audience" in answer["error"]["message"]
        norole = await get_token(srv, entra.NOROLE_CLIENT_ID, entra.NOROLE_CLIENT_SECRET)
        status, answer, _ = await call(srv, "POST", CONFIGS, norole, json=config_body())
        assert status == 403
        # Intune's 403: code Forbidden, and a message that is itself a JSON string
        assert answer["error"]["code"] == "Forbidden"
        inner = json.loads(answer["error"]["message"])
        assert inner["_version"] == 3 and "\r\n" in answer["error"]["message"]
        assert inner["Message"].startswith("Application is not authorized to perform this operation.")
        assert "DeviceManagementConfiguration.ReadWrite.All" in inner["Message"]
        good = await get_token(srv)
        srv.hub.tokens[good].expires_at = time.time() - 1
        status, answer, _ = await call(srv, "GET", CONFIGS, good)
        assert status == 401
        assert "expired" in answer["error"]["message"]


async def test_write_throttle_answers_429_with_retry_after() -> None:
    overrides = {"graph": {"write_limit": 2, "write_window": 1.0}}
    async with EmulatorServer(providers=["entra", "graph"], overrides=overrides) as srv:
        token = await get_token(srv)
        assert (await call(srv, "POST", CONFIGS, token, json=config_body(displayName="a")))[0] == 201
        assert (await call(srv, "POST", CONFIGS, token, json=config_body(displayName="b")))[0] == 201
        assert (await call(srv, "GET", CONFIGS, token))[0] == 200  # reads are not writes
        status, answer, headers = await call(srv, "POST", CONFIGS, token, json=config_body(displayName="c"))
        assert status == 429
        assert answer["error"]["code"] == "activityLimitReached"
        wait = int(headers["Retry-After"])
        assert wait == 1
        await asyncio.sleep(wait)  # the window has to pass for real
        assert (await call(srv, "POST", CONFIGS, token, json=config_body(displayName="c")))[0] == 201


def test_demo_config_targets_intune_with_the_entra_authority() -> None:
    entry, env = graph.demo_config("http://127.0.0.1:9", graph.Settings())
    assert entry is not None
    assert entry["provider"] == "intune"
    assert entry["authority_url"] == "http://127.0.0.1:9/entra"
    assert env["INTUNE_GRAPH_URL"] == "http://127.0.0.1:9/graph"
    assert env["INTUNE_CLIENT_SECRET"] == entra.INTUNE_CLIENT_SECRET


async def test_intune_validation_errors_carry_a_json_string_message() -> None:
    async with EmulatorServer(providers=["entra", "graph"]) as srv:
        token = await get_token(srv)
        status, answer, _ = await call(srv, "POST", CONFIGS, token, json=config_body(payload="not base64!!"))
        assert (status, answer["error"]["code"]) == (400, "BadRequest")
        inner = json.loads(answer["error"]["message"])
        assert "base64" in inner["Message"] and "Operation ID (for customer support)" in inner["Message"]


async def test_scope_tags_and_deployment_channel_are_beta_only() -> None:
    async with EmulatorServer(providers=["entra", "graph"]) as srv:
        token = await get_token(srv)
        beta = CONFIGS.replace("v1.0", "beta")
        body = config_body(roleScopeTagIds=["0"], deploymentChannel="deviceChannel")
        status, created, _ = await call(srv, "POST", beta, token, json=body)
        assert status == 201 and created["roleScopeTagIds"] == ["0"]
        status, plain, _ = await call(srv, "POST", CONFIGS, token, json=config_body())
        assert status == 201 and "roleScopeTagIds" not in plain


async def test_ignore_filter_and_paging() -> None:
    overrides = {"graph": {"ignore_filter": True, "page_size": 2}}
    async with EmulatorServer(providers=["entra", "graph"], overrides=overrides) as srv:
        token = await get_token(srv)
        for i in range(3):
            await call(srv, "POST", CONFIGS, token, json=config_body(displayName=f"n{i}"))
        params = {"$filter": "displayName eq 'n2'"}
        status, first, _ = await call(srv, "GET", CONFIGS, token, params=params)
        assert status == 200
        assert [i["displayName"] for i in first["value"]] == ["n0", "n1"]  # the filter was ignored
        link = first["@odata.nextLink"]
        assert link.startswith(srv.base_url + CONFIGS) and "skiptoken=2" in link
        async with (
            aiohttp.ClientSession() as http,
            http.get(link, headers={"Authorization": f"Bearer {token}"}) as r,
        ):
            second = await r.json()
        assert [i["displayName"] for i in second["value"]] == ["n2"]
        assert "@odata.nextLink" not in second
