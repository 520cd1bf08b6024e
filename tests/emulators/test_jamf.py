"""The Jamf Pro emulator: token endpoints, Bearer-only Classic API, XML checks, duplicate names, upsert."""

from __future__ import annotations

import asyncio
import base64
import plistlib
import time
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
import pytest

from cavra.emulators import jamf
from cavra.emulators.server import EmulatorServer

PROFILES = "/jamf/JSSResource/osxconfigurationprofiles"
PAYLOAD = plistlib.dumps({"PayloadType": "Configuration", "PayloadContent": []}).decode()


def profile_xml(name: str | None = "CAVRA eme_test", payloads: str | None = PAYLOAD) -> str:
    root = ET.Element("os_x_configuration_profile")
    general = ET.SubElement(root, "general")
    if name is not None:
        ET.SubElement(general, "name").text = name
    if payloads is not None:
        ET.SubElement(general, "payloads").text = payloads
    return ET.tostring(root, encoding="unicode")


async def call(
    srv: EmulatorServer, method: str, path: str, *, token: str | None = None, **kw: Any
) -> tuple[int, str, aiohttp.typedefs.LooseHeaders]:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, srv.base_url + path, headers=headers, **kw) as r,
    ):
        return r.status, await r.text(), r.headers


async def token(srv: EmulatorServer, path: str = "/jamf/api/oauth/token") -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": jamf.DEMO_CLIENT_ID,
        "client_secret": jamf.DEMO_CLIENT_SECRET,
    }
    async with aiohttp.ClientSession() as http, http.post(srv.base_url + path, data=form) as r:
        assert r.status == 200
        body = await r.json()
        return str(body["access_token"])


XML = {"Content-Type": "text/xml"}


@pytest.mark.parametrize("path", ["/jamf/api/oauth/token", "/jamf/api/v1/oauth/token"])
async def test_client_credentials_token_is_issued_and_recorded(path: str) -> None:
    async with EmulatorServer(providers=["jamf"], overrides={"jamf": {"token_lifetime": 60}}) as srv:
        form = {
            "grant_type": "client_credentials",
            "client_id": jamf.DEMO_CLIENT_ID,
            "client_secret": jamf.DEMO_CLIENT_SECRET,
        }
        async with aiohttp.ClientSession() as http, http.post(srv.base_url + path, data=form) as r:
            assert r.status == 200
            body = await r.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 60
        issued = srv.hub.tokens[body["access_token"]]
        assert issued.audience == "jamf"
        assert issued.client_id == jamf.DEMO_CLIENT_ID
        assert time.time() + 50 < issued.expires_at <= time.time() + 61


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        (
            {"grant_type": "client_credentials", "client_id": jamf.DEMO_CLIENT_ID, "client_secret": "wrong"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
            401,
            "invalid_client",
        ),
        ({"grant_type": "client_credentials", "client_id": jamf.DEMO_CLIENT_ID}, 401, "invalid_client"),
        (
            {
                "grant_type": "password",
                "client_id": jamf.DEMO_CLIENT_ID,
                "client_secret": jamf.DEMO_CLIENT_SECRET,
            },
            400,
            "unsupported_grant_type",
        ),
    ],
)
async def test_token_endpoint_rejects_bad_clients(form: dict[str, str], status: int, error: str) -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        async with (
            aiohttp.ClientSession() as http,
            http.post(srv.base_url + "/jamf/api/oauth/token", data=form) as r,
        ):
            assert r.status == status
            assert (await r.json())["error"] == error
        assert srv.hub.tokens == {}


async def test_token_endpoint_needs_a_form_body() -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        body = {
            "grant_type": "client_credentials",
            "client_id": jamf.DEMO_CLIENT_ID,
            "client_secret": jamf.DEMO_CLIENT_SECRET,
        }
        status, text, _ = await call(srv, "POST", "/jamf/api/oauth/token", json=body)
        assert status == 400
        assert "invalid_request" in text


async def test_user_token_keep_alive_rotates_and_invalidate() -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        basic = base64.b64encode(f"{jamf.DEMO_USERNAME}:{jamf.DEMO_PASSWORD}".encode()).decode()
        async with aiohttp.ClientSession() as http:
            async with http.post(
                srv.base_url + "/jamf/api/v1/auth/token", headers={"Authorization": f"Basic {basic}"}
            ) as r:
                assert r.status == 200
                first = (await r.json())["token"]
            bad = base64.b64encode(f"{jamf.DEMO_USERNAME}:nope".encode()).decode()
            async with http.post(
                srv.base_url + "/jamf/api/v1/auth/token", headers={"Authorization": f"Basic {bad}"}
            ) as r:
                assert r.status == 401
        status, text, _ = await call(srv, "POST", "/jamf/api/v1/auth/keep-alive", token=first)
        assert status == 200
        import json

        second = json.loads(text)["token"]
        assert second != first
        assert (await call(srv, "GET", PROFILES, token=first))[0] == 401
        assert (await call(srv, "GET", PROFILES, token=second))[0] == 200
        assert (await call(srv, "POST", "/jamf/api/v1/auth/invalidate-token", token=second))[0] == 204
        assert (await call(srv, "GET", PROFILES, token=second))[0] == 401


