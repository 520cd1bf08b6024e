"""Roles, tokens and protected mode."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cavra.api.auth import TokenSet, hash_token, is_loopback
from cavra.cli.main import app as cli
from cavra.cli.serve import bind_is_loopback
from cavra.errors import ConfigError

from .conftest import (
    ROLLBACK,
    SEED_EVENT,
    SPLUNK_INTEGRATION,
    TOKENS,
    AppFactory,
    assert_error,
    bearer,
    load,
    token_set,
)

# (method, path, body, least role)
ROUTES: list[tuple[str, str, object, str]] = [
    ("POST", "/integrations", SPLUNK_INTEGRATION, "admin"),
    ("DELETE", "/integrations/splunk", None, "admin"),
    ("POST", "/connectors/reload", None, "admin"),
    ("POST", "/integrations/splunk/deliver", {"event": SEED_EVENT}, "operator"),
    ("POST", "/rollback-executions", load(ROLLBACK), "operator"),
    ("POST", "/rollback-executions/rre_prod/deliver", {"provider": "webhook"}, "operator"),
    ("POST", "/promotion-executions/rpe_prod/audit-export/deliver", {"provider": "webhook"}, "operator"),
    ("POST", "/endpoint-management-exports/eme_stable/publish", {"provider": "jamf"}, "operator"),
    ("GET", "/integrations", None, "auditor"),
    ("GET", "/integrations/splunk", None, "auditor"),
    ("GET", "/rollback-executions/rre_prod", None, "auditor"),
    ("GET", "/release-connector-deliveries", None, "auditor"),
    ("GET", "/release-connector-deliveries/dashboard", None, "auditor"),
    ("GET", "/endpoint-management-publications", None, "auditor"),
    ("GET", "/endpoint-management-publications/dashboard", None, "auditor"),
    ("GET", "/deliveries/dlv_x", None, "auditor"),
    ("GET", "/connectors", None, "auditor"),
]
RANK = {"auditor": 0, "operator": 1, "admin": 2}


async def test_role_matrix(make_client: AppFactory) -> None:
    async with make_client(tokens=token_set(), client=("10.1.2.3", 4000)) as c:
        for method, path, body, need in ROUTES:
            kw = {} if body is None else {"json": body}
            missing = assert_error(await c.request(method, path, **kw), 401, "unauthorized")
            assert f"needs role {need}" in missing["detail"], (path, missing)
            for role in TOKENS:
                resp = await c.request(method, path, headers=bearer(role), **kw)
                if RANK[role] < RANK[need]:
                    err = assert_error(resp, 403, "forbidden")
                    assert f"needs role {need}" in err["detail"] and f"has role {role}" in err["detail"]
                else:
                    assert resp.status_code not in (401, 403), (method, path, role, resp.text)


async def test_bad_tokens_are_401_with_challenge(make_client: AppFactory) -> None:
    async with make_client(tokens=token_set()) as c:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-value-123"},
            {"Authorization": f"Basic {TOKENS['admin']}"},
            {"Authorization": "Bearer"},
            {"Authorization": f"Bearer {TOKENS['admin']}x"},
        ):
            resp = await c.get("/integrations", headers=headers)
            err = assert_error(resp, 401, "unauthorized")
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert "auditor or operator or admin" in err["detail"]
            assert TOKENS["admin"] not in resp.text


async def test_probes_and_docs_need_no_token(make_client: AppFactory) -> None:
    async with make_client(tokens=token_set(), client=("10.1.2.3", 4000)) as c:
        for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
            assert (await c.get(path)).status_code == 200, path


async def test_protected_mode_answers_loopback_only(make_client: AppFactory) -> None:
    async with make_client(client=("192.168.1.20", 5000)) as c:
        for path in ("/integrations", "/healthz", "/openapi.json"):
            err = assert_error(await c.get(path), 403, "forbidden")
            assert "protected mode" in err["detail"]
    async with make_client(client=("::1", 5000)) as c:
        assert (await c.post("/integrations", json=SPLUNK_INTEGRATION)).status_code == 200
    async with make_client(client=("::ffff:127.0.0.1", 5000)) as c:
        assert (await c.get("/integrations")).status_code == 200


def test_is_loopback() -> None:
    for host in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "::ffff:127.0.0.1", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "192.168.0.1", "::ffff:10.0.0.1", "testclient", "", None):
        assert not is_loopback(host), host
    assert bind_is_loopback("127.0.0.1") and not bind_is_loopback("0.0.0.0")


def test_token_file_holds_hashes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(
        json.dumps(
            {
                "tokens": [
                    {"name": "release-bot", "role": "operator", "sha256": hash_token("bot-token-0123456789")},
                    {"name": "soc", "role": "auditor", "token_env": "SOC_TOKEN"},
                ]
            }
        )
    )
    tokens = TokenSet.load(
        str(path), {"SOC_TOKEN": "soc-token-0123456789", "CAVRA_API_TOKEN_ADMIN": "admin-0123456789ab"}
    )
    assert not tokens.protected_mode
    found = tokens.authenticate("bot-token-0123456789")
    assert found is not None and found.name == "release-bot" and found.role == "operator"
    soc = tokens.authenticate("soc-token-0123456789")
    assert soc is not None and soc.role == "auditor"
    admin = tokens.authenticate("admin-0123456789ab")
    assert admin is not None and admin.role == "admin"
    assert tokens.authenticate("bot-token-012345678") is None
    assert "bot-token" not in repr(tokens)
    assert TokenSet.load(None, {}).protected_mode


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[]", "'tokens' list"),
        ('{"tokens": [{"name": "a", "role": "root", "sha256": "' + "0" * 64 + '"}]}', "role"),
        ('{"tokens": [{"name": "a", "role": "admin", "sha256": "xyz"}]}', "64 hexadecimal"),
        ('{"tokens": [{"name": "a", "role": "admin"}]}', "exactly one of"),
        (
            '{"tokens": [{"name": "a", "role": "admin", "token_env": "UNSET_VAR_X"}]}',
            "UNSET_VAR_X is not set",
        ),
        ('{"tokens": [{"name": "a", "role": "admin", "token": "plain"}]}', "unknown key 'token'"),
        ("{nope", "not valid JSON"),
    ],
)
def test_bad_token_file(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        TokenSet.load(str(path), {})


def test_short_env_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        TokenSet.load(None, {"CAVRA_API_TOKEN_OPERATOR": "short"})


def test_serve_refuses_network_address_without_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "CAVRA_API_TOKENS_FILE",
        "CAVRA_API_TOKEN_ADMIN",
        "CAVRA_API_TOKEN_OPERATOR",
        "CAVRA_API_TOKEN_AUDITOR",
    ):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0" in result.output


def test_api_token_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["api-token", "--role", "operator", "--name", "ci"])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    token = next(ln for ln in lines if ln.startswith("cavra_"))
    entry = json.loads(next(ln for ln in lines if ln.startswith("{")))
    assert entry == {"name": "ci", "role": "operator", "sha256": hash_token(token)}
    (tmp_path / "t.json").write_text(json.dumps({"tokens": [entry]}))
    found = TokenSet.load(str(tmp_path / "t.json"), {}).authenticate(token)
    assert found is not None and found.role == "operator"


async def test_forbidden_answers_carry_no_token(make_client: AppFactory) -> None:
    async with make_client(tokens=token_set()) as c:
        resp = await c.post("/integrations", json=SPLUNK_INTEGRATION, headers=bearer("auditor"))
        assert_error(resp, 403)
        assert TOKENS["auditor"] not in resp.text
        assert httpx.Headers(resp.headers).get("authorization") is None


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--config", "/nonexistent/connectors.json"], {}, "config file not found"),
        (["--log-format", "xml"], {}, "--log-format"),
        ([], {"CAVRA_API_TOKEN_ADMIN": "short"}, "at least 16 characters"),
        (["--tokens", "/nonexistent/tokens.json"], {}, "API token file not found"),
    ],
)
def test_serve_refuses_bad_settings_with_one_line(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], fragment: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["serve", "--port", "0", *args])
    assert result.exit_code == 2
    assert fragment in result.output
    assert "Traceback" not in result.output
