"""Console access: the API's tokens and roles (Bearer header or the login cookie), protected mode, the
login form's cookie and origin checks, logout, and no state-changing route besides those two."""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cavra.api.auth import TokenSet

from .conftest import BASE_URL, TOKENS, ConsoleFactory, Seed, bearer, page

PAGES = ("/console", "/console/deliveries", "/console/publications", "/console/integrations")
ORIGIN = {"Origin": BASE_URL}
#: protected mode answers loopback Host names only
LOCAL = "http://127.0.0.1:8000"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def cookie_attrs(resp: httpx.Response) -> dict[str, str]:
    """The console cookie's Set-Cookie attributes (lower-case names; flags map to "")."""
    headers = [v for v in resp.headers.get_list("set-cookie") if v.startswith("cavra_console=")]
    assert len(headers) == 1, resp.headers.get_list("set-cookie")
    parsed = SimpleCookie()
    parsed.load(headers[0])
    morsel = parsed["cavra_console"]
    attrs = {k: str(v) for k, v in morsel.items() if v}
    attrs["value"] = morsel.value
    attrs["raw"] = headers[0]
    return attrs


async def login(
    c: httpx.AsyncClient, token: str, *, headers: dict[str, str] | None = None, nxt: str = ""
) -> httpx.Response:
    data = {"token": token, **({"next": nxt} if nxt else {})}
    return await c.post("/console/login", data=data, headers=ORIGIN if headers is None else headers)


async def test_without_a_token_pages_redirect_to_the_login_form(
    make_console: ConsoleFactory, seed: Seed
) -> None:
    async with make_console() as c:
        for path in (
            *PAGES,
            f"/console/deliveries/{seed.ids['retried']}",
            "/console/deliveries?provider=splunk",
        ):
            resp = await c.get(path)
            assert resp.status_code == 303, path
            location = resp.headers["location"]
            assert urlsplit(location).path == "/console/login"
            assert parse_qs(urlsplit(location).query)["next"] == [path]
            assert "content-security-policy" in resp.headers
        form = await c.get("/console/login")
        assert form.status_code == 200
        fields = {el.attrs.get("name"): el.attrs for el in page(form).elements if el.tag == "input"}
        assert fields["token"]["type"] == "password" and fields["next"]["value"] == "/console"
        assert "Log out" not in form.text and "Deliveries</a>" not in form.text  # no navigation yet
        assert (await c.get("/console/static/console.css")).status_code == 200  # the form needs it


async def test_invalid_bearer_token_is_401(make_console: ConsoleFactory) -> None:
    async with make_console() as c:
        for value in ("Bearer not-a-valid-token-at-all", "Basic dXNlcjpwYXNz", "Bearer "):
            resp = await c.get("/console", headers={"Authorization": value})
            assert resp.status_code == 401, value
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert "not valid" in resp.text and "<script" not in resp.text


@pytest.mark.parametrize("role", ["auditor", "operator", "admin"])
async def test_every_role_may_read_the_console(make_console: ConsoleFactory, role: str) -> None:
    async with make_console(client=("203.0.113.9", 40000)) as c:  # tokens configured: any client
        for path in PAGES:
            resp = await c.get(path, headers=bearer(role))  # type: ignore[arg-type]
            assert resp.status_code == 200, (role, path)
            assert f"{role}-console" in resp.text
            assert TOKENS[role] not in resp.text  # type: ignore[index]


async def test_login_sets_a_strict_httponly_cookie_that_opens_every_page(
    make_console: ConsoleFactory,
) -> None:
    async with make_console() as c:
        resp = await login(c, TOKENS["auditor"], nxt="/console/deliveries?provider=splunk")
        assert resp.status_code == 303
        assert resp.headers["location"] == "/console/deliveries?provider=splunk"
        attrs = cookie_attrs(resp)
        assert TOKENS["auditor"] not in attrs["raw"]  # a session id, never the token
        assert len(attrs["value"]) == 43
        assert attrs["samesite"].lower() == "strict"
        assert "httponly" in attrs["raw"].lower()
        assert attrs["path"] == "/console"
        assert int(attrs["max-age"]) == 8 * 3600
        assert "secure" not in attrs["raw"].lower()  # plain http: a Secure cookie would never come back
        for path in PAGES:
            resp = await c.get(path)  # the client sends the cookie back
            assert resp.status_code == 200, path
            assert "auditor-console" in resp.text and 'action="/console/logout"' in resp.text
            assert TOKENS["auditor"] not in resp.text
        # logged in already: the form sends you on
        resp = await c.get("/console/login?next=/console/integrations")
        assert resp.status_code == 303 and resp.headers["location"] == "/console/integrations"


async def test_login_cookie_is_secure_over_https(make_console: ConsoleFactory) -> None:
    async with make_console(base_url="https://console.test") as c:
        resp = await login(c, TOKENS["operator"], headers={"Origin": "https://console.test"})
        assert resp.status_code == 303
        attrs = cookie_attrs(resp)
        assert "secure" in attrs["raw"].lower() and attrs["samesite"].lower() == "strict"
        assert (await c.get("/console")).status_code == 200
        # the http origin of the same host is another origin
        c.cookies.clear()
        resp = await login(c, TOKENS["operator"], headers={"Origin": "http://console.test"})
        assert resp.status_code == 403


