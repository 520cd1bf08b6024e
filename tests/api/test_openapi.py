"""Schemathesis against /openapi.json: generated requests (valid and invalid), sent with every role's token
and with none, never get a 5xx, and every answer matches its documented status, content type, headers and
schema. Bounded: a few examples per operation and role (the whole file runs in well under a minute)."""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from cavra.api.app import create_app
from cavra.api.settings import ApiSettings
from cavra.connectors.base import PreparedRequest, Response
from cavra.transport import SendOptions, TransportError

from .conftest import EXPORT_DIR, TOKENS, bearer, token_set


class RefusingTransport:
    """Every send fails as a refused connection: deliveries run the engine and fail fast, offline."""

    async def send(self, request: PreparedRequest, options: SendOptions) -> Response:
        raise TransportError("connect", "connection refused")

    async def close(self) -> None:
        return None


_DIR = Path(tempfile.mkdtemp(prefix="cavra-openapi-"))
_CONFIG = _DIR / "connectors.json"
_CONFIG.write_text(
    '{"connectors": {"webhook": {"url": "https://hooks.example.test/cavra", "signing_secret": '
    '"whsec_c2NoZW1hdGhlc2lzLXNpZ25pbmctc2VjcmV0"}, "splunk": {"url": "https://splunk.example.test", '
    '"token": "schemathesis-hec-token-01"}}}'
)
app = create_app(
    ApiSettings(
        config_path=str(_CONFIG),
        store_url=str(_DIR / "metadata.db"),
        environ={},
        tokens=token_set(),
        exports_dir=str(EXPORT_DIR),
        retry_base_delay=0.001,
        transport=RefusingTransport(),
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]


#: every role's token, and none (401 everywhere a token is needed)
ROLES = (*TOKENS, None)


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_route_conforms(case: schemathesis.Case, role: str | None) -> None:
    case.call_and_validate(headers=bearer(role) if role else {}, checks=CHECKS)


def test_schema_documents_every_route_and_the_error_shape() -> None:
    spec = app.openapi()
    paths = set(spec["paths"])
    for path in (
        "/integrations",
        "/integrations/{integration_id}",
        "/integrations/{integration_id}/deliver",
        "/promotion-executions/{execution_id}/audit-export/deliver",
        "/rollback-executions/{execution_id}/deliver",
        "/endpoint-management-exports/{export_id}/publish",
        "/release-connector-deliveries",
        "/release-connector-deliveries/dashboard",
        "/endpoint-management-publications",
        "/endpoint-management-publications/dashboard",
        "/deliveries/{delivery_id}",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert set(spec["components"]["schemas"]["ErrorOut"]["required"]) == {"error", "detail", "request_id"}
    assert TOKENS["admin"] not in str(spec)


# --- protected mode, live: real uvicorn on a free loopback port (the Host check and the cross-site rules on)
@pytest.fixture(scope="module")
def live_protected_url() -> Iterator[str]:
    """The protected-mode app served by uvicorn in a thread on 127.0.0.1 (a free port)."""
    import uvicorn

    live = create_app(
        ApiSettings(
            config_path=str(_CONFIG),
            store_url=str(_DIR / "protected.db"),
            environ={},
            exports_dir=str(EXPORT_DIR),
            retry_base_delay=0.001,
            transport=RefusingTransport(),
        )
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(live, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    # the server thread writes its access line after the answer is sent, possibly once pytest has closed
    # the test's captured stream: not logged here
    access = logging.getLogger("cavra.api.access")
    access.disabled = True
    thread.start()
    try:
        for _ in range(600):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        access.disabled = False


def test_protected_mode_live_conforms(live_protected_url: str) -> None:
    """No token (protected mode), over the network: body-less POSTs and DELETEs without the custom header
    are a documented 403; with it, they run. Every answer conforms; none is a 5xx."""
    live = schemathesis.openapi.from_url(f"{live_protected_url}/openapi.json")
    operations = [result.ok() for result in live.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)
            case.call_and_validate(headers={"X-CAVRA-Request": "1"}, checks=CHECKS)

        run()
