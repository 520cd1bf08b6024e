"""Cloud metadata and platform-credential addresses are refused as destinations, by URL and after name
resolution, before any connection is attempted; ``allow_link_local`` opts in.

Before: only link-local ranges were refused, so ``fd00:ec2::254`` (AWS IMDS over IPv6), ``100.100.100.200``
(Alibaba), ``192.0.0.192`` (Oracle Classic) and the others were sent to; a name resolving only to a
link-local address failed as a retryable connection error. No test sends traffic to these addresses: a
spy on the connection step records every attempt, and the names are resolved by a resolver given to the
transport (the transport's hook), never by DNS or ``/etc/hosts``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohappyeyeballs
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from cavra.connectors.base import PreparedRequest
from cavra.transport import (
    METADATA_ADDRESSES,
    AiohttpTransport,
    SendOptions,
    TransportError,
    check_destination,
    refused_address,
)

#: every address of the table, and other spellings of some of them
REFUSED = [
    *METADATA_ADDRESSES,
    "::ffff:100.100.100.200",  # IPv4-mapped
    "::ffff:192.0.0.192",
    "64:ff9b::6464:64c8",  # NAT64 of 100.100.100.200
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "169.254.1.1",  # link-local
    "fe80::1",
]
NEW_IN_THE_TABLE = [
    "fd00:ec2::254",
    "fd00:ec2::23",
    "fd20:ce::254",
    "100.100.100.200",
    "192.0.0.192",
    "168.63.129.16",
]
ALLOWED = [
    "127.0.0.1",
    "10.0.0.1",
    "192.168.1.10",
    "100.100.100.100",
    "8.8.8.8",
    "2001:4860:4860::8888",
    "fd00::1",
]
OPTS = SendOptions(allow_http=True, timeout=5)


def _url(host: str, port: int = 80) -> str:
    return f"http://[{host}]:{port}/hook" if ":" in host else f"http://{host}:{port}/hook"


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a connection is attempted to (aiohttp connects through aiohappyeyeballs)."""
    attempts: list[str] = []
    real = aiohappyeyeballs.start_connection

    async def spy(addr_infos: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.extend(str(info[4][0]) for info in addr_infos)
        return await real(addr_infos, *args, **kwargs)

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", spy)
    return attempts


class TableResolver(AbstractResolver):
    """Resolves names from a table (the test's own DNS)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        out: list[ResolveResult] = []
        for ip in self.table.get(host, []):
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            out.append(
                ResolveResult(
                    hostname=host, host=ip, port=port, family=fam, proto=0, flags=socket.AI_NUMERICHOST
                )
            )
        if not out:
            raise OSError(f"{host}: no such name in the test table")
        return out

    async def close(self) -> None:
        return None


def _request(url: str) -> PreparedRequest:
    return PreparedRequest("POST", url, {"Content-Type": "application/json"}, b"{}")


def test_the_table_names_its_sources() -> None:
    for address, source in METADATA_ADDRESSES.items():
        assert refused_address(address) == "a cloud metadata address"
        assert re.search(r"\([a-z0-9.-]+\.(com|net)/\S+\)", source), address  # (site/path) of the doc


@pytest.mark.parametrize("host", REFUSED)
def test_literal_metadata_hosts_are_refused(host: str) -> None:
    with pytest.raises(TransportError) as err:
        check_destination(_url(host), OPTS)
    assert err.value.kind == "refused_destination"
    assert "allow_link_local" in err.value.message


@pytest.mark.parametrize("host", NEW_IN_THE_TABLE)
def test_allow_link_local_opts_in_to_the_metadata_addresses(host: str) -> None:
    check_destination(_url(host), SendOptions(allow_http=True, allow_link_local=True))


@pytest.mark.parametrize("host", ALLOWED)
def test_other_addresses_are_not_refused(host: str) -> None:
    assert refused_address(host) is None
    check_destination(_url(host), OPTS)


@pytest.mark.parametrize("host", NEW_IN_THE_TABLE)
async def test_send_to_a_literal_metadata_address_makes_no_connection(host: str, connects: list[str]) -> None:
    async with AiohttpTransport() as tr:
        with pytest.raises(TransportError) as err:
            await tr.send(_request(_url(host)), OPTS)
    assert err.value.kind == "refused_destination"
    assert connects == []


@pytest.mark.parametrize("address", [*METADATA_ADDRESSES, "::ffff:100.100.100.200", "169.254.7.7"])
async def test_a_name_resolving_to_a_metadata_address_is_refused_before_connecting(
    address: str, connects: list[str]
) -> None:
    table = TableResolver({"imds.example.test": [address]})
    async with AiohttpTransport(resolver=lambda: table) as tr:
        with pytest.raises(TransportError) as err:
            await tr.send(_request("http://imds.example.test/latest/meta-data/"), OPTS)
    assert err.value.kind == "refused_destination", err.value.message
    assert "imds.example.test resolves only to link-local or cloud metadata addresses" in err.value.message
    assert connects == []


@pytest.fixture
async def loopback_server() -> AsyncIterator[int]:
    async def hook(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        await runner.cleanup()


async def test_refused_answers_are_dropped_and_the_others_used(
    loopback_server: int, connects: list[str]
) -> None:
    """A name with a metadata address and a loopback one: only the loopback one is connected to."""
    table = TableResolver({"mixed.example.test": ["100.100.100.200", "fd00:ec2::254", "127.0.0.1"]})
    async with AiohttpTransport(resolver=lambda: table) as tr:
        resp = await tr.send(_request(f"http://mixed.example.test:{loopback_server}/hook"), OPTS)
    assert resp.status == 200
    assert connects == ["127.0.0.1"]


async def test_the_resolver_hook_is_used_unguarded_with_allow_link_local(
    loopback_server: int, connects: list[str]
) -> None:
    """allow_link_local: the answers are not filtered (here a loopback answer, to keep traffic local)."""
    table = TableResolver({"appliance.example.test": ["127.0.0.1"]})
    async with AiohttpTransport(resolver=lambda: table) as tr:
        opts = SendOptions(allow_http=True, allow_link_local=True, timeout=5)
        resp = await tr.send(_request(f"http://appliance.example.test:{loopback_server}/hook"), opts)
    assert resp.status == 200 and connects == ["127.0.0.1"]


async def test_a_refused_name_is_rejected_not_retried(connects: list[str]) -> None:
    """The engine records one attempt and rejects (a refused destination stays refused)."""
    from cavra.delivery.engine import deliver_one
    from cavra.delivery.policy import RetryPolicy
    from tests.unit.test_engine import EVENT, make_target

    target = make_target("http://imds.example.test/hook")
    table = TableResolver({"imds.example.test": ["fd00:ec2::254"]})
    async with AiohttpTransport(resolver=lambda: table) as tr:
        d = await deliver_one(target, EVENT, policy=RetryPolicy(retries=3, base_delay=0.01), transport=tr)
    assert not d.success and d.attempt_count == 1
    assert d.attempts[0].verdict == "reject"
    assert connects == []