async def test_wrong_token_is_refused_and_not_echoed(make_console: ConsoleFactory) -> None:
    async with make_console() as c:
        wrong = "wrong-token-3d8c1f0e9a7b6c5d"
        resp = await login(c, wrong)
        assert resp.status_code == 401
        assert "not valid" in resp.text and wrong not in resp.text
        assert not resp.headers.get_list("set-cookie")
        long = "x" * 5000
        resp = await login(c, long)
        assert resp.status_code == 401 and long not in resp.text
        assert (await login(c, "")).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.test"},
        {"Origin": "null"},
        {"Origin": "http://console.test:8443"},
        {"Origin": "https://console.test"},
        {"Referer": "http://evil.test/console/login"},
        {},
    ],
)
async def test_cross_origin_login_is_refused(make_console: ConsoleFactory, headers: dict[str, str]) -> None:
    async with make_console() as c:
        resp = await login(c, TOKENS["admin"], headers=headers)
        assert resp.status_code == 403
        assert not resp.headers.get_list("set-cookie")
        assert (await c.get("/console")).status_code == 303


async def test_same_origin_referer_is_enough_without_origin(make_console: ConsoleFactory) -> None:
    async with make_console() as c:
        resp = await login(
            c, TOKENS["auditor"], headers={"Referer": f"{BASE_URL}/console/login?next=/console"}
        )
        assert resp.status_code == 303
        assert (await c.get("/console")).status_code == 200


async def test_login_form_must_be_a_form(make_console: ConsoleFactory) -> None:
    async with make_console() as c:
        resp = await c.post("/console/login", json={"token": TOKENS["auditor"]}, headers=ORIGIN)
        assert resp.status_code == 415 and not resp.headers.get_list("set-cookie")


@pytest.mark.parametrize(
    "nxt",
    [
        "https://evil.test/",
        "//evil.test/console",
        "/consolex",
        "/console\\@evil.test",
        "/docs",
        "javascript:alert(1)",
    ],
)
async def test_login_never_redirects_off_the_console(make_console: ConsoleFactory, nxt: str) -> None:
    async with make_console() as c:
        resp = await login(c, TOKENS["auditor"], nxt=nxt)
        assert resp.status_code == 303 and resp.headers["location"] == "/console"
        resp = await c.get("/console/login", params={"next": nxt})
        assert resp.headers["location"] == "/console"


async def test_a_cookie_that_is_no_longer_valid_is_cleared(make_console: ConsoleFactory) -> None:
    async with make_console() as c:
        c.cookies.set(
            "cavra_console", "revoked-token-0a1b2c3d4e5f6a7b", domain="console.test", path="/console"
        )
        resp = await c.get("/console/integrations")
        assert resp.status_code == 303 and resp.headers["location"].startswith("/console/login")
        attrs = cookie_attrs(resp)
        assert attrs["value"] == "" and attrs["max-age"] == "0"


async def test_logout_clears_the_cookie(make_console: ConsoleFactory) -> None:
    async with make_console() as c:
        assert (await login(c, TOKENS["auditor"])).status_code == 303
        assert (await c.get("/console")).status_code == 200
        refused = await c.post("/console/logout", headers={"Origin": "http://evil.test"})
        assert refused.status_code == 403 and not refused.headers.get_list("set-cookie")
        assert (await c.get("/console")).status_code == 200
        resp = await c.post("/console/logout", headers=ORIGIN)
        assert resp.status_code == 303 and resp.headers["location"] == "/console/login"
        assert cookie_attrs(resp)["max-age"] == "0"
        assert (await c.get("/console")).status_code == 303
        assert (await c.get("/console/logout")).status_code == 405


async def test_no_state_changing_route_besides_login_and_logout(
    make_console: ConsoleFactory, seed: Seed
) -> None:
    async with make_console() as c:
        paths = (*PAGES, f"/console/deliveries/{seed.ids['retried']}", "/console/static/console.css")
        for path in paths:
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                resp = await c.request(method, path, headers={**bearer("admin"), **ORIGIN})
                assert resp.status_code == 405, (method, path)
        for method in ("PUT", "PATCH", "DELETE"):
            assert (await c.request(method, "/console/login", headers=ORIGIN)).status_code == 405


async def test_protected_mode_answers_loopback_only_without_tokens(
    make_console: ConsoleFactory, seed: Seed
) -> None:
    async with make_console(tokens=TokenSet(), base_url=LOCAL) as c:
        for path in (*PAGES, f"/console/deliveries/{seed.ids['rollback']}"):
            resp = await c.get(path)
            assert resp.status_code == 200, path
            assert "protected mode (loopback)" in resp.text and "Log out" not in resp.text
        resp = await c.get("/console/login?next=/console/publications")
        assert resp.status_code == 303 and resp.headers["location"] == "/console/publications"
        resp = await login(c, "anything-at-all-really", headers={"Origin": LOCAL})
        assert resp.status_code == 303 and not resp.headers.get_list("set-cookie")
    for client in (("10.1.2.3", 40000), ("203.0.113.7", 40001), ("::ffff:8.8.8.8", 40002)):
        async with make_console(tokens=TokenSet(), client=client) as c:
            for path in (*PAGES, "/console/login", "/console/static/console.css"):
                resp = await c.get(path)
                assert resp.status_code == 403, (client, path)
                assert "protected mode" in resp.json()["detail"]
            assert (await login(c, "anything-at-all-really")).status_code == 403
    async with make_console(tokens=TokenSet(), client=("::1", 40003), base_url=LOCAL) as c:
        assert (await c.get("/console")).status_code == 200
