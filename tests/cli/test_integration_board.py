"""``cavra integration delivery-history|delivery-dashboard``: the release commands' options and rendering
for SIEM and ChatOps deliveries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cavra.cli.main import app
from cavra.config import load_config
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.governance import service as governance
from cavra.store import open_store

FORBIDDEN = json.dumps({"errors": [{"status": "403", "title": "Forbidden", "detail": "API key is invalid"}]})
POLICY = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.05)


def _fill(tmp_path: Path, db: str) -> None:
    """Three Datadog deliveries refused with 403, and one Slack delivery that succeeds."""

    async def run() -> None:
        async with EmulatorServer() as srv:
            config, env = demo_environment(srv.base_url, srv.settings)
            path = tmp_path / "connectors.json"
            path.write_text(json.dumps(config), encoding="utf-8")
            loaded = load_config(str(path), env)
            with open_store(db) as store:
                governance.upsert_integration(store, {"integration_id": "dd", "provider": "datadog"})
                governance.upsert_integration(store, {"integration_id": "chat", "provider": "slack"})
                srv.hub.add_fault("datadog", Fault(status=403, count=3, body=FORBIDDEN))
                for n in range(3):
                    event = {"event_type": "cavra.evidence_bundle", "session_id": f"s-{n}"}
                    await governance.deliver_integration(store, loaded, "dd", event, retries=1, policy=POLICY)
                event = {"event_type": "cavra.evidence_bundle", "session_id": "ok"}
                await governance.deliver_integration(store, loaded, "chat", event, retries=1, policy=POLICY)

    asyncio.run(run())


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_dashboard_and_history(tmp_path: Path) -> None:
    db = str(tmp_path / "metadata.db")
    _fill(tmp_path, db)

    result = cli("integration", "delivery-dashboard", "--store", db, "--json")
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    assert board["schema_version"] == "cavra.integration.delivery_dashboard.v1"
    [alert] = [a for a in board["alerts"] if a["code"] == "provider_delivery_failing"]
    assert alert["provider"] == "datadog" and alert["level"] == "critical" and alert["count"] == 3

    shown = cli("integration", "delivery-dashboard", "--store", db)
    assert shown.exit_code == 0
    assert "integration deliveries" in shown.stdout and "CRITICAL" in shown.stdout
    assert "provider_delivery_failing" in shown.stdout and "datadog" in shown.stdout

    page = cli("integration", "delivery-history", "--store", db, "--provider", "datadog", "--json")
    assert page.exit_code == 0
    body = json.loads(page.stdout)
    assert body["total"] == 3 and {i["provider"] for i in body["items"]} == {"datadog"}
    ok = json.loads(cli("integration", "delivery-history", "--store", db, "--success", "--json").stdout)
    assert [i["provider"] for i in ok["items"]] == ["slack"]
    table = cli("integration", "delivery-history", "--store", db, "--limit", "2")
    assert table.exit_code == 0 and "2 of 4 provider deliveries" in table.stdout
    assert "--cursor" in table.stdout


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    db = str(tmp_path / "metadata.db")
    result = cli("integration", "delivery-history", "--store", db, "--since", "yesterday")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --since") and "Traceback" not in result.output
