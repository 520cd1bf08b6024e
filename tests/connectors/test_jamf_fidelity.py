"""The Jamf connector against what real Jamf does: it rewrites stored profiles (a republish must carry back
the stored identity or Macs get a ghost copy), double entity-encodes values, runs Jamf Cloud as a cluster
with sticky sessions, and deprecates ``/api/oauth/token``."""

from __future__ import annotations

import json
import plistlib
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import Context, Delivered, PreparedRequest, Reject, Response, TokenCache
from cavra.connectors.endpoint.export import parse_export
from cavra.connectors.flow import FlowState
from cavra.connectors.jamf import JamfConnector, JamfFlow, JamfSettings, profile_xml
from cavra.connectors.jamf.profile import governed_digest, sent_configuration
from cavra.connectors.jamf.session import remember, with_cookies
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators import jamf as jamf_emulator
from cavra.emulators.server import EmulatorServer
from cavra.secrets import Secret
from cavra.transport import AiohttpTransport, SendOptions, _headers
from tests.connectors.kit import publication_event

CLIENT_ID = "cavra-fidelity-client"
CLIENT_SECRET = "jamfFidelitySecret~9Wq3Lx"
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
EVENT = publication_event("evt_jamf_fid_0001")
NEWER = {**publication_event("evt_jamf_fid_0002"), "release": "2026.11.2"}
CLUSTER = {"clients": {CLIENT_ID: CLIENT_SECRET}, "cluster_nodes": 2, "cluster_refresh": 3600}


def server(**extra: Any) -> EmulatorServer:
    return EmulatorServer(
        providers=["jamf"], overrides={"jamf": {"clients": {CLIENT_ID: CLIENT_SECRET}, **extra}}
    )


@pytest.fixture
async def srv() -> AsyncIterator[EmulatorServer]:
    async with server() as running:
        yield running


def target(srv: EmulatorServer, host: str | None = None, **extra: Any) -> Target:
    url = srv.base_url + "/jamf"
    if host is not None:
        url = url.replace("127.0.0.1", host)
    raw = {"url": url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "allow_http": True, **extra}
    return target_from_mapping("jamf", raw)


def steps(delivery: Any) -> list[tuple[str, int | None, str]]:
    return [(a.step, a.status_code, a.verdict) for a in delivery.attempts]


def top_level_ids(body: bytes) -> tuple[str, str]:
    payloads = ET.fromstring(body).findtext("general/payloads") or ""
    plist = plistlib.loads(payloads.replace("&amp;", "&").encode())
    return plist["PayloadUUID"], plist["PayloadIdentifier"]


