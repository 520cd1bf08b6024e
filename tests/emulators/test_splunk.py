"""The Splunk HEC emulator: auth codes, body parsing and partial batches, indexes, acks, encodings, limits."""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from typing import Any

import aiohttp
import pytest

from cavra.emulators import splunk
from cavra.emulators.server import EmulatorServer

TOKEN = splunk.DEMO_TOKEN
ACK_TOKEN = "a1b2c3d4-0000-4000-8000-00000000ac00"
OFF_TOKEN = "d15ab1ed-0000-4000-8000-000000000000"
QS_TOKEN = "9e9e9e9e-0000-4000-8000-000000000999"
TOKENS = {
    TOKEN: {"name": "demo", "indexes": ["main", "cavra"]},
    ACK_TOKEN: {"name": "acked", "ack": True},
    OFF_TOKEN: {"name": "off", "disabled": True},
    QS_TOKEN: {"name": "qs", "allow_query_string": True},
}


def server(**settings: Any) -> EmulatorServer:
    return EmulatorServer(providers=["splunk"], overrides={"splunk": {"tokens": TOKENS, **settings}})


async def call(
    srv: EmulatorServer,
    path: str = "/services/collector/event",
    body: bytes | str = b'{"event":"x"}',
    *,
    method: str = "POST",
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    hdrs = dict(headers or {})
    if token is not None:
        hdrs.setdefault("Authorization", f"Splunk {token}")
    data = body.encode() if isinstance(body, str) else body
    async with aiohttp.ClientSession() as http:
        async with http.request(method, srv.base_url + "/splunk" + path, data=data, headers=hdrs) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text


@pytest.mark.parametrize(
    "path", ["/services/collector", "/services/collector/event", "/services/collector/event/1.0"]
)
async def test_event_routes_accept_and_index(path: str) -> None:
    async with server() as srv:
        status, body = await call(
            srv, path, '{"event":{"a":1},"index":"cavra","sourcetype":"st","time":1700000000.5}'
        )
        assert (status, body) == (200, {"text": "Success", "code": 0})
        (ev,) = splunk.state(srv.hub).events
        assert (ev.index, ev.sourcetype, ev.event, ev.time) == ("cavra", "st", {"a": 1}, 1700000000.5)


async def test_defaults_come_from_the_token_not_the_previous_envelope() -> None:
    async with server() as srv:
        status, _ = await call(srv, body='{"event":"a","index":"cavra","sourcetype":"s1"}{"event":"b"}')
        assert status == 200
        first, second = splunk.state(srv.hub).events
        assert (first.index, second.index) == ("cavra", "main")
        assert (second.sourcetype, second.source) == ("httpevent", "http:demo")


async def test_unknown_path_and_wrong_method() -> None:
    async with server() as srv:
        assert await call(srv, "/services/nope") == (
            404,
            {"text": "The requested URL was not found on this server.", "code": 404},
        )
        status, body = await call(srv, "/services/collector/event", method="GET")
        assert (status, body["code"]) == (405, 404)


@pytest.mark.parametrize(
    ("headers", "token", "status", "code"),
    [
        ({}, None, 401, 2),
        ({"Authorization": f"Bearer {TOKEN}"}, None, 401, 3),
        ({"Authorization": "Splunk"}, None, 401, 3),
        ({}, "00000000-0000-4000-8000-000000000000", 403, 4),
        ({}, OFF_TOKEN, 403, 1),
    ],
)
async def test_auth_codes(headers: dict[str, str], token: str | None, status: int, code: int) -> None:
    async with server() as srv:
        got, body = await call(srv, token=token, headers=headers)
        assert (got, body["code"]) == (status, code)
        assert splunk.state(srv.hub).events == []


async def test_basic_auth_and_query_string_tokens() -> None:
    import base64

    async with server() as srv:
        basic = base64.b64encode(f"x:{TOKEN}".encode()).decode()
        assert (await call(srv, token=None, headers={"Authorization": f"Basic {basic}"}))[0] == 200
        status, body = await call(srv, f"/services/collector/event?token={TOKEN}", token=None)
        assert (status, body["code"]) == (400, 16)
        assert (await call(srv, f"/services/collector/event?token={QS_TOKEN}", token=None))[0] == 200


async def test_empty_body_is_no_data() -> None:
    async with server() as srv:
        assert await call(srv, body=b"") == (400, {"text": "No data", "code": 5})
        assert (await call(srv, body=b"  \n "))[1]["code"] == 5


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ('{"event": null}', 6),
        ('{"event": false}', 6),
        ('{"event": " "}', 13),
        ('{"host": "h"}', 12),
        ('{"event": "x", "fields": {"nested": {"a": 1}}}', 15),
        ('{"event": "x", "fields": "flat?"}', 15),
        ('{"event": "x", "index": "forbidden"}', 7),
        ('{"event": "x", "time": "yesterday"}', 6),
        ('{"event": "x"', 6),
        ("[1, 2]", 6),
    ],
)
async def test_first_bad_envelope_keeps_those_before_it(bad: str, code: int) -> None:
    async with server() as srv:
        body = '{"event":"zero"}\n{"event":"one"}' + bad + '{"event":"after"}'
        status, answer = await call(srv, body=body)
        assert status == 400
        assert answer["code"] == code
        assert answer["invalid-event-number"] == 2
        assert [e.event for e in splunk.state(srv.hub).events] == ["zero", "one"]


