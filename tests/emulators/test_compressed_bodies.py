"""Compressed request bodies: the emulator server keeps them raw, each emulator decodes and size-checks them.

aiohttp's server decompresses request bodies by default; the emulators run it with ``auto_decompress=False``
so that the recorded body is what was on the wire and the limits apply before *and* after decompression.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

import aiohttp
import pytest

from cavra.emulators import datadog, entra, sentinel, splunk
from cavra.emulators.framework import BodyEncodingError, decode_body
from cavra.emulators.server import EmulatorServer

SPLUNK_AUTH = {"Authorization": f"Splunk {splunk.DEMO_TOKEN}"}
SENTINEL_PATH = (
    f"/sentinel/dataCollectionRules/{sentinel.DEMO_DCR}/streams/{sentinel.DEMO_STREAM}?api-version=2023-01-01"
)
ROW = {"TimeGenerated": "2026-01-01T00:00:00Z", "EventId": "e", "EventType": "t", "EventData": {}}


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(data) + packer.flush()


async def send(srv: EmulatorServer, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(srv.base_url + path, data=body, headers=headers) as resp,
    ):
        text = await resp.text()
        try:
            return resp.status, json.loads(text) if text else None
        except ValueError:
            return resp.status, text


# -- decode_body ------------------------------------------------------------------------------------------
def test_decode_body_encodings() -> None:
    data = b'{"event":"x"}' * 10
    assert decode_body(data, None, 1000) == decode_body(data, " Identity ", 1000) == data
    assert decode_body(gzip.compress(data), "gzip", 1000) == data
    assert decode_body(gzip.compress(data) + gzip.compress(b"more"), "GZIP", 1000) == data + b"more"
    both = ("gzip", "deflate")
    assert decode_body(zlib.compress(data), "deflate", 1000, accepted=both) == data
    assert decode_body(raw_deflate(data), "deflate", 1000, accepted=both) == data


@pytest.mark.parametrize(
    ("raw", "encoding", "accepted", "reason"),
    [
        (zlib.compress(b"x"), "deflate", ("gzip",), "unsupported"),
        (b"x", "br", ("gzip", "deflate"), "unsupported"),
        (b'{"event":"not compressed"}', "gzip", ("gzip",), "corrupt"),
        (gzip.compress(b"x" * 100)[:-12], "gzip", ("gzip",), "corrupt"),  # truncated
        (gzip.compress(b"x") + b"trailing", "gzip", ("gzip",), "corrupt"),
        (b"", "gzip", ("gzip",), "corrupt"),
        (b"y" * 101, None, ("gzip",), "too_large"),
        (gzip.compress(b"y" * 101), "gzip", ("gzip",), "too_large"),
        (zlib.compress(b"y" * 101), "deflate", ("deflate",), "too_large"),
    ],
)
def test_decode_body_refusals(
    raw: bytes, encoding: str | None, accepted: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(BodyEncodingError) as info:
        decode_body(raw, encoding, 100, accepted=accepted)
    assert info.value.reason == reason


def test_a_small_body_inflating_hugely_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(BodyEncodingError) as info:
        decode_body(bomb, "gzip", 1_000_000)
    assert info.value.reason == "too_large"


# -- the server keeps raw bodies ----------------------------------------------------------------------------
async def test_the_recorded_body_is_the_compressed_one() -> None:
    body = gzip.compress(b'{"event":"zipped"}')
    async with EmulatorServer(providers=["splunk"]) as srv:
        status, _ = await send(
            srv, "/splunk/services/collector/event", body, {**SPLUNK_AUTH, "Content-Encoding": "gzip"}
        )
        assert status == 200
        (received,) = srv.hub.received("splunk")
        assert received.body == body and received.headers["Content-Encoding"] == "gzip"
        async with (
            aiohttp.ClientSession() as http,
            http.get(srv.base_url + "/_emulator/requests?provider=splunk") as resp,
        ):
            (listed,) = await resp.json()
        assert listed["body"] is None and base64.b64decode(listed["body_base64"]) == body
        assert splunk.state(srv.hub).events[0].event == "zipped"


# -- Splunk: gzip accepted, deflate 415, max_content_length before and after gunzip --------------------------
async def test_splunk_gzip_bodies() -> None:
    async with EmulatorServer(providers=["splunk"], overrides={"splunk": {"max_content_length": 500}}) as srv:
        path = "/splunk/services/collector/event"
        two = b'{"event":"a"}{"event":"b"}'
        assert (await send(srv, path, gzip.compress(two), {**SPLUNK_AUTH, "Content-Encoding": "gzip"}))[
            0
        ] == 200
        assert [e.event for e in splunk.state(srv.hub).events] == ["a", "b"]
        status, body = await send(
            srv, path, zlib.compress(two), {**SPLUNK_AUTH, "Content-Encoding": "deflate"}
        )
        assert status == 415 and "Unsupported Media Type" in body
        # labelled gzip but sent plain: the server no longer decodes it for us, HEC cannot read it
        status, body = await send(srv, path, two, {**SPLUNK_AUTH, "Content-Encoding": "gzip"})
        assert (status, body["code"]) == (400, 6)
        big = json.dumps({"event": "z" * 600}).encode()
        small = gzip.compress(big)
        assert len(small) < 500 < len(big)
        status, body = await send(srv, path, small, {**SPLUNK_AUTH, "Content-Encoding": "gzip"})
        assert status == 413 and "decompressed" in body["text"]
        assert len(splunk.state(srv.hub).events) == 2


# -- Sentinel: gzip, 1 MB before and after decompression -------------------------------------------------
async def sentinel_token(srv: EmulatorServer) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": entra.SENTINEL_CLIENT_ID,
        "client_secret": entra.SENTINEL_CLIENT_SECRET,
        "scope": "https://monitor.azure.com/.default",
    }
    url = f"{srv.base_url}/entra/{entra.DEMO_TENANT_ID}/oauth2/v2.0/token"
    async with aiohttp.ClientSession() as http, http.post(url, data=form) as resp:
        return str((await resp.json())["access_token"])


async def test_sentinel_gzip_bodies_and_the_1_mb_limit_after_decompression() -> None:
    async with EmulatorServer(providers=["entra", "sentinel"]) as srv:
        auth = {"Authorization": f"Bearer {await sentinel_token(srv)}", "Content-Type": "application/json"}
        zipped = {**auth, "Content-Encoding": "gzip"}
        assert (await send(srv, SENTINEL_PATH, gzip.compress(json.dumps([ROW]).encode()), zipped))[0] == 204
        stored = sentinel.state(srv.hub).rows[(sentinel.DEMO_DCR, sentinel.DEMO_STREAM)]
        assert stored == [ROW]
        # about 1.2 MB of rows, gzipped far under 1 MB: the limit applies to the decompressed body too
        rows = json.dumps([{**ROW, "EventId": f"e{i}"} for i in range(20_000)]).encode()
        assert len(rows) > sentinel.MAX_BODY
        small = gzip.compress(rows)
        assert len(small) < sentinel.MAX_BODY // 4
        status, body = await send(srv, SENTINEL_PATH, small, zipped)
        assert (status, body["error"]["code"]) == (413, "ContentLengthLimitExceeded")
        # and to the body as sent
        status, _ = await send(srv, SENTINEL_PATH, rows, auth)
        assert status == 413
        status, body = await send(
            srv, SENTINEL_PATH, zlib.compress(rows), {**auth, "Content-Encoding": "deflate"}
        )
        assert (status, body["error"]["code"]) == (415, "UnsupportedContentEncoding")
        status, body = await send(srv, SENTINEL_PATH, json.dumps([ROW]).encode(), zipped)
        assert (status, body["error"]["code"]) == (400, "InvalidContentEncoding")
        assert stored == [ROW]


async def test_sentinel_api_key_endpoint_gzip() -> None:
    async with EmulatorServer(providers=["sentinel"]) as srv:
        headers = {
            "x-api-key": sentinel.DEMO_API_KEY,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        status, body = await send(srv, "/sentinel/api/logs", gzip.compress(b'[{"a":1},{"b":2}]'), headers)
        assert (status, body["accepted"]) == (200, 2)
        big = gzip.compress(json.dumps([{"k": "v" * 1000}] * 1100).encode())
        assert (await send(srv, "/sentinel/api/logs", big, headers))[0] == 413


# -- Datadog: gzip and deflate, 5 MB uncompressed ----------------------------------------------------------
async def test_datadog_gzip_and_deflate_bodies_and_the_uncompressed_limit() -> None:
    key = {"DD-API-KEY": datadog.DEMO_API_KEY, "Content-Type": "application/json"}
    async with EmulatorServer(providers=["datadog"]) as srv:
        path = "/datadog/api/v2/logs"
        logs = json.dumps([{"message": "one"}, {"message": "two"}]).encode()
        for encoding, packed in (
            ("gzip", gzip.compress(logs)),
            ("deflate", zlib.compress(logs)),
            ("deflate", raw_deflate(logs)),
        ):
            assert await send(srv, path, packed, {**key, "Content-Encoding": encoding}) == (202, {})
        assert len(datadog.state(srv.hub).logs) == 6
        # 5.5 MB of logs, compressed to a few KB: over the 5,000,000-byte uncompressed limit
        many = json.dumps([{"message": "m" * 5500}] * 1000).encode()
        assert len(many) > 5_000_000
        for encoding, packed in (("gzip", gzip.compress(many)), ("deflate", zlib.compress(many))):
            assert len(packed) < 100_000
            status, body = await send(srv, path, packed, {**key, "Content-Encoding": encoding})
            assert status == 413 and "uncompressed" in body["errors"][0]["detail"]
        status, _ = await send(srv, path, logs, {**key, "Content-Encoding": "gzip"})
        assert status == 400
        assert (await send(srv, path, logs, {**key, "Content-Encoding": "br"}))[0] == 415
        assert len(datadog.state(srv.hub).logs) == 6
