"""The Logs Ingestion (Sentinel) emulator: Bearer tokens from Entra, api-version, DCR/stream, body rules."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import aiohttp
import pytest

from cavra.emulators import entra, sentinel
from cavra.emulators.framework import IssuedToken
from cavra.emulators.server import EmulatorServer

ROW = {
    "TimeGenerated": "2026-01-01T00:00:00Z",
    "EventId": "evt-1",
    "EventType": "cavra.evidence_bundle",
    "SessionId": "s-1",
    "Severity": "high",
    "EventData": {"blocked_count": 4},
}
PATH = (
    f"/sentinel/dataCollectionRules/{sentinel.DEMO_DCR}/streams/{sentinel.DEMO_STREAM}?api-version=2023-01-01"
)


async def token_for(srv: EmulatorServer, client_id: str, secret: str, scope: str) -> str:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    form["scope"] = scope
    async with aiohttp.ClientSession() as http:
        url = f"{srv.base_url}/entra/{entra.DEMO_TENANT_ID}/oauth2/v2.0/token"
        async with http.post(url, data=form) as resp:
            assert resp.status == 200
            return str((await resp.json())["access_token"])


async def publisher_token(srv: EmulatorServer) -> str:
    return await token_for(
        srv, entra.SENTINEL_CLIENT_ID, entra.SENTINEL_CLIENT_SECRET, "https://monitor.azure.com/.default"
    )


async def post(
    srv: EmulatorServer,
    token: str | None,
    body: Any = None,
    *,
    path: str = PATH,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps([ROW] if body is None else body).encode()
    async with aiohttp.ClientSession() as http:
        async with http.post(srv.base_url + path, data=data, headers=hdrs) as resp:
            text = await resp.read()
            return resp.status, (json.loads(text) if text else None), dict(resp.headers)


def server(**settings: Any) -> EmulatorServer:
    return EmulatorServer(providers=["entra", "sentinel"], overrides={"sentinel": settings})


async def test_accepts_rows_with_204_and_no_body() -> None:
    async with server() as srv:
        status, body, _ = await post(srv, await publisher_token(srv), [ROW, ROW])
        assert (status, body) == (204, None)
        assert sentinel.state(srv.hub).rows[(sentinel.DEMO_DCR, sentinel.DEMO_STREAM)] == [ROW, ROW]


async def test_gzip_body_accepted() -> None:
    async with server() as srv:
        raw = gzip.compress(json.dumps([ROW]).encode())
        token = await publisher_token(srv)
        status, _, _ = await post(srv, token, raw=raw, headers={"Content-Encoding": "gzip"})
        assert status == 204
        assert len(sentinel.state(srv.hub).rows[(sentinel.DEMO_DCR, sentinel.DEMO_STREAM)]) == 1


async def test_missing_and_unknown_tokens_are_401() -> None:
    async with server() as srv:
        status, body, headers = await post(srv, None)
        assert status == 401
        assert body is not None and body["error"]["code"] == "InvalidAuthenticationToken"
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert (await post(srv, "not-a-token"))[0] == 401


async def test_expired_token_is_401() -> None:
    async with server() as srv:
        token = await publisher_token(srv)
        issued = srv.hub.tokens[token]
        srv.hub.tokens[token] = IssuedToken(
            issued.value, issued.client_id, issued.audience, issued.roles, expires_at=time.time() - 1
        )
        assert (await post(srv, token))[0] == 401


async def test_token_for_another_audience_is_401() -> None:
    async with server() as srv:
        token = await token_for(
            srv, entra.INTUNE_CLIENT_ID, entra.INTUNE_CLIENT_SECRET, "https://graph.microsoft.com/.default"
        )
        status, body, _ = await post(srv, token)
        assert status == 401
        assert body is not None and body["error"]["code"] == "InvalidAuthenticationTokenAudience"


async def test_app_without_the_dcr_role_is_403_operation_failed() -> None:
    async with server() as srv:
        token = await token_for(
            srv, entra.NOROLE_CLIENT_ID, entra.NOROLE_CLIENT_SECRET, "https://monitor.azure.com/.default"
        )
        status, body, _ = await post(srv, token)
        assert status == 403
        assert body is not None and body["error"]["code"] == "OperationFailed"
        assert sentinel.DEMO_DCR in body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (PATH.split("?")[0], 400, "MissingApiVersionParameter"),
        (PATH.replace("2023-01-01", "2021-11-01-preview"), 400, "InvalidApiVersionParameter"),
        (PATH.replace(sentinel.DEMO_DCR, "dcr-00000000000000000000000000000000"), 404, "NotFound"),
        (PATH.replace(sentinel.DEMO_STREAM, "Custom-Other"), 404, "NotFound"),
    ],
)
async def test_api_version_and_unknown_dcr_or_stream(path: str, status: int, code: str) -> None:
    async with server() as srv:
        got, body, _ = await post(srv, await publisher_token(srv), path=path)
        assert (got, body and body["error"]["code"]) == (status, code)


async def test_content_type_must_be_json() -> None:
    async with server() as srv:
        status, _, _ = await post(srv, await publisher_token(srv), headers={"Content-Type": "text/plain"})
        assert status == 415


@pytest.mark.parametrize(
    "raw",
    [b'{"EventId": "x"}', b"not json", b"[1, 2]", b'"text"'],
)
async def test_body_must_be_a_json_array_of_objects(raw: bytes) -> None:
    async with server() as srv:
        status, _, _ = await post(srv, await publisher_token(srv), raw=raw)
        assert status == 400


@pytest.mark.parametrize(
    "row",
    [
        {"1Bad": "x"},
        {"Has-Dash": "x"},
        {"A" * 46: "x"},
        {"TenantId": "x"},
        {"NotDeclared": "x"},
        {"EventId": 5},
    ],
)
async def test_column_names_and_types_are_checked(row: dict[str, Any]) -> None:
    async with server() as srv:
        status, body, _ = await post(srv, await publisher_token(srv), [row])
        assert status == 400
        assert body is not None and body["error"]["code"] == "InvalidColumn"


async def test_type_check_can_be_switched_off() -> None:
    async with server(check_types=False) as srv:
        status, _, _ = await post(srv, await publisher_token(srv), [{"EventId": 5}])
        assert status == 204


async def test_body_over_one_mebibyte_is_413_before_and_after_gunzip() -> None:
    async with server() as srv:
        token = await publisher_token(srv)
        rows = [{"EventId": "x" * 1000} for _ in range(1100)]
        raw = json.dumps(rows).encode()
        assert len(raw) > 1_048_576
        assert (await post(srv, token, raw=raw))[0] == 413
        zipped = gzip.compress(raw)
        assert len(zipped) < 1_048_576
        assert (await post(srv, token, raw=zipped, headers={"Content-Encoding": "gzip"}))[0] == 413
        assert sentinel.state(srv.hub).rows == {}


async def test_throttle_and_unavailable_toggles() -> None:
    async with server(throttle_retry_after=7) as srv:
        token = await publisher_token(srv)
        status, _, headers = await post(srv, token)
        assert (status, headers["Retry-After"]) == (429, "7")
        srv.settings["sentinel"].throttle_retry_after = None
        srv.settings["sentinel"].unavailable = True
        assert (await post(srv, token))[0] == 503
        srv.settings["sentinel"].unavailable = False
        assert (await post(srv, token))[0] == 204


async def test_get_is_not_allowed() -> None:
    async with server() as srv, aiohttp.ClientSession() as http:
        async with http.get(srv.base_url + PATH) as resp:
            assert resp.status == 405


async def test_api_key_endpoint() -> None:
    async with server() as srv:
        path = "/sentinel/api/logs"
        assert (await post(srv, None, path=path))[0] == 401
        assert (await post(srv, None, path=path, headers={"x-api-key": "wrong-key"}))[0] == 403
        key = {"x-api-key": sentinel.DEMO_API_KEY}
        status, body, _ = await post(srv, None, [ROW, ROW], path=path, headers=key)
        assert status == 200 and body is not None and body["accepted"] == 2
        status, body, _ = await post(srv, None, raw=b'{"a": 1}', path=path, headers=key)
        assert status == 200 and body is not None and body["accepted"] == 1
        assert (await post(srv, None, raw=b"[1]", path=path, headers=key))[0] == 400
        assert (await post(srv, None, raw=b"x" * 1_048_577, path=path, headers=key))[0] == 413
        assert len(sentinel.state(srv.hub).api_rows) == 3


def test_demo_config_uses_entra_and_env_secrets() -> None:
    entry, env = sentinel.demo_config("http://127.0.0.1:9", sentinel.Settings())
    assert entry is not None
    assert entry["authority_url"] == "http://127.0.0.1:9/entra"
    assert entry["client_id"] == entra.SENTINEL_CLIENT_ID
    assert entry["dcr_immutable_id"] == sentinel.DEMO_DCR
    assert env["SENTINEL_CLIENT_SECRET"] == entra.SENTINEL_CLIENT_SECRET
    assert "client_secret" not in entry
