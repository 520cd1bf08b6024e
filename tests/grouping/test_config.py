"""Grouping settings are checked at load (errors name the file, the route and the key), grouping is
refused on SIEM and webhook destinations, and ``cavra routes test`` shows the group an event joins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cavra.config import config_from_data
from cavra.errors import ConfigError
from cavra.governance import service as governance

ENV = {"SLACK_URL": "https://hooks.slack.com/services/T0000/B0000/abcdefghijkl", "TOKEN": "tok-abcdefghijkl"}
CONNECTORS = {
    "slack": {"url_env": "SLACK_URL"},
    "splunk": {"url": "https://splunk.example:8088", "token_env": "TOKEN"},
    "webhook": {"url": "https://hooks.example/cavra", "signing_secret_env": "TOKEN"},
}


def load(route: dict[str, Any]) -> Any:
    return config_from_data({"connectors": CONNECTORS, "routes": [route]}, "connectors.yaml", ENV)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (
            {"group_wait": "30 seconds"},
            "connectors.yaml: routes[0].group_wait: '30 seconds' is not a duration",
        ),
        ({"group_interval": "0s"}, "connectors.yaml: routes[0].group_interval: must be more than 0s"),
        (
            {"group_interval": True},
            'connectors.yaml: routes[0].group_interval: must be a duration like "30s"',
        ),
        ({"repeat_interval": "30d"}, "connectors.yaml: routes[0].repeat_interval: must be between 0s and 7d"),
        (
            {"group_interval": "10m", "repeat_interval": "5m"},
            "connectors.yaml: routes[0].repeat_interval: must be at least group_interval",
        ),
        ({"group_by": "env"}, "connectors.yaml: routes[0].group_by: must be a list of field names"),
        ({"group_by": ["env", "env"]}, "connectors.yaml: routes[0].group_by[1]: 'env' is not a field"),
        ({"group_by": ["labels."]}, "connectors.yaml: routes[0].group_by[0]: must be a field name"),
        ({"group_waits": "1s"}, "connectors.yaml: routes[0].group_waits: unknown key"),
    ],
)
def test_bad_settings_name_the_file_route_and_key(extra: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({"name": "chat", "to": "slack", **extra})
    assert str(info.value).startswith(said), str(info.value)


@pytest.mark.parametrize("dest", ["splunk", "webhook"])
def test_grouping_is_refused_on_siem_and_webhook_destinations(dest: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({"name": "chat", "to": ["slack", dest], "group_wait": "10s"})
    text = str(info.value)
    assert text.startswith("connectors.yaml: routes[0].group_wait: route 'chat' sends to")
    assert f"{dest!r}" in text and "never grouped" in text


def test_defaults_are_alertmanagers() -> None:
    route = load({"name": "chat", "to": "slack", "group_by": ["labels.env"]}).routes.routes[0]
    assert route.grouping is not None
    assert route.grouping.to_dict() == {
        "group_by": ["labels.env"],
        "group_wait": 30.0,
        "group_interval": 300.0,
        "repeat_interval": 14400.0,
    }
    assert load({"name": "chat", "to": "slack"}).routes.routes[0].grouping is None


def test_routes_test_shows_the_group_an_event_joins(tmp_path: Path) -> None:
    route = {"name": "chat", "to": "slack", "group_by": ["labels.env", "event_type"], "group_wait": "1m"}
    config = load(route)
    event = {
        "event_type": "cavra.release.rollback_execution",
        "execution_id": "rre_prod",
        "labels": {"env": "prod"},
    }
    answer = governance.test_route(config, event)
    item = answer["destinations"][0]
    assert (
        item["group"]["group_key"]
        == 'chat/slack/{labels.env="prod",event_type="cavra.release.rollback_execution"}'
    )
    assert item["group"]["group_wait"] == 60.0 and item["group"]["labels"] == {
        "labels.env": "prod",
        "event_type": "cavra.release.rollback_execution",
    }
    assert "1 CAVRA event" in json.dumps(item["rendered"]) and "rre_prod" in json.dumps(item["rendered"])
    assert "abcdefghijkl" not in json.dumps(answer)
    # the CLI, --json and text
    path = tmp_path / "connectors.json"
    path.write_text(json.dumps({"connectors": CONNECTORS, "routes": [route]}))
    (tmp_path / "event.json").write_text(json.dumps(event))
    cavra = str(Path(sys.executable).with_name("cavra"))
    env = {**os.environ, **ENV, "COLUMNS": "200"}
    args = [cavra, "routes", "test", str(tmp_path / "event.json"), "--config", str(path)]
    j = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert j.returncode == 0, j.stderr
    assert json.loads(j.stdout)["destinations"][0]["group"]["group_key"] == item["group"]["group_key"]
    t = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert t.returncode == 0 and 'joins group chat/slack/{labels.env="prod"' in t.stdout, t.stdout
    assert "abcdefghijkl" not in t.stdout + j.stdout