# -- 1. the stored identity is carried back: no ghost copy -------------------------------------------------
async def test_republish_carries_back_the_stored_identity_and_leaves_no_ghost(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    tokens = TokenCache()
    first = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
    second = await deliver_one(target(srv), NEWER, policy=POLICY, transport=transport, tokens=tokens)
    assert first.success and second.success, (first.error, second.error)
    profile = jamf_emulator.state(srv.hub).profiles[1]
    assert profile.ghost_copies == 0, profile.instances
    put = next(r for r in srv.hub.received("jamf") if r.method == "PUT")
    assert top_level_ids(put.body) == (profile.payload_uuid, profile.payload_identifier)
    assert second.detail["action"] == "updated"


async def test_third_publish_still_one_profile_instance(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    tokens = TokenCache()
    for event in (EVENT, NEWER, {**NEWER, "event_id": "evt_jamf_fid_0003", "release": "2026.11.3"}):
        d = await deliver_one(target(srv), event, policy=POLICY, transport=transport, tokens=tokens)
        assert d.success, d.error
    assert [p.ghost_copies for p in jamf_emulator.state(srv.hub).profiles.values()] == [0]


def test_verify_rejects_an_update_whose_identity_did_not_stick() -> None:
    export = parse_export(EVENT, "jamf")
    stored = ("AAAAAAAA-0000-4000-8000-000000000001", "AAAAAAAA-0000-4000-8000-000000000001")
    body = profile_xml(export, stored)
    config = sent_configuration(body)
    assert config is not None
    state = JamfFlow(
        step="verify",
        remote_id="3",
        action="updated",
        identity=("BBBBBBBB-0000-4000-8000-000000000002", "BBBBBBBB-0000-4000-8000-000000000002"),
        digest=export.digest(),
        governed_digest=governed_digest(config),
        token=Secret("tok-1234"),
        token_expires=time.monotonic() + 60,
    )
    request = PreparedRequest("GET", "https://jamf.example/x", step="verify")
    settings = JamfSettings.model_validate(
        {"url": "https://jamf.example", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )
    verdict = JamfConnector().interpret(request, Response(200, {}, body), settings, Context("dk"), state)
    assert isinstance(verdict, Reject)
    assert "second copy" in verdict.reason
    same = JamfFlow(**{**state.__dict__, "identity": stored})
    assert isinstance(
        JamfConnector().interpret(request, Response(200, {}, body), settings, Context("dk"), same), Delivered
    )


# -- 1b. values Jamf stores with an extra entity layer -----------------------------------------------------
async def test_values_with_ampersand_and_angle_brackets_are_published_and_proven(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    event = {**EVENT, "approval": {"status": "approved", "approver": "Ops & Security <sec@example.com>"}}
    d = await deliver_one(target(srv), event, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert steps(d)[-2:] == [("create", 201, "next"), ("verify", 200, "delivered")]
    assert d.detail["stored_entity_encoded"] == "true"
    assert d.detail["configuration_sha256"] == parse_export(event, "jamf").digest()
    assert d.proof is not None and "extra entity-encoding layer" in d.proof


async def test_values_without_entities_are_proven_exactly(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
    assert d.success, d.error
    assert "stored_entity_encoded" not in d.detail
    assert d.detail["configuration_sha256"] == parse_export(EVENT, "jamf").digest()


# -- 2. Jamf Cloud: sticky sessions -------------------------------------------------------------------------
@pytest.mark.parametrize("cookie", ["APBALANCEID", "AWSALB", "jpro-ingress"])
async def test_cluster_first_publish_is_read_back_from_the_node_that_took_it(
    transport: AiohttpTransport, cookie: str
) -> None:
    async with server(**CLUSTER, cluster_cookie=cookie) as srv:
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
        assert d.success, d.error
        assert [s for s, _, _ in steps(d)] == ["token", "lookup", "create", "verify"]
        cluster = jamf_emulator.state(srv.hub).cluster
        assert cluster.routed == [0, 0, 0, 0]  # the token's answer set the cookie; every step followed it
        received = srv.hub.received("jamf")
        assert "Cookie" not in received[0].headers
        assert all(r.headers.get("Cookie") == f"{cookie}={cluster.nodes[0].cookie}" for r in received[1:])
        record = json.dumps(d.to_dict())
        assert cluster.nodes[0].cookie not in record  # the cookie is a credential: never in evidence
        assert str(d.attempts[1].request.headers["Cookie"]) == "**REDACTED**"


async def test_cluster_republish_reads_back_the_new_version(transport: AiohttpTransport) -> None:
    async with server(**CLUSTER) as srv:
        st = jamf_emulator.state(srv.hub)
        tokens = TokenCache()
        first = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
        assert first.success, first.error
        st.cluster.refresh_all(st)  # a minute later every web app has the profile
        second = await deliver_one(target(srv), NEWER, policy=POLICY, transport=transport, tokens=tokens)
        assert second.success, second.error
        assert steps(second) == [
            ("lookup", 200, "next"),
            ("update", 201, "next"),
            ("verify", 200, "delivered"),
        ]
        assert st.cluster.routed[-3:] == [1, 1, 1]
        # a new delivery starts without the previous delivery's cookie
        lookup = srv.hub.received("jamf")[-3]
        assert "Cookie" not in lookup.headers


class RefreshAfterSecondLookup:
    """Passes requests on; once the second look-up of a delivery has answered, the cluster refreshes (the
    minute the connector waits before looking again)."""

    def __init__(self, inner: AiohttpTransport, srv: EmulatorServer) -> None:
        self.inner, self.srv, self.lookups = inner, srv, 0

    async def send(self, request: PreparedRequest, options: SendOptions) -> Response:
        answer = await self.inner.send(request, options)
        if request.step == "lookup":
            self.lookups += 1
            if self.lookups == 2:
                st = jamf_emulator.state(self.srv.hub)
                st.cluster.refresh_all(st)
        return answer

    async def close(self) -> None:
        return None


async def test_another_delivery_on_a_stale_web_app_waits_for_the_refresh(transport: AiohttpTransport) -> None:
    async with server(**CLUSTER) as srv:
        tokens = TokenCache()
        first = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport, tokens=tokens)
        assert first.success, first.error
        # within the minute, the next delivery lands on the other web app, which has not seen the profile
        second = await deliver_one(
            target(srv, cluster_refresh_seconds=0.01),
            NEWER,
            policy=POLICY,
            transport=RefreshAfterSecondLookup(transport, srv),
            tokens=tokens,
        )
        assert second.success, second.error
        assert steps(second) == [
            ("lookup", 404, "next"),
            ("create", 409, "next"),
            ("lookup", 404, "retry"),
            ("lookup", 200, "next"),
            ("update", 201, "next"),
            ("verify", 200, "delivered"),
        ]
        assert second.attempts[2].retry_after == 0.01
        assert "refresh" in str(second.attempts[2].reason)
        assert len(jamf_emulator.state(srv.hub).profiles) == 1


async def test_transport_keeps_no_cookie_between_requests(transport: AiohttpTransport) -> None:
    """aiohttp's default cookie jar would send a ``localhost`` cookie on every later request (to any
    delivery or target on that host); the transport has none."""
    async with server(**CLUSTER) as srv:
        url = srv.base_url.replace("127.0.0.1", "localhost") + "/jamf/api/v1/oauth/token"
        options = SendOptions(allow_http=True)
        for _ in range(2):
            answer = await transport.send(PreparedRequest("POST", url, step="token"), options)
            assert answer.status == 400 and "apbalanceid=" in (answer.header("set-cookie") or "").lower()
        assert [r.headers.get("Cookie") for r in srv.hub.received("jamf")] == [None, None]


def test_repeated_set_cookie_headers_all_reach_the_connector() -> None:
    headers = _headers(
        [
            ("Set-Cookie", "AWSALB=abc123; Expires=Tue, 15 Dec 2026 10:00:00 GMT; Path=/"),
            ("Set-Cookie", "AWSALBCORS=abc123; Path=/; SameSite=None; Secure"),
            ("Content-Type", "text/xml"),
        ]
    )
    cookies = remember((), Response(200, headers, b""))
    assert cookies == (("AWSALB", "abc123"), ("AWSALBCORS", "abc123"))
    cookies = remember(cookies, Response(200, {"set-cookie": "AWSALB=def456; Path=/"}, b""))
    assert cookies == (("AWSALB", "def456"), ("AWSALBCORS", "abc123"))
    cookies = remember(cookies, Response(200, {"set-cookie": "AWSALBCORS=x; Max-Age=0"}, b""))
    assert cookies == (("AWSALB", "def456"),)
    bad = "bad name=1\nAPBALANCEID=aws web1\nok=1; Path=/\n=novalue\njunk"
    assert remember((), Response(200, {"set-cookie": bad}, b"")) == (("ok", "1"),)
    request = with_cookies(PreparedRequest("GET", "https://jamf.example/x"), cookies)
    assert isinstance(request.headers["Cookie"], Secret)
    assert request.headers["Cookie"].reveal() == "AWSALB=def456"


def test_a_plain_flow_state_is_accepted() -> None:
    settings = JamfSettings.model_validate(
        {"url": "https://jamf.example", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )
    state = FlowState(step="lookup", token=Secret("tok-1234"), token_expires=time.monotonic() + 60)
    answer = Response(404, {"set-cookie": "APBALANCEID=aws.web0; Path=/"}, b"")
    request = PreparedRequest("GET", "https://jamf.example/x", step="lookup")
    verdict = JamfConnector().interpret(request, answer, settings, Context("dk"), state)
    assert verdict.__class__.__name__ == "Next"
    nxt: Any = verdict
    assert nxt.state.step == "create" and nxt.state.cookies == (("APBALANCEID", "aws.web0"),)
    follow = JamfConnector().prepare(EVENT, settings, Context("dk"), nxt.state)
    assert follow.headers["Cookie"].reveal() == "APBALANCEID=aws.web0"  # type: ignore[union-attr]


# -- 3. token path ------------------------------------------------------------------------------------------
async def test_default_token_path_works_once_the_legacy_path_is_removed(transport: AiohttpTransport) -> None:
    async with server(legacy_oauth_removed=True) as srv:
        d = await deliver_one(target(srv), EVENT, policy=POLICY, transport=transport)
        assert d.success, d.error
        assert srv.hub.received("jamf")[0].path == "/jamf/api/v1/oauth/token"
        legacy = await deliver_one(
            target(srv, token_path="/api/oauth/token"), EVENT, policy=POLICY, transport=transport
        )
        assert steps(legacy) == [("token", 404, "reject")]
        assert legacy.error is not None and "set token_path to /api/v1/oauth/token" in legacy.error


async def test_legacy_token_path_is_still_configurable(
    srv: EmulatorServer, transport: AiohttpTransport
) -> None:
    d = await deliver_one(
        target(srv, token_path="/api/oauth/token"), EVENT, policy=POLICY, transport=transport
    )
    assert d.success, d.error
    assert srv.hub.received("jamf")[0].path == "/jamf/api/oauth/token"
