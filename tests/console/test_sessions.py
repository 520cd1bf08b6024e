"""Console sessions: the cookie holds a random session id kept by the server, never the API token; a forged,
expired or logged-out id is refused; a session ends when its token is no longer configured."""

from __future__ import annotations

from dataclasses import replace

import httpx

from cavra.api.auth import ApiToken, TokenSet, hash_token
from cavra.console.access import COOKIE, Sessions

from .conftest import TOKENS, ConsoleFactory
from .test_access import ORIGIN, cookie_attrs, login


def sessions_of(c: httpx.AsyncClient) -> Sessions:
    transport = c._transport
    assert isinstance(transport, httpx.ASGITransport)
    found = transport.app.state.console_sessions  # type: ignore[attr-defined]
    assert isinstance(found, Sessions)
    return found


def replay(c: httpx.AsyncClient, value: str) -> None:
    c.cookies.clear()
    c.cookies.set(COOKIE, value, domain="console.test", path="/console")


async def test_the_cookie_never_holds_the_token_and_each_login_gets_a_new_id(
    make_console: ConsoleFactory,
) -> None:
    async with make_console() as c:
        values = []
        for role in ("auditor", "auditor", "admin"):
            resp = await login(c, TOKENS[role])
            attrs = cookie_attrs(resp)
            assert TOKENS[role] not in attrs["raw"] and hash_token(TOKENS[role]) not in attrs["raw"]
            values.append(attrs["value"])
        assert len(set(values)) == 3
        assert len(sessions_of(c)) == 3


async def test_a_cookie_holding_the_token_itself_is_refused(make_console: ConsoleFactory) -> None:
    """Before sessions, the cookie's value was the token: such a cookie (a stolen one) opens nothing."""
    async with make_console() as c:
        replay(c, TOKENS["admin"])
        resp = await c.get("/console")
        assert resp.status_code == 303 and resp.headers["location"].startswith("/console/login")
        assert cookie_attrs(resp)["max-age"] == "0"


async def test_a_forged_session_id_is_refused(make_console: ConsoleFactory) -> None:
    async with make_console() as c:
        assert (await login(c, TOKENS["auditor"])).status_code == 303
        real = c.cookies[COOKIE]
        for forged in ("A" * 43, real[:-1] + ("B" if real[-1] != "B" else "C"), real + "x", "", "../../x"):
            replay(c, forged)
            resp = await c.get("/console")
            assert resp.status_code == 303, forged
        replay(c, real)
        assert (await c.get("/console")).status_code == 200


async def test_an_expired_session_is_refused(make_console: ConsoleFactory) -> None:
    async with make_console() as c:
        now = [1000.0]
        store = sessions_of(c)
        store.clock = lambda: now[0]
        assert (await login(c, TOKENS["auditor"])).status_code == 303
        now[0] += store.ttl - 1
        assert (await c.get("/console")).status_code == 200
        now[0] += 2
        resp = await c.get("/console")
        assert resp.status_code == 303 and cookie_attrs(resp)["max-age"] == "0"
        assert len(store) == 0


async def test_logout_ends_the_session_on_the_server(make_console: ConsoleFactory) -> None:
    async with make_console() as c:
        assert (await login(c, TOKENS["auditor"])).status_code == 303
        kept = c.cookies[COOKIE]
        assert (await c.post("/console/logout", headers=ORIGIN)).status_code == 303
        replay(c, kept)  # a copy of the cookie taken before logout
        resp = await c.get("/console")
        assert resp.status_code == 303 and resp.headers["location"].startswith("/console/login")


def test_sessions_end_with_their_token_and_the_oldest_go_first() -> None:
    token = ApiToken("a", "auditor", hash_token("tok-a-0123456789abcdef"))
    store = Sessions(limit=2)
    first, second = store.open(token), store.open(token)
    third = store.open(token)
    assert store.get(first) is None and store.get(second) is not None and store.get(third) is not None
    store.close(second)
    assert store.get(second) is None


async def test_a_session_ends_when_its_token_is_no_longer_configured(make_console: ConsoleFactory) -> None:
    async with make_console() as c:
        assert (await login(c, TOKENS["auditor"])).status_code == 303
        transport = c._transport
        assert isinstance(transport, httpx.ASGITransport)
        runtime = transport.app.state.runtime  # type: ignore[attr-defined]
        others = tuple(t for t in runtime.settings.tokens.tokens if t.role != "auditor")
        runtime.settings = replace(runtime.settings, tokens=TokenSet(others))
        resp = await c.get("/console")
        assert resp.status_code == 303 and cookie_attrs(resp)["max-age"] == "0"
        assert len(sessions_of(c)) == 0
