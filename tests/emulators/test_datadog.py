"""The Datadog Logs intake emulator: API key, encodings, body shape, entry and size limits, truncation."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import aiohttp
import pytest

from cavra.emulators import datadog
from cavra.emulators.server import EmulatorServer

PATH = "/datadog/api/v2/logs"
KEY = {"DD-API-KEY": datadog.DEMO_API_KEY}


def server(**settings: Any) -> EmulatorServer:
    return EmulatorServer(providers=["datadog"], overrides={"datadog": settings})


async def post(
    srv: EmulatorServer,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    path: str = PATH,
) -> tuple[int, Any]:
    hdrs = {"Content-Type": "application/json", **(headers if headers is not None else KEY)}
    data = raw if raw is not None else json.dumps({"message": "hi"} if body is None else body).encode()
    async with aiohttp.ClientSession() as http:
        async with http.request(method, srv.base_url + path, data=data, headers=hdrs) as resp:
            return resp.status, await resp.json(content_type=None)


async def test_single_object_and_array_accepted_with_202() -> None:
    async with server() as srv:
        assert await post(srv) == (202, {})
        entries = [{"message": "a", "ddsource": "cavra", "status": "error"}, {"message": "b"}]
        assert await post(srv, entries) == (202, {})
        logs = datadog.state(srv.hub).logs
        assert [s.entry["message"] for s in logs] == ["hi", "a", "b"]
        assert logs[1].entry["status"] == "error"


async def test_missing_key_401_unknown_key_403_with_errors_shape() -> None:
    async with server() as srv:
        status, body = await post(srv, headers={})
        assert status == 401
        assert body["errors"][0]["status"] == "401"
        status, body = await post(srv, headers={"DD-API-KEY": "0" * 32})
        assert status == 403
        assert body == {"errors": [{"status": "403", "title": "Forbidden", "detail": "API key is invalid"}]}
        assert datadog.state(srv.hub).logs == []


async def test_only_post_on_the_logs_path() -> None:
    async with server() as srv:
        assert (await post(srv, method="GET"))[0] == 405
        assert (await post(srv, path="/datadog/api/v1/input"))[0] == 404


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)])
async def test_gzip_and_deflate_decoded(encoding: str, compress: Any) -> None:
    async with server() as srv:
        raw = compress(json.dumps([{"message": encoding}]).encode())
        status, _ = await post(srv, raw=raw, headers={**KEY, "Content-Encoding": encoding})
        assert status == 202
        assert datadog.state(srv.hub).logs[0].entry["message"] == encoding


async def test_unsupported_encoding_is_refused() -> None:
    async with server() as srv:
        assert (await post(srv, headers={**KEY, "Content-Encoding": "x-snappy"}))[0] == 415


@pytest.mark.parametrize("raw", [b"not json", b'"a string"', b"[1, 2]", b"42"])
async def test_non_json_or_wrong_shape_is_400(raw: bytes) -> None:
    async with server() as srv:
        assert (await post(srv, raw=raw))[0] == 400


async def test_content_type_must_be_json() -> None:
    async with server() as srv:
        assert (await post(srv, headers={**KEY, "Content-Type": "text/plain"}))[0] == 400


async def test_more_than_1000_entries_is_400_or_configured_status() -> None:
    async with server() as srv:
        status, body = await post(srv, [{"message": str(i)} for i in range(1001)])
        assert status == 400 and "1000" in body["errors"][0]["detail"]
        assert (await post(srv, [{"message": str(i)} for i in range(1000)]))[0] == 202
    async with server(too_many_entries_status=413) as srv:
        assert (await post(srv, [{"message": str(i)} for i in range(1001)]))[0] == 413


async def test_payload_over_five_million_bytes_is_413() -> None:
    async with server() as srv:
        entries = [{"message": "x" * 900_000} for _ in range(6)]
        assert (await post(srv, entries))[0] == 413
        assert datadog.state(srv.hub).logs == []


async def test_entry_over_one_megabyte_is_truncated_and_accepted() -> None:
    async with server() as srv:
        status, _ = await post(srv, [{"message": "y" * 1_200_000, "service": "cavra"}, {"message": "small"}])
        assert status == 202
        big, small = datadog.state(srv.hub).logs
        assert big.truncated and not small.truncated
        assert len(json.dumps(big.entry).encode()) <= 1_000_000
        assert big.entry["service"] == "cavra"
        assert big.entry["message"].endswith("...TRUNCATED...")


def test_demo_config_points_at_the_intake() -> None:
    entry, env = datadog.demo_config("http://127.0.0.1:9", datadog.Settings())
    assert entry is not None and entry["api_key_env"] == "DATADOG_API_KEY"
    assert env == {
        "DATADOG_LOGS_URL": "http://127.0.0.1:9/datadog/api/v2/logs",
        "DATADOG_API_KEY": datadog.DEMO_API_KEY,
    }
