"""Input limits and the one error shape: 413, 422 with the field path, 404, 405, 500, 503, request ids."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from cavra.governance import service as governance

from .conftest import SPLUNK_INTEGRATION, AppFactory, assert_error


async def test_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    big = b'{"integration_id": "' + b"a" * (1024 * 1024) + b'"}'
    err = assert_error(
        await client.post("/integrations", content=big, headers={"content-type": "application/json"}), 413
    )
    assert "1048576 bytes" in err["detail"]


async def test_chunked_body_over_limit_is_413(make_client: AppFactory) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * 1024

    async with make_client(max_body_bytes=2048) as c:
        resp = await c.post("/integrations", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in resp.request.headers
        assert_error(resp, 413, "payload_too_large")


async def test_body_at_limit_is_accepted(make_client: AppFactory) -> None:
    async with make_client(max_body_bytes=2048) as c:
        body = ('{"integration_id":"splunk","provider":"splunk"' + " " * 2000 + "}").encode()
        assert len(body) <= 2048
        resp = await c.post("/integrations", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("raw", [b"{bad json", b"", b"[", b'{"integration_id": "x",}'])
async def test_invalid_json_is_422(client: httpx.AsyncClient, raw: bytes) -> None:
    resp = await client.post("/integrations", content=raw, headers={"content-type": "application/json"})
    err = assert_error(resp, 422)
    assert err["detail"].startswith("body")


async def test_nested_field_path(client: httpx.AsyncClient) -> None:
    body = {
        "schema_version": "cavra.endpoint_management.export.v1",
        "export_id": "eme_x",
        "release": "1",
        "channel": "c",
        "approval": {"status": "approved"},
        "providers": ["jamf"],
        "artifacts": [{"name": "a", "path": "/etc/passwd", "size": 1, "sha256": "0" * 64}],
        "generated_at": "2025-01-01T00:00:00Z",
    }
    err = assert_error(await client.post("/endpoint-management-exports", json=body), 422)
    assert "body.artifacts[0].path" in err["detail"]


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nope"), 404, "not_found")
    err = assert_error(await client.put("/integrations", json={}), 405, "method_not_allowed")
    assert "PUT" in err["detail"]


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    resp = await client.get("/integrations/ghost", headers={"X-Request-ID": "trace-12345678"})
    assert resp.headers["x-request-id"] == "trace-12345678"
    assert resp.json()["request_id"] == "trace-12345678"
    resp = await client.get("/integrations/ghost", headers={"X-Request-ID": "bad id\twith junk"})
    assert resp.headers["x-request-id"].startswith("req_")
    ok = await client.get("/healthz")
    assert ok.headers["x-request-id"].startswith("req_")


async def test_unexpected_error_is_500_without_detail(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(store: object) -> list[dict[str, object]]:
        raise RuntimeError("internal state /srv/secret-path leaked")

    monkeypatch.setattr(governance, "list_integrations", boom)
    with caplog.at_level(logging.ERROR, logger="cavra.api"):
        resp = await client.get("/integrations")
    err = assert_error(resp, 500, "internal_error")
    assert "secret-path" not in resp.text and "RuntimeError" not in resp.text
    assert err["request_id"] in err["detail"]
    assert any(r.exc_info for r in caplog.records), "the traceback goes to the server log"


async def test_store_unavailable_is_503(make_client: AppFactory, tmp_path: object) -> None:
    from pathlib import Path

    blocker = Path(str(tmp_path)) / "not-a-dir"
    blocker.write_text("x")
    async with make_client(store_url=str(blocker / "metadata.db")) as c:
        err = assert_error(await c.get("/integrations"), 503, "store_unavailable")
        assert "Traceback" not in err["detail"]
        ready = await c.get("/readyz")
        assert_error(ready, 503, "not_ready")
        assert (await c.get("/healthz")).status_code == 200


async def test_readyz_ok(client: httpx.AsyncClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready", "checks": {"store": "ok", "connectors": "ok"}}


async def test_connectors_status_and_reload(client: httpx.AsyncClient) -> None:
    status = (await client.get("/connectors")).json()
    assert status["providers"]["splunk"] == "siem"
    assert status["providers"]["jamf"] == "endpoint"
    reloaded = await client.post("/connectors/reload", headers={"X-CAVRA-Request": "1"})
    assert reloaded.status_code == 200
    assert reloaded.json()["providers"] == status["providers"]


async def test_reload_of_broken_file_keeps_the_old_config(make_client: AppFactory, tmp_path: object) -> None:
    from pathlib import Path

    async with make_client() as c:
        before = (await c.get("/connectors")).json()
        Path(before["source"]).write_text("{ not json")
        assert_error(
            await c.post("/connectors/reload", headers={"X-CAVRA-Request": "1"}), 422, "configuration_error"
        )
        assert (await c.get("/connectors")).json()["providers"] == before["providers"]
        resp = await c.post("/integrations", json=SPLUNK_INTEGRATION)
        assert resp.status_code == 200


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_out_of_range_timestamp_is_422_not_500(client: httpx.AsyncClient, stamp: str) -> None:
    """Found by schemathesis: a date that overflows when converted to UTC must be bad input, not a crash."""
    from .conftest import PROMOTION, load

    err = assert_error(
        await client.post("/promotion-executions", json={**load(PROMOTION), "started_at": stamp}), 422
    )
    assert "started_at" in err["detail"]