async def test_classic_api_needs_a_valid_bearer_token() -> None:
    async with EmulatorServer(providers=["jamf"], overrides={"jamf": {"token_lifetime": 1}}) as srv:
        assert (await call(srv, "GET", PROFILES))[0] == 401
        basic = base64.b64encode(f"{jamf.DEMO_USERNAME}:{jamf.DEMO_PASSWORD}".encode()).decode()
        status, text, _ = await call(srv, "GET", PROFILES, headers={"Authorization": f"Basic {basic}"})
        assert status == 401
        assert "<p>Error:" in text
        assert (await call(srv, "GET", PROFILES, token="made-up"))[0] == 401
        value = await token(srv)
        assert (await call(srv, "GET", PROFILES, token=value))[0] == 200
        srv.hub.tokens[value].expires_at = time.time() - 1  # the token lived out its lifetime
        assert (await call(srv, "GET", PROFILES, token=value))[0] == 401


async def test_create_read_by_name_and_id_then_update_in_place() -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        value = await token(srv)
        status, text, _ = await call(
            srv, "POST", PROFILES + "/id/0", token=value, data=profile_xml(), headers=XML
        )
        assert status == 201
        profile_id = ET.fromstring(text).findtext("id")
        assert profile_id == "1"
        status, text, _ = await call(srv, "GET", PROFILES + "/name/CAVRA eme_test", token=value)
        assert status == 200
        root = ET.fromstring(text)
        assert root.findtext("general/id") == "1"
        stored = plistlib.loads((root.findtext("general/payloads") or "").encode())
        assert (stored["PayloadType"], stored["PayloadContent"]) == ("Configuration", [])
        new_payload = plistlib.dumps({"PayloadType": "Configuration", "PayloadVersion": 2}).decode()
        status, text, _ = await call(
            srv, "PUT", PROFILES + "/id/1", token=value, data=profile_xml(payloads=new_payload), headers=XML
        )
        assert status == 201
        assert ET.fromstring(text).findtext("id") == "1"
        status, text, _ = await call(srv, "GET", PROFILES + "/id/1", token=value)
        assert (
            plistlib.loads((ET.fromstring(text).findtext("general/payloads") or "").encode())[
                "PayloadVersion"
            ]
            == 2
        )
        assert len(jamf.state(srv.hub).profiles) == 1


async def test_duplicate_name_is_409_html() -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        value = await token(srv)
        assert (await call(srv, "POST", PROFILES, token=value, data=profile_xml(), headers=XML))[0] == 201
        status, text, headers = await call(
            srv, "POST", PROFILES + "/id/0", token=value, data=profile_xml(), headers=XML
        )
        assert status == 409
        assert "<p>Error: Duplicate name</p>" in text
        assert headers["Content-Type"].startswith("text/html")
        assert (await call(srv, "POST", PROFILES, token=value, data=profile_xml("other"), headers=XML))[
            0
        ] == 201
        status, text, _ = await call(
            srv, "PUT", PROFILES + "/id/2", token=value, data=profile_xml(), headers=XML
        )
        assert status == 409


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<os_x_configuration_profile><general><name>x</name>", "Unable to parse XML"),
        ("<computer><general><name>x</name></general></computer>", "Problem with element"),
        (profile_xml(name=None), "Name is required"),
        (profile_xml(name="  "), "Name is required"),
        (profile_xml(payloads="<plist><dict><key>a</key>"), "payloads"),
    ],
)
async def test_invalid_xml_bodies_are_400_html(body: str, message: str) -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        value = await token(srv)
        status, text, _ = await call(srv, "POST", PROFILES + "/id/0", token=value, data=body, headers=XML)
        assert status == 400
        assert "<p>Error:" in text
        assert message in text
        assert jamf.state(srv.hub).profiles == {}


async def test_json_body_is_415_and_unknown_profile_404() -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        value = await token(srv)
        status, _, _ = await call(
            srv,
            "POST",
            PROFILES + "/id/0",
            token=value,
            data=profile_xml(),
            headers={"Content-Type": "application/json"},
        )
        assert status == 415
        assert (await call(srv, "GET", PROFILES + "/name/missing", token=value))[0] == 404
        assert (await call(srv, "PUT", PROFILES + "/id/9", token=value, data=profile_xml(), headers=XML))[
            0
        ] == 404


async def test_concurrency_cap_answers_503() -> None:
    overrides = {"jamf": {"max_concurrent": 1, "response_delay": 0.3}}
    async with EmulatorServer(providers=["jamf"], overrides=overrides) as srv:
        value = await token(srv)
        results = await asyncio.gather(*(call(srv, "GET", PROFILES, token=value) for _ in range(3)))
        statuses = sorted(r[0] for r in results)
        assert statuses[0] == 200
        assert 503 in statuses


async def test_reset_forgets_profiles() -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        value = await token(srv)
        await call(srv, "POST", PROFILES, token=value, data=profile_xml(), headers=XML)
        srv.hub.reset()
        assert jamf.state(srv.hub).profiles == {}
        assert srv.hub.tokens == {}


def test_demo_config_points_at_the_emulator() -> None:
    entry, env = jamf.demo_config("http://127.0.0.1:9", jamf.Settings())
    assert entry is not None
    assert entry["client_id"] == jamf.DEMO_CLIENT_ID
    assert env == {"JAMF_URL": "http://127.0.0.1:9/jamf", "JAMF_CLIENT_SECRET": jamf.DEMO_CLIENT_SECRET}
