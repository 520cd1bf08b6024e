"""The Jamf Pro emulator behaves as real Jamf does: profile rewriting and ghost copies, entity handling in
``<payloads>``, Jamf Cloud's cluster with sticky sessions, and the removal of ``/api/oauth/token``."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

import aiohttp

from cavra.emulators import jamf
from cavra.emulators.server import EmulatorServer

PROFILES = "/jamf/JSSResource/osxconfigurationprofiles"
XML = {"Content-Type": "text/xml"}
SENT_UUID = "11111111-2222-4333-8444-555555555555"


def mobileconfig(value: str = "plain", *, uid: str = SENT_UUID, ident: str = "com.example.test") -> str:
    return plistlib.dumps(
        {
            "PayloadType": "Configuration",
            "PayloadVersion": 1,
            "PayloadUUID": uid,
            "PayloadIdentifier": ident,
            "PayloadDisplayName": "Sent name",
            "PayloadContent": [
                {
                    "PayloadType": "com.example.settings",
                    "PayloadUUID": "AAAAAAAA-2222-4333-8444-555555555555",
                    "PayloadIdentifier": "com.example.test.settings",
                    "PayloadDisplayName": "Sent item name",
                    "Value": value,
                },
                {
                    "PayloadType": "com.apple.ManagedClient.preferences",
                    "PayloadUUID": "BBBBBBBB-2222-4333-8444-555555555555",
                    "PayloadIdentifier": "com.example.test.mcx",
                    "Value": value,
                },
            ],
        }
    ).decode()


def body(payloads: str, name: str = "CAVRA eme_fid") -> str:
    """The Classic API body with ``payloads`` as the element's text (XML-escaped once by the writer)."""
    return (
        f"<os_x_configuration_profile><general><name>{escape(name)}</name>"
        f"<payloads>{escape(payloads)}</payloads></general></os_x_configuration_profile>"
    )


async def token(srv: EmulatorServer, path: str = "/jamf/api/v1/oauth/token") -> tuple[int, Any]:
    form = {
        "grant_type": "client_credentials",
        "client_id": jamf.DEMO_CLIENT_ID,
        "client_secret": jamf.DEMO_CLIENT_SECRET,
    }
    async with aiohttp.ClientSession() as http, http.post(srv.base_url + path, data=form) as r:
        return r.status, await r.json()


async def bearer(srv: EmulatorServer) -> str:
    status, answer = await token(srv)
    assert status == 200
    return str(answer["access_token"])


async def call(
    srv: EmulatorServer, method: str, path: str, tok: str, *, cookie: str | None = None, data: str = ""
) -> tuple[int, str, str | None]:
    headers = {"Authorization": f"Bearer {tok}", **XML}
    if cookie:
        headers["Cookie"] = cookie
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.request(method, srv.base_url + path, headers=headers, data=data.encode() or None) as r,
    ):
        sticky = r.cookies.get("APBALANCEID")
        return r.status, await r.text(), None if sticky is None else f"APBALANCEID={sticky.value}"


def stored_plist(text: str) -> dict[str, Any]:
    payloads = ET.fromstring(text).findtext("general/payloads") or ""
    loaded: dict[str, Any] = plistlib.loads(payloads.encode())
    return loaded


# -- profile rewriting and ghost copies ---------------------------------------------------------------------
async def test_stored_profile_is_rewritten_as_jamf_does() -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        tok = await bearer(srv)
        assert (await call(srv, "POST", PROFILES + "/id/0", tok, data=body(mobileconfig())))[0] == 201
        status, text, _ = await call(srv, "GET", PROFILES + "/id/1", tok)
        assert status == 200
        payloads = ET.fromstring(text).findtext("general/payloads") or ""
        assert "\t" not in payloads and '<plist version="1">' in payloads  # re-indented, re-rendered
        plist = stored_plist(text)
        assert plist["PayloadUUID"] != SENT_UUID and plist["PayloadIdentifier"] == plist["PayloadUUID"]
        assert plist["PayloadDisplayName"] == "CAVRA eme_fid"
        assert plist["PayloadEnabled"] is True and plist["PayloadRemovalDisallowed"] is True
        assert plist["PayloadOrganization"]
        for item in plist["PayloadContent"]:
            assert item["PayloadUUID"] not in (
                "AAAAAAAA-2222-4333-8444-555555555555",
                "BBBBBBBB-2222-4333-8444-555555555555",
            )
            assert item["PayloadDisplayName"] == "Custom Settings" and item["PayloadEnabled"] is True
            assert item["Value"] == "plain"
        assert ET.fromstring(text).findtext("general/uuid") == plist["PayloadUUID"]
        profile = jamf.state(srv.hub).profiles[1]
        assert profile.instances == [(plist["PayloadUUID"], plist["PayloadIdentifier"])]
        assert profile.ghost_copies == 0


