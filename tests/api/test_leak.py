"""No configured secret (connector credentials, secret URLs, fetched OAuth tokens, API tokens) appears in
any answer of any route (successes and errors), nor in the server's formatted logs."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest

from cavra.api.logs import JsonFormatter, TextFormatter
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.errors import InputError
from cavra.governance import service as governance

from .conftest import EXPORT, PROMOTION, ROLLBACK, SEED_EVENT, TOKENS, AppFactory, bearer, load

SECRET_URL_PARTS = (
    "cavraDemoSlackHook000001",
    "T0CAVRA01/B0CAVRA01",
    "cavraDemoTeamsWorkflowSig0123456789abcdefXY",
)


def forms(value: str) -> Iterator[str]:
    raw = value.encode()
    yield from (value, quote(value, safe=""), quote_plus(value), base64.b64encode(raw).decode().rstrip("="))


def secrets_of(env: dict[str, str], srv: EmulatorServer) -> set[str]:
    found = {v for v in env.values() if not v.startswith("http")}
    found |= set(SECRET_URL_PARTS)
    found |= set(TOKENS.values())
    found |= set(srv.hub.tokens)
    found |= {token.value for token in srv.hub.tokens.values()}
    return {f for s in found for f in forms(s) if len(f) >= 8}


def wrong(env: dict[str, str]) -> dict[str, str]:
    """The same environment with every credential replaced by a distinctive wrong one."""
    return {k: v if v.startswith("http") else f"WRONG-{k}-9f8e7d6c5b4a" for k, v in env.items()}


ROLLBACK_EVENT = {
    "event_type": "cavra.release.rollback_execution",
    "execution_id": "rre_prod",
    "severity": "critical",
}


def calls() -> list[tuple[str, str, str, dict[str, object]]]:
    """(method, route template, concrete path, request kwargs): every route, good and bad input."""
    deliver = {"event": SEED_EVENT, "retries": 1}
    rows: list[tuple[str, str, str, dict[str, object]]] = [
        (
            "POST",
            "/integrations",
            "/integrations",
            {"json": {"integration_id": "splunk", "provider": "splunk"}},
        ),
        ("POST", "/integrations", "/integrations", {"json": {"integration_id": "dd", "provider": "datadog"}}),
        ("POST", "/integrations", "/integrations", {"json": {"integration_id": "x", "provider": "bad"}}),
        ("POST", "/promotion-executions", "/promotion-executions", {"json": load(PROMOTION)}),
        ("POST", "/rollback-executions", "/rollback-executions", {"json": load(ROLLBACK)}),
        ("POST", "/endpoint-management-exports", "/endpoint-management-exports", {"json": load(EXPORT)}),
        ("GET", "/integrations", "/integrations", {}),
        ("GET", "/integrations/{integration_id}", "/integrations/splunk", {}),
    ]
    for iid in ("splunk", "dd", "ghost"):
        rows.append(
            (
                "POST",
                "/integrations/{integration_id}/deliver",
                f"/integrations/{iid}/deliver",
                {"json": deliver},
            )
        )
    for provider in ("webhook", "slack", "teams", "jira", "servicenow", "sentinel", "splunk", "datadog"):
        body = {"json": {"provider": provider, "retries": 1}}
        rows.append(
            (
                "POST",
                "/promotion-executions/{execution_id}/audit-export/deliver",
                "/promotion-executions/rpe_prod/audit-export/deliver",
                body,
            )
        )
        rows.append(
            (
                "POST",
                "/rollback-executions/{execution_id}/deliver",
                "/rollback-executions/rre_prod/deliver",
                body,
            )
        )
    for provider in ("jamf", "intune", "linux"):
        rows.append(
            (
                "POST",
                "/endpoint-management-exports/{export_id}/publish",
                "/endpoint-management-exports/eme_stable/publish",
                {"json": {"provider": provider, "retries": 1}},
            )
        )
    rows += [
        ("GET", "/promotion-executions/{execution_id}", "/promotion-executions/rpe_prod", {}),
        ("GET", "/rollback-executions/{execution_id}", "/rollback-executions/rre_prod", {}),
        ("GET", "/endpoint-management-exports/{export_id}", "/endpoint-management-exports/eme_stable", {}),
        ("GET", "/release-connector-deliveries", "/release-connector-deliveries?success=false", {}),
        ("GET", "/release-connector-deliveries", "/release-connector-deliveries?limit=500", {}),
        ("GET", "/release-connector-deliveries/dashboard", "/release-connector-deliveries/dashboard", {}),
        ("GET", "/endpoint-management-publications", "/endpoint-management-publications", {}),
        (
            "GET",
            "/endpoint-management-publications/dashboard",
            "/endpoint-management-publications/dashboard",
            {},
        ),
        # through the routes: every destination the written routes name, waited (records in the answer)
        ("POST", "/events", "/events", {"json": {"events": [SEED_EVENT, ROLLBACK_EVENT], "wait": True}}),
        ("POST", "/events", "/events", {"json": {"event": {"event_type": "acme.other"}}}),
        ("POST", "/events", "/events", {"json": {"event": {"no": "type"}}}),
        ("POST", "/routes/test", "/routes/test", {"json": {"event": SEED_EVENT}}),
        ("POST", "/routes/test", "/routes/test", {"json": {"event": ROLLBACK_EVENT}}),
        ("GET", "/integration-deliveries", "/integration-deliveries?success=false", {}),
        ("GET", "/integration-deliveries/dashboard", "/integration-deliveries/dashboard", {}),
        ("GET", "/deliveries/{delivery_id}", "/deliveries/dlv_missing", {}),
        ("POST", "/deliveries/{delivery_id}/redeliver", "/deliveries/dlv_missing/redeliver", {}),
        ("POST", "/deliveries/replay", "/deliveries/replay", {"json": {"since": "2000-01-01T00:00:00Z"}}),
        ("GET", "/jobs", "/jobs?state=dead", {}),
        ("GET", "/jobs/{job_id}", "/jobs/job_missing", {}),
        ("GET", "/metrics", "/metrics", {}),
        ("GET", "/connectors", "/connectors", {}),
        ("GET", "/destinations", "/destinations", {}),
        ("POST", "/destinations/{name}/test", "/destinations/slack-release/test", {}),
        ("POST", "/destinations/{name}/test", "/destinations/webhook/test", {}),
        ("POST", "/destinations/{name}/test", "/destinations/jamf/test", {}),
        ("POST", "/destinations/{name}/test", "/destinations/nope/test", {}),
        ("POST", "/destinations/{name}/pause", "/destinations/slack-release/pause", {"json": {}}),
        ("POST", "/destinations/{name}/pause", "/destinations/nope/pause", {"json": {}}),
        ("POST", "/destinations/{name}/resume", "/destinations/slack-release/resume", {}),
        ("POST", "/alerts/acknowledge", "/alerts/acknowledge", {"json": {"key": "provider:splunk"}}),
        ("POST", "/connectors/reload", "/connectors/reload", {}),
        ("GET", "/healthz", "/healthz", {}),
        ("GET", "/readyz", "/readyz", {}),
        ("GET", "/openapi.json", "/openapi.json", {}),
        ("GET", "/docs", "/docs", {}),
        (
            "POST",
            "/integrations",
            "/integrations",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ),
        ("PUT", "/integrations", "/integrations", {}),
        ("GET", "/release-connector-deliveries", "/release-connector-deliveries?cursor=zz", {}),
        ("DELETE", "/integrations/{integration_id}", "/integrations/dd", {}),
        ("DELETE", "/integrations/{integration_id}", "/integrations/dd", {}),
    ]
    return rows


def api_routes(app: object) -> set[tuple[str, str]]:
    """Every documented operation, from the OpenAPI document (routers may be nested, so not app.routes)."""
    paths = app.openapi()["paths"]  # type: ignore[attr-defined]
    out = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert len(out) > 20, "the route list is implausibly short: the check would prove nothing"
    return out


def check(text: str, secrets: set[str], where: str) -> None:
    for s in secrets:
        assert s not in text, f"secret {s[:4]}… leaked in {where}"


@pytest.mark.parametrize("credentials", ["right", "wrong"])
async def test_no_secret_in_any_answer_or_log(
    make_client: AppFactory,
    emulators: EmulatorServer,
    write_config: object,
    monkeypatch: pytest.MonkeyPatch,
    credentials: str,
) -> None:
    from .conftest import token_set

    _, env = write_config(emulators)  # type: ignore[operator]
    used = env if credentials == "right" else wrong(env)
    stream = io.StringIO()
    handlers = [logging.StreamHandler(stream), logging.StreamHandler(stream)]
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    emulators.hub.add_fault(
        "webhook", Fault(status=503, count=1, body='{"echo": "' + env["WEBHOOK_SIGNING_SECRET"] + '"}')
    )
    answers: list[str] = []
    try:
        async with make_client(environ=used, tokens=token_set()) as c:
            app = c._transport.app  # type: ignore[attr-defined]
            runtime = app.state.runtime
            handlers[0].setFormatter(JsonFormatter(runtime.redactor))
            handlers[1].setFormatter(TextFormatter(runtime.redactor, "%(levelname)s %(name)s %(message)s"))
            covered: set[tuple[str, str]] = set()
            for method, template, path, kwargs in calls():
                resp = await c.request(
                    method, path, headers={**bearer("admin"), **dict(kwargs.pop("headers", {}))}, **kwargs
                )  # type: ignore[arg-type]
                assert resp.status_code < 500, (path, resp.text)
                answers.append(f"{path} {resp.status_code} {dict(resp.headers)} {resp.text}")
                covered.add((method, template))
            # a delivery through an inactive integration, and a secret inside a project error's message
            monkeypatch.setattr(
                governance,
                "list_integrations",
                lambda store: (_ for _ in ()).throw(InputError(f"x {used['SPLUNK_HEC_TOKEN']}")),
            )
            resp = await c.get("/integrations", headers=bearer("admin"))
            answers.append(resp.text)
            monkeypatch.setattr(
                governance,
                "get_integration",
                lambda store, i: (_ for _ in ()).throw(RuntimeError(used["JAMF_CLIENT_SECRET"])),
            )
            resp = await c.get("/integrations/splunk", headers=bearer("admin"))
            assert resp.status_code == 500
            answers.append(resp.text)
            missing = {r for r in api_routes(app) if r[0] != "HEAD"} - covered
            assert not missing, f"routes not exercised: {sorted(missing)}"
            if credentials == "right":
                delivered = [a for a in answers if '"success":true' in a]
                assert len(delivered) >= 5, "the happy path must really deliver"
            else:
                # URL-only providers (slack, teams) still deliver; every credential-based one is refused
                refused = [a for a in answers if '"status_code":401' in a or '"status_code":403' in a]
                assert len(refused) >= 5, "wrong credentials must really be refused by the emulators"
            secrets = secrets_of(env, emulators) | secrets_of(used, emulators)
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(old_level)
    for answer in answers:
        check(answer, secrets, "an answer")
    check(stream.getvalue(), secrets, "the server log")
    assert "unhandled RuntimeError" in stream.getvalue()
