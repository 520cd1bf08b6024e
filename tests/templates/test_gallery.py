"""The template gallery of docs/routing.md: every block is a complete connectors file that loads as it
is (each template passes the checks on every sample event), routes the events it is meant for, and
renders what it promises on every kind of event, comments and work notes included."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cavra.config import LoadedConfig, load_config
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
ROLLBACK, PROMOTION = SAMPLES[2], SAMPLES[1]


def gallery_blocks() -> list[str]:
    section = DOC.read_text(encoding="utf-8").split("### Gallery", 1)[1]
    section = re.split(r"\n#{1,3} ", section, maxsplit=1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, flags=re.S)


def load_block(tmp_path: Path, block: str) -> LoadedConfig:
    path = tmp_path / "connectors.yaml"
    path.write_text(block, encoding="utf-8")
    loaded = load_config(str(path), ENV)
    assert loaded.errors == {}, loaded.errors
    assert loaded.routes is not None
    return loaded


def shown(loaded: LoadedConfig, name: str, event: dict[str, Any]) -> dict[str, Any]:
    target = loaded.targets[name]
    out = rendered(target.provider, event, target.settings, "dk_gallery", now=1_765_000_000.0)
    assert out is not None and "template_warning" not in out, (name, out)
    assert out["limits"] == "ok"
    return out["message"]  # type: ignore[no-any-return]


def test_the_gallery_has_three_complete_files() -> None:
    blocks = gallery_blocks()
    assert len(blocks) == 3
    for block in blocks:
        data = yaml.safe_load(block)
        assert set(data) == {"connectors", "routes"}


@pytest.mark.parametrize("index", range(3), ids=["release-channel", "soc-digest", "change-ticket"])
def test_every_destination_renders_every_kind_of_event(tmp_path: Path, index: int) -> None:
    loaded = load_block(tmp_path, gallery_blocks()[index])
    for name in loaded.targets:
        assert loaded.targets[name].settings.templates is not None, name
        for event in SAMPLES:
            shown(loaded, name, event)


def test_release_channel(tmp_path: Path) -> None:
    loaded = load_block(tmp_path, gallery_blocks()[0])
    assert loaded.routes is not None
    assert list(loaded.routes.route(ROLLBACK).destinations) == ["slack-release"]
    message = shown(loaded, "slack-release", ROLLBACK)
    assert message["text"] == (
        ":rotating_light: PROD rollback execution rre_prod: agent-policy 2.3.0 -> agent-policy 2.2.4"
    )
    assert message["blocks"][0]["text"]["text"] == "Completed in prod"
    assert "&lt;over&gt; budget &amp; rising" in message["blocks"][1]["text"]["text"]
    promoted = shown(loaded, "slack-release", PROMOTION)
    assert promoted["text"].startswith(":rotating_light: PROD promotion audit rpe_prod_42")
    assert promoted["blocks"][2]["text"]["text"].endswith("|Open in CAVRA>")


def test_soc_digest(tmp_path: Path) -> None:
    loaded = load_block(tmp_path, gallery_blocks()[1])
    assert loaded.routes is not None
    assert list(loaded.routes.route(SAMPLES[0]).destinations) == ["teams-soc"]
    card = shown(loaded, "teams-soc", SAMPLES[0])
    body = card["attachments"][0]["content"]["body"]
    assert body[0]["text"] == "[HIGH] agent session demo-session"
    text = str(body)
    assert "4 blocked of 7 decisions" in text and "secrets.read, http.request, shell.exec" in text
    assert "env=prod, team=platform" in text


def test_change_ticket(tmp_path: Path) -> None:
    loaded = load_block(tmp_path, gallery_blocks()[2])
    assert loaded.routes is not None
    routed = list(loaded.routes.route(ROLLBACK).destinations)
    assert routed == ["jira-changes", "servicenow-changes"]
    jira = shown(loaded, "jira-changes", ROLLBACK)
    assert jira["summary"] == "[critical] Rollback execution rre_prod: agent-policy 2.3.0"
    assert jira["description"]["type"] == "doc"
    (comment,) = jira["comment"]["content"]
    assert comment["content"][0]["text"].startswith("Delivered again at 2025-12-06 05:46:40 UTC: rre_prod")
    snow = shown(loaded, "servicenow-changes", ROLLBACK)
    assert snow["short_description"] == "Rollback Execution rre_prod (critical)"
    assert "Routed to release-managers" in snow["description"]
    assert snow["work_notes"] == (
        "CHG0000001: rre_prod delivered again at 2025-12-06 05:46:40 UTC, status completed."
    )
