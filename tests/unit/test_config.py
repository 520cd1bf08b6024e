"""The connectors file: secrets from env and files, errors that name the key path, one bad connector alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cavra.config import load_config, target_from_mapping
from cavra.errors import ConfigError
from cavra.secrets import Secret

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # base64 of 24 bytes


def write(tmp_path: Path, data: object, name: str = "connectors.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(data) if name.endswith(".json") else str(data))
    return str(p)


def test_env_and_file_secrets_resolve(tmp_path: Path) -> None:
    (tmp_path / "whsec").write_text(SECRET + "\n")
    path = write(
        tmp_path,
        {
            "connectors": {
                "webhook": {"url_env": "HOOK_URL", "signing_secret_file": "whsec", "allow_http": True}
            }
        },
    )
    cfg = load_config(path, environ={"HOOK_URL": "http://127.0.0.1:9/hook"})
    assert not cfg.errors
    t = cfg.targets["webhook"]
    assert isinstance(t.settings.url, Secret) and t.settings.url.reveal() == "http://127.0.0.1:9/hook"
    assert t.settings.url.source == "env:HOOK_URL"
    assert "127.0.0.1" not in repr(t.settings)


def test_missing_variable_names_connector_and_variable_and_spares_the_others(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "connectors": {
                "webhook": {"url_env": "HOOK_URL", "allow_http": True},
                "slack": {"url_env": "SLACK_WEBHOOK_URL"},
            }
        },
    )
    cfg = load_config(path, environ={"HOOK_URL": "http://127.0.0.1:9/hook", "SLACK_WEBHOOK_URL": "  "})
    assert "webhook" in cfg.targets
    assert "slack" in cfg.errors
    assert "SLACK_WEBHOOK_URL" in cfg.errors["slack"] and "slack" in cfg.errors["slack"]
    assert "empty" in cfg.errors["slack"]
    cfg2 = load_config(path, environ={"HOOK_URL": "http://127.0.0.1:9/hook"})
    assert "is not set" in cfg2.errors["slack"]


def test_unknown_key_is_named_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, {"connectors": {"webhook": {"url": "https://x.test/h", "timeout_secnds": 3}}})
    cfg = load_config(path, environ={})
    assert cfg.errors["webhook"] == (
        f"{path}: connectors.webhook.timeout_secnds: unknown key; did you mean 'timeout_seconds'?"
    )


def test_a_misspelled_secret_key_suggests_the_nearest(tmp_path: Path) -> None:
    path = write(tmp_path, {"connectors": {"splunk": {"url_env": "U", "tokne_env": "T"}}})
    cfg = load_config(path, environ={"U": "https://x.test/services/collector"})
    assert (
        cfg.errors["splunk"] == f"{path}: connectors.splunk.tokne_env: unknown key; did you mean 'token_env'?"
    )


def test_invalid_value_is_named_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path, {"connectors": {"webhook": {"url": "https://x.test/h", "timeout_seconds": -1}}})
    cfg = load_config(path, environ={})
    assert cfg.errors["webhook"].startswith(f"{path}: connectors.webhook.timeout_seconds:")


def test_unknown_provider(tmp_path: Path) -> None:
    path = write(tmp_path, {"connectors": {"no-such-provider": {"url": "https://x.test"}}})
    with pytest.raises(ConfigError, match=f"^{path}: connectors.no-such-provider: not a provider's name"):
        load_config(path, environ={})


def test_a_misspelled_provider_entry_is_an_error_of_the_file(tmp_path: Path) -> None:
    """Never ignored until someone asks for that provider: the file is refused, naming the nearest one."""
    path = write(tmp_path, {"connectors": {"splnuk": {"url_env": "U", "token_env": "T"}}})
    with pytest.raises(ConfigError, match=r"connectors\.splnuk: .*did you mean 'splunk'"):
        load_config(path, environ={})


def test_short_inline_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="too short"):
        target_from_mapping("webhook", {"url": "https://x.test/h", "token": "abc"}, environ={})


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("{not json", "c.json", "not valid JSON (line 1"),
        ("[]", "c.json", "must be a mapping"),
        ('{"connectors": []}', "c.json", "'connectors' is required"),
        ('{"connectors": {}, "extra": 1}', "c.json", "unknown top-level key 'extra'"),
        ("connectors: [unclosed", "c.yaml", "not valid YAML"),
    ],
)
def test_file_errors(tmp_path: Path, content: str, name: str, message: str) -> None:
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")) as exc:
        load_config(str(p), environ={})
    assert str(p) in str(exc.value)


def test_yaml_config(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("connectors:\n  webhook:\n    url_env: HOOK\n")
    cfg = load_config(str(p), environ={"HOOK": "https://hooks.example/x"})
    assert "webhook" in cfg.targets


def test_missing_file_and_no_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.json"), environ={})
    with pytest.raises(ConfigError, match="CAVRA_CONNECTOR_CONFIG"):
        load_config(None, environ={})


def test_env_config_variable_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, {"connectors": {"webhook": {"url": "https://hooks.example/x"}}})
    cfg = load_config(None, environ={"CAVRA_CONNECTOR_CONFIG": path})
    assert cfg.source == path


def test_disabled_connector_is_kept_out(tmp_path: Path) -> None:
    path = write(tmp_path, {"connectors": {"webhook": {"url": "https://hooks.example/x", "enabled": False}}})
    cfg = load_config(path, environ={})
    assert not cfg.targets and not cfg.errors


def test_delivery_key_is_stable_per_event_and_target() -> None:
    a = target_from_mapping("webhook", {"url": "https://a.example/x"}, environ={})
    b = target_from_mapping("webhook", {"url": "https://b.example/x"}, environ={})
    assert a.delivery_key("evt_1") == a.delivery_key("evt_1")
    assert a.delivery_key("evt_1") != a.delivery_key("evt_2")
    assert a.delivery_key("evt_1") != b.delivery_key("evt_1")


def test_each_target_redacts_every_configured_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "connectors": {
                "webhook": {"url": "https://hooks.example/x", "token_env": "HOOK_TOKEN"},
                "datadog": {"url": "https://logs.example/api/v2/logs", "api_key_env": "DD_KEY"},
            }
        },
    )
    cfg = load_config(path, environ={"HOOK_TOKEN": "hook-token-123456", "DD_KEY": "dd-key-abcdef987"})
    echoed = "receiver reflected DD-API-KEY dd-key-abcdef987 and hook-token-123456"
    for target in cfg.targets.values():
        out = target.redactor.scrub(echoed)
        assert "dd-key-abcdef987" not in out
        assert "hook-token-123456" not in out
