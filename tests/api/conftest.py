"""API test kit: the emulators on loopback, a config pointed at them, the app behind httpx.ASGITransport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cavra.api.app import create_app
from cavra.api.auth import ApiToken, TokenSet, hash_token
from cavra.api.settings import ApiSettings
from cavra.emulators.server import EmulatorServer, demo_environment

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "release"
PROMOTION = EXAMPLES / "rollout-promotion-execution" / "rollout-promotion-execution.json"
ROLLBACK = EXAMPLES / "rollout-rollback-execution" / "rollout-rollback-execution.json"
EXPORT_DIR = EXAMPLES / "endpoint-management-export"
EXPORT = EXPORT_DIR / "endpoint-management-export-manifest.json"

TOKENS = {
    "admin": "tok-admin-7d1f0c9e2b8a4f63",
    "operator": "tok-operator-5a9e3c1d7b2f4e80",
    "auditor": "tok-auditor-0c6b8e2a4d9f1e37",
}
SPLUNK_INTEGRATION = {
    "integration_id": "splunk",
    "provider": "splunk",
    "category": "siem",
    "status": "active",
    "health_status": "healthy",
}
SEED_EVENT = {
    "event_type": "cavra.evidence_bundle",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "high",
}


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def token_set() -> TokenSet:
    return TokenSet(tuple(ApiToken(f"{role}-token", role, hash_token(v)) for role, v in TOKENS.items()))  # type: ignore[arg-type]


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@asynccontextmanager
async def running(
    app: FastAPI, client: tuple[str, int] = ("127.0.0.1", 50123)
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, behind an httpx client whose peer address is ``client``."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=60) as c:
            yield c


@pytest.fixture
async def emulators() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer() as srv:
        yield srv


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[EmulatorServer], tuple[Path, dict[str, str]]]:
    """Write the emulators' connector config to tmp; return its path and the environment it needs."""

    def make(srv: EmulatorServer) -> tuple[Path, dict[str, str]]:
        config, env = demo_environment(srv.base_url, srv.settings)
        path = tmp_path / "connectors.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        return path, env

    return make


AppFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_client(
    tmp_path: Path,
    emulators: EmulatorServer,
    write_config: Callable[[EmulatorServer], tuple[Path, dict[str, str]]],
) -> AppFactory:
    """``async with make_client(**settings_overrides) as client``: the app on the emulators, a tmp store."""

    def make(*, client: tuple[str, int] = ("127.0.0.1", 50123), **overrides: Any) -> Any:
        config, env = write_config(emulators)
        values: dict[str, Any] = {
            "config_path": str(config),
            "store_url": str(tmp_path / "metadata.db"),
            "environ": env,
            "exports_dir": str(EXPORT_DIR),
            "retry_base_delay": 0.01,
        }
        values.update(overrides)
        return running(create_app(ApiSettings(**values)), client)

    return make


@pytest.fixture
async def client(make_client: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    """Protected mode (no tokens), loopback peer: the seed's unauthenticated calls work."""
    async with make_client() as c:
        yield c


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client with the sample release records registered over the API."""
    for route, path in (
        ("/promotion-executions", PROMOTION),
        ("/rollback-executions", ROLLBACK),
        ("/endpoint-management-exports", EXPORT),
    ):
        resp = await client.post(route, json=load(path))
        assert resp.status_code == 201, resp.text
    return client


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape: exactly error, detail, request_id (echoed in X-Request-ID)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "detail", "request_id"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["request_id"] == resp.headers["x-request-id"]
    assert "Traceback" not in body["detail"]
    if code is not None:
        assert body["error"] == code, body
    return body
