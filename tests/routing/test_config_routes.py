"""The ``routes`` section of a connectors file: compiled at load, refused with the file, index and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cavra.config import load_config
from cavra.errors import ConfigError

ENV = {
    "HOOK_URL": "http://127.0.0.1:9/hook",
    "SLACK_URL": "https://hooks.slack.com/services/T0/B0/abcdefghijk",
}
CONNECTORS: dict[str, Any] = {
    "webhook": {"url_env": "HOOK_URL", "allow_http": True},
    "slack": {"url_env": "SLACK_URL"},
    "teams": {"url": "https://example.invalid/teams/hook-0123456789", "enabled": False},
}


def write(tmp_path: Path, routes: object, *, yaml_file: bool = False) -> str:
    data = {"connectors": CONNECTORS, "routes": routes}
    p = tmp_path / ("c.yaml" if yaml_file else "c.json")
    p.write_text(yaml.safe_dump(data) if yaml_file else json.dumps(data))
    return str(p)


def refused(tmp_path: Path, routes: object) -> str:
    path = write(tmp_path, routes)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message[len(path) + 2 :]


def test_routes_load_compiled_from_yaml(tmp_path: Path) -> None:
    routes = [
        {
            "name": "rollbacks",
            "event_type": "cavra.release.*",
            "min_severity": "high",
            "to": ["slack", "webhook"],
        },
        {"matchers": ['labels.env=~"prod|staging"', "team!=ops"], "to": "webhook", "continue": True},
        {"default": True, "to": "webhook"},
    ]
    cfg = load_config(write(tmp_path, routes, yaml_file=True), environ=ENV)
    assert cfg.routes is not None
    assert [r.name for r in cfg.routes.routes] == ["rollbacks", "routes[1]", "routes[2]"]
    d = cfg.routes.route({"event_type": "cavra.release.rollback_execution", "severity": "critical"})
    assert dict(d.destinations) == {"slack": "rollbacks", "webhook": "rollbacks"}
    d = cfg.routes.route({"event_type": "other", "labels": {"env": "prod"}})
    assert [r.name for r in d.routes] == ["routes[1]"]
    d = cfg.routes.route({"event_type": "other", "labels": {"env": "preprod"}})  # anchored: not "prod"
    assert [r.name for r in d.routes] == ["routes[2]"] and dict(d.destinations) == {"webhook": "routes[2]"}


def test_a_file_without_routes_has_none(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"connectors": CONNECTORS}))
    assert load_config(str(p), environ=ENV).routes is None


def test_a_disabled_destination_is_still_a_known_name(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, [{"to": "teams", "event_type": "x"}]), environ=ENV)
    assert cfg.routes is not None and "teams" not in cfg.targets


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ({"to": "slack"}, "routes: must be a list of routes"),
        ([{"to": "nowhere"}], "routes[0].to: unknown destination 'nowhere'"),
        ([{"event_type": "x", "to": []}], "routes[0].to: must name at least one destination"),
        ([{"event_type": "x"}], "routes[0].to: must name at least one destination"),
        ([{"event_type": "x", "to": ["slack", "slack"]}], "routes[0].to: names destination 'slack' twice"),
        ([{"to": "slack", "receiver": "x"}], "routes[0].receiver: unknown key"),
        ([{"to": "slack", "matchers": ['env=~"(unclosed"']}], "routes[0].matchers[0]: invalid regex"),
        ([{"to": "slack", "matchers": ["env"]}], "routes[0].matchers[0]: 'env' is not a matcher"),
        ([{"to": "slack", "matchers": ['env="a']}], "routes[0].matchers[0]: unbalanced quotes"),
        ([{"to": "slack", "min_severity": "urgent"}], "routes[0].min_severity: must be one of info, low"),
        ([{"to": "slack", "event_type": ""}], "routes[0].event_type: must be a non-empty string"),
        ([{"to": "slack", "subject": {"type": "x"}}], "routes[0].subject.type: unknown key"),
        ([{"to": "slack", "continue": "yes"}], "routes[0].continue: must be true or false"),
        (
            [{"event_type": "x", "to": "slack"}, {"to": "slack", "matchers": ['x="a"', 'x="b"']}],
            'routes[1].matchers[1]: can never match: x="b" contradicts matchers[0] x="a"',
        ),
        ([{"to": "slack", "matchers": ['x="a"', 'x!="a"']}], "routes[0].matchers[1]: can never match"),
        ([{"to": "slack", "matchers": ['x!~"a|b"', 'x="a"']}], "routes[0].matchers[0]: can never match"),
        (
            [{"to": "slack", "event_type": "cavra.*", "matchers": ['event_type="other"']}],
            "routes[0].matchers[0]: can never match",
        ),
        (
            [{"to": "slack"}, {"event_type": "x", "to": "webhook"}],
            "routes[1]: can never match: routes[0] matches every event and has no continue",
        ),
        (
            [{"default": True, "to": "slack"}, {"event_type": "x", "to": "slack"}],
            "routes[1]: the default route",
        ),
        (
            [{"default": True, "to": "slack", "event_type": "x"}],
            "routes[0].event_type: a default route has only",
        ),
        (
            [
                {"name": "a", "event_type": "x", "to": "slack"},
                {"name": "a", "event_type": "y", "to": "slack"},
            ],
            "routes[1].name: 'a' is already the name of routes[0]",
        ),
        ([{"name": "bad name", "to": "slack"}], "routes[0].name: must be"),
    ],
)
def test_bad_routes_are_refused_naming_index_and_key(tmp_path: Path, routes: object, expected: str) -> None:
    assert expected in refused(tmp_path, routes)


def test_a_catch_all_with_continue_does_not_shadow(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, [{"to": "webhook", "continue": True}, {"event_type": "x", "to": "slack"}]),
        environ=ENV,
    )
    assert cfg.routes is not None
    assert dict(cfg.routes.route({"event_type": "x"}).destinations) == {
        "webhook": "routes[0]",
        "slack": "routes[1]",
    }