async def test_update_without_the_stored_identifiers_leaves_a_ghost_copy() -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        tok = await bearer(srv)
        await call(srv, "POST", PROFILES + "/id/0", tok, data=body(mobileconfig()))
        stored = stored_plist((await call(srv, "GET", PROFILES + "/id/1", tok))[1])
        uid, ident = stored["PayloadUUID"], stored["PayloadIdentifier"]
        profile = jamf.state(srv.hub).profiles[1]
        # carrying back the stored top-level identifiers: the same profile on the Macs
        kept = body(mobileconfig("second", uid=uid, ident=ident))
        assert (await call(srv, "PUT", PROFILES + "/id/1", tok, data=kept))[0] == 201
        assert profile.ghost_copies == 0
        assert stored_plist((await call(srv, "GET", PROFILES + "/id/1", tok))[1])["PayloadUUID"] == uid
        # the client's own identifiers again: a second profile instance, a ghost copy on every Mac
        assert (await call(srv, "PUT", PROFILES + "/id/1", tok, data=body(mobileconfig("third"))))[0] == 201
        assert profile.ghost_copies == 1
        assert profile.instances == [(uid, ident), (SENT_UUID, "com.example.test")]


# -- entities in <payloads> ---------------------------------------------------------------------------------
async def test_single_escaped_ampersand_is_409_and_escape_once_is_stored_with_an_extra_layer() -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        tok = await bearer(srv)
        plist = mobileconfig("R&D <ops>")
        status, text, _ = await call(srv, "POST", PROFILES + "/id/0", tok, data=body(plist))
        assert status == 409
        assert "<p>Error: Unable to update the database</p>" in text
        assert jamf.state(srv.hub).profiles == {}
        once_more = plist.replace("&", "&amp;")  # the one extra entity layer Jamf decodes
        assert (await call(srv, "POST", PROFILES + "/id/0", tok, data=body(once_more)))[0] == 201
        stored = stored_plist((await call(srv, "GET", PROFILES + "/id/1", tok))[1])
        custom, mcx = stored["PayloadContent"]
        assert custom["Value"] == "R&amp;D &lt;ops&gt;"  # stored verbatim: the extra layer stays
        assert mcx["Value"] == "R&D <ops>"  # custom settings are re-rendered value-correct


# -- Jamf Cloud cluster -------------------------------------------------------------------------------------
async def test_cluster_serves_stale_reads_without_the_sticky_cookie() -> None:
    overrides = {"jamf": {"cluster_nodes": 2, "cluster_refresh": 3600}}
    async with EmulatorServer(providers=["jamf"], overrides=overrides) as srv:
        st = jamf.state(srv.hub)
        tok = await bearer(srv)  # node 0
        status, _, cookie = await call(srv, "POST", PROFILES + "/id/0", tok, data=body(mobileconfig()))
        assert status == 201 and cookie is not None  # node 1 took the write and set its cookie
        assert st.cluster.routed == [0, 1]
        # without the cookie the next request goes to node 0, which has not refreshed yet
        status, _, other = await call(srv, "GET", PROFILES + "/id/1", tok)
        assert status == 404 and other is not None and other != cookie
        # with the cookie the request goes to the node that took the write
        status, _, same = await call(srv, "GET", PROFILES + "/id/1", tok, cookie=cookie)
        assert status == 200 and same == cookie
        assert st.cluster.routed == [0, 1, 0, 1]
        st.cluster.refresh_all(st)  # a minute later every node has the profile
        assert (await call(srv, "GET", PROFILES + "/id/1", tok, cookie=other))[0] == 200


async def test_cluster_serves_the_old_version_to_another_node() -> None:
    overrides = {"jamf": {"cluster_nodes": 2, "cluster_refresh": 3600}}
    async with EmulatorServer(providers=["jamf"], overrides=overrides) as srv:
        st = jamf.state(srv.hub)
        tok = await bearer(srv)
        _, _, node1 = await call(srv, "POST", PROFILES + "/id/0", tok, data=body(mobileconfig("v1")))
        st.cluster.refresh_all(st)
        _, _, node0 = await call(srv, "GET", PROFILES + "/id/1", tok)
        update = body(mobileconfig("v2"))
        assert (await call(srv, "PUT", PROFILES + "/id/1", tok, cookie=node1, data=update))[0] == 201
        old = stored_plist((await call(srv, "GET", PROFILES + "/id/1", tok, cookie=node0))[1])
        new = stored_plist((await call(srv, "GET", PROFILES + "/id/1", tok, cookie=node1))[1])
        assert (old["PayloadContent"][0]["Value"], new["PayloadContent"][0]["Value"]) == ("v1", "v2")


async def test_single_server_sets_no_cookie() -> None:
    async with EmulatorServer(providers=["jamf"]) as srv:
        tok = await bearer(srv)
        status, _, cookie = await call(srv, "GET", PROFILES, tok)
        assert status == 200 and cookie is None


# -- token paths --------------------------------------------------------------------------------------------
async def test_legacy_oauth_path_can_be_removed() -> None:
    async with EmulatorServer(providers=["jamf"], overrides={"jamf": {"legacy_oauth_removed": True}}) as srv:
        status, answer = await token(srv, "/jamf/api/oauth/token")
        assert status == 404 and answer["httpStatus"] == 404
        assert srv.hub.tokens == {}
        status, answer = await token(srv, "/jamf/api/v1/oauth/token")
        assert status == 200 and answer["token_type"] == "Bearer"
    async with EmulatorServer(providers=["jamf"]) as srv:  # by default both paths still answer
        assert (await token(srv, "/jamf/api/oauth/token"))[0] == 200
