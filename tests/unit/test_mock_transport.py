"""``MockTransport``: a handler instead of the network, with the real transport's destination rules."""

from __future__ import annotations

import pytest

from cavra.connectors.base import PreparedRequest, Response
from cavra.secrets import Secret
from cavra.transport import MockTransport, SendOptions, Transport, TransportError

OPTS = SendOptions(allow_http=True)


async def test_a_plain_handler_answers_and_every_request_is_kept() -> None:
    seen: list[PreparedRequest] = []

    def handler(request: PreparedRequest) -> Response:
        seen.append(request)
        return Response(201, {"location": "/x/1"}, b"{}")

    transport: Transport = MockTransport(handler)
    req = PreparedRequest("POST", "https://api.example/x", headers={"Authorization": Secret("Bearer t0ken")})
    answer = await transport.send(req, OPTS)
    assert answer == Response(201, {"location": "/x/1"}, b"{}")
    assert seen == [req]
    assert isinstance(
        seen[0].headers["Authorization"], Secret
    )  # what the connector prepared, unwrapped never
    assert isinstance(transport, MockTransport) and transport.requests == [req]


async def test_an_async_handler_is_awaited() -> None:
    async def handler(request: PreparedRequest) -> Response:
        return Response(204, {}, b"")

    async with MockTransport(handler) as transport:
        assert (await transport.send(PreparedRequest("GET", "https://a.example/"), OPTS)).status == 204
    assert transport.closed


async def test_a_handler_raises_transport_errors_as_the_network_would() -> None:
    def handler(request: PreparedRequest) -> Response:
        raise TransportError("timeout", "no answer within 10 s")

    with pytest.raises(TransportError) as info:
        await MockTransport(handler).send(PreparedRequest("GET", "https://a.example/"), OPTS)
    assert info.value.kind == "timeout"


@pytest.mark.parametrize(
    ("url", "options", "fragment"),
    [
        ("http://a.example/", SendOptions(), "allow_http"),
        ("https://169.254.169.254/latest", OPTS, "link-local"),
        ("ftp://a.example/", OPTS, "not http(s)"),
    ],
)
async def test_refused_destinations_never_reach_the_handler(
    url: str, options: SendOptions, fragment: str
) -> None:
    transport = MockTransport(lambda request: Response(200, {}, b"ok"))
    with pytest.raises(TransportError) as info:
        await transport.send(PreparedRequest("GET", url), options)
    assert info.value.kind == "refused_destination" and fragment in info.value.message
    assert transport.requests == []
    unchecked = MockTransport(lambda request: Response(200, {}, b"ok"), check=False)
    assert (await unchecked.send(PreparedRequest("GET", url), options)).status == 200
