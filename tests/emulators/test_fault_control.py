"""The fault control answers a clear 422 naming the field, instead of accepting a typo or a TypeError."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from cavra.emulators.server import EmulatorServer


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"provider": "splnuk", "status": 503},
            "provider: unknown emulator 'splnuk'; serving: splunk, slack",
        ),
        ({"status": 503}, "provider: required, the emulator to fail (e.g. splunk)"),
        ({"provider": "splunk", "stauts": 503}, "stauts: unknown field; did you mean 'status'?"),
        ({"provider": "splunk", "status": "503"}, "status: expected an HTTP status from 100 to 599, or null"),
        ({"provider": "splunk", "status": 99}, "status: expected an HTTP status from 100 to 599, or null"),
        ({"provider": "splunk", "count": 0}, "count: expected a whole number of requests, at least 1"),
        ({"provider": "splunk", "count": True}, "count: expected a whole number of requests, at least 1"),
        ({"provider": "splunk", "delay": -1}, "delay: expected seconds, 0 or more"),
        (
            {"provider": "splunk", "headers": {"Retry-After": 1}},
            "headers: expected an object of header names",
        ),
        ({"provider": "splunk", "echo": "hex"}, "echo: expected true, false or one of raw, url, base64"),
        (["splunk"], "body: expected a JSON object"),
    ],
)
async def test_bad_faults_are_a_422_naming_the_field(body: Any, error: str) -> None:
    async with EmulatorServer(providers=["splunk", "slack"]) as srv, aiohttp.ClientSession() as session:
        async with session.post(f"{srv.base_url}/_emulator/faults", json=body) as resp:
            assert resp.status == 422
            answer = await resp.json()
        assert answer["error"].startswith(error), answer
        assert srv.hub.faults == {}


async def test_a_good_fault_is_applied() -> None:
    async with EmulatorServer(providers=["splunk"]) as srv, aiohttp.ClientSession() as session:
        fault = {"provider": "splunk", "status": 503, "count": 1, "headers": {"Retry-After": "1"}}
        async with session.post(f"{srv.base_url}/_emulator/faults", json=fault) as resp:
            assert resp.status == 200
        async with session.post(f"{srv.base_url}/splunk/services/collector", data=b"{}") as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
