"""Egress through a proxy: a destination's ``proxy_url`` (with credentials, redacted like every secret) and
``HTTP(S)_PROXY`` / ``NO_PROXY`` when ``trust_env`` is set. A real forward proxy on loopback (written here:
absolute-form HTTP requests and CONNECT tunnels, Basic proxy authentication) in front of the webhook
emulator."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cavra.config import config_from_data
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.service import deliver_event

USER, PASSWORD = "cavra-egress", "proxy-pa55word-7f3e9a"
EVENT = {"event_type": "cavra.evidence_bundle", "event_id": "evt-proxy", "session_id": "s-1"}


@dataclass
class LoopbackProxy:
    """A minimal HTTP forward proxy: one request per connection (``Connection: close`` both ways)."""

    credentials: str | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            auth = next((v for k, v in headers.items() if k.lower() == "proxy-authorization"), None)
            self.seen.append({"method": method, "target": target, "auth": auth})
            if self.credentials is not None and auth != "Basic " + base64.b64encode(
                self.credentials.encode()
            ).decode("ascii"):
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
                return
            # absolute-form: http://host:port/path → origin-form to the upstream
            rest = target.split("://", 1)[1]
            hostport, _, path = rest.partition("/")
            host, _, port = hostport.partition(":")
            length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
            body = await reader.readexactly(length) if length else b""
            kept = [
                f"{k}: {v}" for k, v in headers.items() if not k.lower().startswith(("proxy-", "connection"))
            ]
            up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
            request = "\r\n".join([f"{method} /{path} HTTP/1.1", *kept, "Connection: close", "", ""])
            up_writer.write(request.encode("latin-1") + body)
            await up_writer.drain()
            writer.write(await up_reader.read())  # the upstream closes after its answer
            up_writer.close()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            await writer.drain()
            writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
        finally:
            dst.close()


@pytest.fixture
async def proxy() -> AsyncIterator[LoopbackProxy]:
    p = LoopbackProxy(credentials=f"{USER}:{PASSWORD}")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
async def webhook() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(providers=["webhook"]) as srv:
        yield srv


async def test_a_destination_sends_through_its_proxy_and_the_credentials_never_show(
    proxy: LoopbackProxy, webhook: EmulatorServer, transport: Any
) -> None:
    env = {"EGRESS_PROXY": f"http://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}"}
    data, demo_env = demo_environment(webhook.base_url, webhook.settings)
    entry = {**data["connectors"]["webhook"], "proxy_url_env": "EGRESS_PROXY"}
    config = config_from_data({"connectors": {"webhook": entry}}, "connectors.json", {**demo_env, **env})
    assert not config.errors
    record = await deliver_event(EVENT, config, ["webhook"], transport=transport)
    assert record["success"] is True, record["errors"]
    (seen,) = proxy.seen
    assert seen["target"].startswith(f"{webhook.base_url}/webhook/")  # the proxy carried it
    assert len(webhook.hub.received("webhook")) == 1
    text = json.dumps(record)
    assert PASSWORD not in text and base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in text


async def test_a_wrong_proxy_password_fails_without_showing_it(
    proxy: LoopbackProxy, webhook: EmulatorServer, transport: Any
) -> None:
    data, demo_env = demo_environment(webhook.base_url, webhook.settings)
    wrong = f"http://{USER}:not-the-pa55word-1234@127.0.0.1:{proxy.port}"
    entry = {**data["connectors"]["webhook"], "proxy_url": wrong}
    config = config_from_data({"connectors": {"webhook": entry}}, "connectors.json", demo_env)
    record = await deliver_event(EVENT, config, ["webhook"], transport=transport)
    assert record["success"] is False and record["deliveries"][0]["status_code"] == 407
    assert "not-the-pa55word" not in json.dumps(record)
    assert webhook.hub.received("webhook") == []


async def test_trust_env_takes_the_proxy_from_the_environment_and_honours_no_proxy(
    proxy: LoopbackProxy, webhook: EmulatorServer, transport: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, demo_env = demo_environment(webhook.base_url, webhook.settings)
    monkeypatch.setenv("HTTP_PROXY", f"http://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    plain = config_from_data({"connectors": data["connectors"]}, "connectors.json", demo_env)
    record = await deliver_event(EVENT, plain, ["webhook"], transport=transport)
    assert record["success"] is True and proxy.seen == []  # without trust_env the variables are ignored
    entry = {**data["connectors"]["webhook"], "trust_env": True}
    trusting = config_from_data({"connectors": {"webhook": entry}}, "connectors.json", demo_env)
    event = {**EVENT, "event_id": "evt-proxy-2"}
    record = await deliver_event(event, trusting, ["webhook"], transport=transport)
    assert record["success"] is True and len(proxy.seen) == 1
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    event = {**EVENT, "event_id": "evt-proxy-3"}
    record = await deliver_event(event, trusting, ["webhook"], transport=transport)
    assert record["success"] is True and len(proxy.seen) == 1  # bypassed


@pytest.mark.parametrize("value", ["ftp://proxy.test:21", "not a url", "http://:3128"])
def test_a_bad_proxy_url_is_refused_without_echoing_it(value: str) -> None:
    entry = {"url": "https://hooks.test/x", "proxy_url": value}
    config = config_from_data({"connectors": {"webhook": entry}}, "connectors.json", {})
    assert "connectors.webhook.proxy_url: " in config.errors["webhook"]
    assert value not in config.errors["webhook"]


def _tls_files(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA) and its key, made by the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed (needed to make a test certificate)")
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key_path), "-out", str(cert_path), "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert_path, key_path


async def test_an_https_destination_is_tunnelled_with_connect(
    proxy: LoopbackProxy, transport: Any, tmp_path: Path
) -> None:
    import ssl

    from aiohttp import web

    cert, key = _tls_files(tmp_path)
    got: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        entry = {
            "url": f"https://127.0.0.1:{port}/hook",
            "ca_bundle": str(cert),
            "proxy_url_env": "EGRESS_PROXY",
        }
        env = {"EGRESS_PROXY": f"http://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}"}
        config = config_from_data({"connectors": {"webhook": entry}}, "connectors.json", env)
        record = await deliver_event(EVENT, config, ["webhook"], transport=transport)
    finally:
        await runner.cleanup()
    assert record["success"] is True, record["errors"]
    (seen,) = proxy.seen
    assert seen["method"] == "CONNECT" and seen["target"] == f"127.0.0.1:{port}"
    assert seen["auth"] == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert len(got) == 1 and b"evt-proxy" in got[0]
    assert PASSWORD not in json.dumps(record)
