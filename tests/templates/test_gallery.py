"""The template gallery of docs/routing.md loads (each template passes the checks on every sample event)
and renders what it promises."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from cavra.config import config_from_data
from cavra.connectors.messages import rendered
from cavra.templates.samples import SAMPLES

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"
ENV = {
    "SLACK_RELEASE_URL": "https://hooks.slack.com/services/T0GAL0001/B0GAL0001/gallerySecret00000001",
    "TEAMS_SOC_URL": "https://prod.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=gallerySig0000000001",
    "SERVICENOW_URL": "https://acme.service-now.com",
    "SERVICENOW_PASSWORD": "galleryPassword0000001",
    "JIRA_URL": "https://acme.atlassian.net",
    "JIRA_API_TOKEN": "galleryJiraToken000000001",
}


def gallery() -> dict[str, Any]:
    section = DOC.read_text(encoding="utf-8").split("### Gallery", 1)[1]
    connectors: dict[str, Any] = {}
    for block in re.findall(r"```yaml\n(.*?)```", section, flags=re.S):
        connectors.update(yaml.safe_load(block))
    return connectors


def test_gallery_loads_and_renders() -> None:
    connectors = gallery()
    assert set(connectors) == {"slack-release", "teams-soc", "servicenow", "jira"}
    loaded = config_from_data({"connectors": connectors}, "routing.md", ENV)
    assert loaded.errors == {}, loaded.errors
    rollback = SAMPLES[2]
    slack = loaded.targets["slack-release"]
    shown = rendered("slack", rollback, slack.settings, "dk")
    assert shown is not None and "template_warning" not in shown and shown["limits"] == "ok"
    assert shown["message"]["text"].startswith(":rotating_light: PROD rollback rre_prod: agent-policy 2.3.0")
    soc = loaded.targets["teams-soc"]
    card = rendered("teams", SAMPLES[0], soc.settings, "dk")
    assert card is not None and "template_warning" not in card
    body = card["message"]["attachments"][0]["content"]["body"]
    assert body[0]["text"] == "[HIGH] agent session demo-session"
    snow = rendered("servicenow", rollback, loaded.targets["servicenow"].settings, "dk_1")
    assert (
        snow is not None and snow["message"]["short_description"] == "Rollback Execution rre_prod (critical)"
    )
    assert "Routed to release-managers" in snow["message"]["description"]
    jira = rendered("jira", rollback, loaded.targets["jira"].settings, "dk_1")
    assert jira is not None and jira["message"]["summary"].startswith("[critical] CAVRA rollback execution")
    assert jira["message"]["description"]["type"] == "doc"