async def test_edge_events_accepted() -> None:
    async with server() as srv:
        status, _ = await call(srv, body='{"event":{}}{"event":[]}{"event":0}{"fields":{"m":"1"}}')
        assert status == 200
        assert [e.event for e in splunk.state(srv.hub).events] == [{}, [], 0]


async def test_flat_fields_accepted() -> None:
    async with server() as srv:
        status, _ = await call(srv, body='{"event":"x","fields":{"a":"1","b":["x","y"]}}')
        assert status == 200
        assert splunk.state(srv.hub).events[0].fields == {"a": "1", "b": ["x", "y"]}


async def test_any_index_when_the_token_has_no_list() -> None:
    async with server() as srv:
        status, _ = await call(srv, token=QS_TOKEN, body='{"event":"x","index":"anything"}')
        assert status == 200


async def test_gzip_accepted_deflate_refused() -> None:
    async with server() as srv:
        status, _ = await call(
            srv, body=gzip.compress(b'{"event":"zipped"}'), headers={"Content-Encoding": "gzip"}
        )
        assert status == 200
        assert splunk.state(srv.hub).events[0].event == "zipped"
        status, body = await call(
            srv, body=zlib.compress(b'{"event":"x"}'), headers={"Content-Encoding": "deflate"}
        )
        assert status == 415
        assert "<html>" in body


async def test_body_over_the_configured_size_is_413_before_and_after_gunzip() -> None:
    async with server(max_content_length=200) as srv:
        big = json.dumps({"event": "y" * 300})
        assert (await call(srv, body=big))[0] == 413
        zipped = gzip.compress(big.encode())
        assert len(zipped) < 200
        assert (await call(srv, body=zipped, headers={"Content-Encoding": "gzip"}))[0] == 413
        assert splunk.state(srv.hub).events == []


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        ("busy", 503, 9),
        ("internal", 500, 8),
        ("queues_full", 503, 18),
        ("queues_full_ack_unavailable", 503, 20),
    ],
)
async def test_failure_switches(failure: str, status: int, code: int) -> None:
    async with server(failure=failure) as srv:
        got, body = await call(srv)
        assert (got, body["code"]) == (status, code)
        srv.settings["splunk"].failure = None
        assert (await call(srv))[0] == 200


async def test_health_ignores_the_token() -> None:
    async with server() as srv:
        for token in (None, TOKEN, "bogus"):
            for path in ("/services/collector/health", "/services/collector/health/1.0"):
                status, body = await call(srv, path, method="GET", token=token)
                assert (status, body) == (200, {"text": "HEC is healthy", "code": 17})


