"""What a browser on another site can make the server do: DNS rebinding (the Host check), cross-site
state-changing requests (content type, custom header, Origin), and the smaller HTTP promises (405 Allow,
HEAD, a trailing-slash redirect not built from Host)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cavra.api.guards import allowed_hosts_from, split_host
from cavra.api.settings import ApiSettings
from cavra.errors import ConfigError

from .conftest import SPLUNK_INTEGRATION, AppFactory, assert_error, bearer, token_set

REBIND = "rebind.attacker.example:8100"
ASK = {"X-CAVRA-Request": "1"}


# --- Host (DNS rebinding) ----------------------------------------------------------------------------
async def test_protected_mode_refuses_a_rebound_host_name(client: httpx.AsyncClient) -> None:
    """A page on rebind.attacker.example whose name now points at 127.0.0.1 is its own origin: it sends
    a matching Origin. It must neither change anything nor read the console."""
    rebound = {"Host": REBIND, "Origin": f"http://{REBIND}"}
    resp = await client.post("/integrations", json=SPLUNK_INTEGRATION, headers=rebound)
    body = assert_error(resp, 421, "misdirected_request")
    assert "--allowed-host" in body["detail"]
    for path in ("/console", "/integrations", "/healthz", "/openapi.json"):
        assert_error(await client.get(path, headers={"Host": REBIND}), 421, "misdirected_request")
    assert (await client.get("/integrations")).json()["count"] == 0


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:8000", "127.0.0.1", "127.9.8.7:1", "localhost:8000", "LOCALHOST", "localhost.", "[::1]:8000"],
)
async def test_protected_mode_answers_loopback_host_names(client: httpx.AsyncClient, host: str) -> None:
    assert (await client.get("/healthz", headers={"Host": host})).status_code == 200


@pytest.mark.parametrize(
    "host",
    [
        "localhost.attacker.example",
        "127.0.0.1.nip.io",
        "10.0.0.1:8000",
        "[fd00::1]",
        "",
        "a b",
        "[::1",
        "x:y",
    ],
)
async def test_protected_mode_refuses_other_host_values(client: httpx.AsyncClient, host: str) -> None:
    assert_error(await client.get("/healthz", headers={"Host": host}), 421, "misdirected_request")


async def test_allowed_hosts_are_answered_and_turn_the_check_on_with_tokens(make_client: AppFactory) -> None:
    async with make_client(tokens=token_set(), allowed_hosts=("CAVRA.internal", "fd00::1")) as c:
        for host in ("cavra.internal", "cavra.internal:443", "[fd00::1]:8000", "127.0.0.1:8000"):
            assert (await c.get("/healthz", headers={"Host": host})).status_code == 200, host
        assert_error(await c.get("/healthz", headers={"Host": REBIND}), 421)
        spec = (await c.get("/openapi.json")).json()
        assert "421" in spec["paths"]["/integrations"]["get"]["responses"]
    # with tokens and no names the app leaves Host alone (cavra serve turns the check on for loopback)
    async with make_client(tokens=token_set()) as c:
        assert (await c.get("/healthz", headers={"Host": REBIND})).status_code == 200
    async with make_client(tokens=token_set(), host_check=True) as c:
        assert_error(await c.get("/healthz", headers={"Host": REBIND}), 421)


def test_allowed_hosts_from_flags_and_environment() -> None:
    env = {"CAVRA_ALLOWED_HOSTS": "a.example, B.example,,[::2]"}
    assert ApiSettings.from_environment(environ=env).allowed_hosts == ("a.example", "b.example", "[::2]")
    flags = ApiSettings.from_environment(allowed_hosts=["c.example"], environ=env)
    assert flags.allowed_hosts == ("c.example",)
    for bad in ("http://a.example", "a.example:443", "a.example/x", "*.example", "a b"):
        with pytest.raises(ConfigError, match="is not a host name"):
            allowed_hosts_from([bad])
    with pytest.raises(ConfigError, match="CAVRA_ALLOWED_HOSTS"):
        ApiSettings.from_environment(environ={"CAVRA_ALLOWED_HOSTS": "https://x"})
    assert split_host("[::FFFF:127.0.0.1]:80") == ("[::ffff:7f00:1]", "80")


# --- cross-site state-changing requests --------------------------------------------------------------
async def test_a_cross_site_text_plain_reload_is_refused(client: httpx.AsyncClient) -> None:
    """A form or ``fetch(..., {mode: "no-cors"})`` on any site can send this without a preflight."""
    resp = await client.post(
        "/connectors/reload",
        content=b"{}",
        headers={"Content-Type": "text/plain", "Origin": "https://attacker.example"},
    )
    assert_error(resp, 403, "cross_origin")
    resp = await client.post("/connectors/reload", content=b"x", headers={"Content-Type": "text/plain"})
    assert_error(resp, 415, "unsupported_media_type")
    assert_error(await client.post("/connectors/reload"), 403, "request_header_required")
    for kind in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"):
        resp = await client.post(
            "/integrations", content=b'{"integration_id": "x"}', headers={"Content-Type": kind}
        )
        assert_error(resp, 415, "unsupported_media_type")
    assert (await client.get("/integrations")).json()["count"] == 0


@pytest.mark.parametrize(
    "headers",
    [ASK, {"Content-Type": "application/json"}, {**ASK, "Origin": "http://127.0.0.1:8000"}],
)
async def test_a_bodyless_request_with_a_header_a_browser_must_ask_for_is_answered(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert (await client.post("/connectors/reload", headers=headers)).status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"Origin": "https://attacker.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},  # another port is another origin
        {"Origin": "https://127.0.0.1:8000"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_a_foreign_origin_is_refused_even_with_json(
    client: httpx.AsyncClient, extra: dict[str, str]
) -> None:
    resp = await client.post("/integrations", json=SPLUNK_INTEGRATION, headers=extra)
    assert_error(resp, 403, "cross_origin")
    assert_error(await client.delete("/integrations/splunk", headers={**ASK, **extra}), 403, "cross_origin")


async def test_same_origin_json_requests_and_the_seed_shape_work(client: httpx.AsyncClient) -> None:
    same = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
    assert (await client.post("/integrations", json=SPLUNK_INTEGRATION, headers=same)).status_code == 200
    seed_like = {"Content-Type": "application/json; charset=utf-8"}
    resp = await client.post(
        "/integrations", content=b'{"integration_id":"b","provider":"splunk"}', headers=seed_like
    )
    assert resp.status_code == 200, resp.text
    assert (await client.delete("/integrations/b", headers=ASK)).status_code == 200


async def test_with_tokens_the_authorization_header_is_enough_without_a_body(make_client: AppFactory) -> None:
    async with make_client(tokens=token_set(), client=("10.1.2.3", 4000)) as c:
        assert (await c.post("/connectors/reload", headers=bearer("admin"))).status_code == 200
        assert_error(await c.post("/connectors/reload"), 401)
        text = {**bearer("admin"), "Content-Type": "text/plain"}
        assert_error(await c.post("/connectors/reload", content=b"{}", headers=text), 415)


# --- control characters in answers -------------------------------------------------------------------
def _no_controls(value: Any) -> None:
    text = str(value)
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029" for ch in text), text


async def test_error_bodies_do_not_echo_control_characters(client: httpx.AsyncClient) -> None:
    resp = await client.get("/x%0a2026-01-01 00:00:00 INFO forged%0d%1b[31m")
    body = assert_error(resp, 404)
    _no_controls(body["detail"])
    assert "\\x0a" in body["detail"]
    body = assert_error(await client.get("/integrations/a%0Ab%E2%80%A8c"), 404)
    _no_controls(body["detail"])
    bad = {**SPLUNK_INTEGRATION, "integration_id": "x\ny", "provider": "no\u2028such"}
    _no_controls(assert_error(await client.post("/integrations", json=bad), 422)["detail"])


# --- 405, HEAD, trailing slash -----------------------------------------------------------------------
async def test_405_names_every_allowed_method(client: httpx.AsyncClient) -> None:
    resp = await client.put("/integrations", json={})
    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["allow"] == "GET, HEAD, POST"
    resp = await client.patch("/integrations/splunk", json={})
    assert resp.headers["allow"] == "DELETE, GET, HEAD"
    resp = await client.get("/connectors/reload")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"


async def test_head_works_where_get_does(client: httpx.AsyncClient) -> None:
    for path in (
        "/healthz",
        "/integrations",
        "/release-connector-deliveries/dashboard",
        "/openapi.json",
        "/console",
    ):
        got, head = await client.get(path), await client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers.get("content-length") == got.headers.get("content-length"), path
    missing = await client.head("/integrations/ghost")
    assert missing.status_code == 404 and missing.content == b""
    assert (await client.head("/connectors/reload")).status_code == 405


async def test_trailing_slash_redirect_is_relative(make_client: AppFactory) -> None:
    async with make_client(tokens=token_set()) as c:
        resp = await c.get("/healthz/?a=1", headers={"Host": "evil.example"})
        assert resp.status_code == 307
        assert resp.headers["location"] == "/healthz?a=1"
        resp = await c.get("/console/", headers={"Host": "evil.example"})
        assert resp.status_code == 307 and resp.headers["location"] == "/console"
        for path in ("//evil.example/", "/nope/", "/healthz//"):
            assert_error(await c.get(path, headers={"Host": "evil.example"}), 404)
