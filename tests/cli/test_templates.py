"""``cavra templates show`` and the rendered message in ``cavra routes test``."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cavra.templates import default_templates

from .conftest import run_cavra

SLACK_URL = "https://hooks.slack.com/services/T0CLI0001/B0CLI0001/cliTemplateSecret0000001"


def test_templates_show_prints_the_defaults_to_copy() -> None:
    for provider in ("slack", "teams", "jira", "servicenow", "webhook"):
        done = run_cavra("templates", "show", provider)
        assert done.returncode == 0, done.stderr
        assert yaml.safe_load(done.stdout)["templates"] == default_templates(provider)
    bad = run_cavra("templates", "show", "splunk")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: no templates for 'splunk'; providers with templates: slack, teams, jira, servicenow, webhook"
    ]


def test_routes_test_shows_the_templated_message_and_its_limits(tmp_path: Path) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "connectors": {
                    "slack-release": {
                        "provider": "slack",
                        "url_env": "SLACK_URL",
                        "templates": {"text": "Rollback {{ subject.id }} in {{ event.environment }}"},
                    }
                },
                "routes": [{"default": True, "to": "slack-release"}],
            }
        )
    )
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps(
            {
                "event_type": "cavra.release.rollback_execution",
                "execution_id": "rre_prod",
                "environment": "prod",
            }
        )
    )
    env = {"SLACK_URL": SLACK_URL}
    done = run_cavra("routes", "test", str(event), "--config", str(config), "--json", env=env)
    assert done.returncode == 0, done.stderr
    (item,) = json.loads(done.stdout)["destinations"]
    assert item["rendered"]["message"]["text"] == "Rollback rre_prod in prod"
    assert item["rendered"]["limits"] == "ok"
    assert "Rollback rre_prod in prod" in item["request"]["body"]
    table = run_cavra("routes", "test", str(event), "--config", str(config), env=env)
    assert "slack-release message (what people read):" in table.stdout
    assert "provider limits: ok" in table.stdout
    assert "cliTemplateSecret" not in done.stdout + table.stdout