async def test_ack_channel_required_and_ack_ids_per_channel() -> None:
    async with server() as srv:
        status, body = await call(srv, token=ACK_TOKEN)
        assert (status, body["code"]) == (400, 10)
        status, body = await call(srv, token=ACK_TOKEN, headers={splunk.CHANNEL_HEADER: "not-a-guid"})
        assert (status, body["code"]) == (400, 11)
        one, two = str(uuid.uuid4()), str(uuid.uuid4())
        ids = []
        for channel in (one, one, two):
            status, body = await call(srv, token=ACK_TOKEN, headers={splunk.CHANNEL_HEADER: channel})
            assert status == 200
            ids.append(body["ackId"])
        assert ids == [0, 1, 0]
        status, body = await call(srv, f"/services/collector/event?channel={one}", token=ACK_TOKEN)
        assert body["ackId"] == 2
        status, body = await call(
            srv,
            "/services/collector/ack",
            '{"acks":[0,1,7]}',
            token=ACK_TOKEN,
            headers={splunk.CHANNEL_HEADER: one},
        )
        assert (status, body) == (200, {"acks": {"0": True, "1": True, "7": False}})
        # once reported true, an id is forgotten
        status, body = await call(
            srv,
            "/services/collector/ack",
            '{"acks":[0]}',
            token=ACK_TOKEN,
            headers={splunk.CHANNEL_HEADER: one},
        )
        assert body == {"acks": {"0": False}}


async def test_ack_endpoint_refuses_a_token_without_ack() -> None:
    async with server() as srv:
        status, body = await call(
            srv, "/services/collector/ack", '{"acks":[0]}', headers={splunk.CHANNEL_HEADER: str(uuid.uuid4())}
        )
        assert (status, body["code"]) == (400, 14)


async def test_channel_accepted_without_ack_and_no_ack_id() -> None:
    async with server() as srv:
        status, body = await call(srv, headers={splunk.CHANNEL_HEADER: str(uuid.uuid4())})
        assert (status, body) == (200, {"text": "Success", "code": 0})


async def test_raw_endpoint_uses_query_metadata() -> None:
    async with server() as srv:
        status, _ = await call(
            srv, "/services/collector/raw?index=cavra&sourcetype=rawst", "line one\nline two\n"
        )
        assert status == 200
        events = splunk.state(srv.hub).events
        assert [(e.event, e.index, e.sourcetype) for e in events] == [
            ("line one", "cavra", "rawst"),
            ("line two", "cavra", "rawst"),
        ]
        status, body = await call(srv, "/services/collector/raw?index=nope", "x")
        assert (status, body["code"]) == (400, 7)


async def test_reset_clears_indexed_events() -> None:
    async with server() as srv, aiohttp.ClientSession() as http:
        assert (await call(srv))[0] == 200
        async with http.post(srv.base_url + "/_emulator/reset") as resp:
            assert resp.status == 200
        assert splunk.state(srv.hub).events == []


def test_demo_config_points_at_the_collector() -> None:
    entry, env = splunk.demo_config("http://127.0.0.1:9", splunk.Settings())
    assert entry is not None
    assert entry["url_env"] == "SPLUNK_HEC_URL" and entry["allow_http"] is True
    assert env == {
        "SPLUNK_HEC_URL": "http://127.0.0.1:9/splunk/services/collector",
        "SPLUNK_HEC_TOKEN": TOKEN,
    }


@pytest.mark.parametrize(("after", "answers"), [(2, [False, True, False]), (0, [False, False, False])])
async def test_ack_after_polls_delays_the_acknowledgement(after: int, answers: list[bool]) -> None:
    async with server(ack_after_polls=after) as srv:
        channel = {splunk.CHANNEL_HEADER: str(uuid.uuid4())}
        status, body = await call(srv, token=ACK_TOKEN, headers=channel)
        assert (status, body["ackId"]) == (200, 0)
        got = []
        for _ in answers:
            status, body = await call(
                srv, "/services/collector/ack", '{"acks":[0]}', token=ACK_TOKEN, headers=channel
            )
            assert status == 200
            got.append(body["acks"]["0"])
        assert got == answers
