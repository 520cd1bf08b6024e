"""Destinations in the connectors file: an entry may name its provider; each destination has its own
settings, secrets, rate limit, retry schedule and access tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cavra.config import load_config
from cavra.connectors.base import CachedToken, TokenCache
from cavra.delivery.guard import effective_limits
from cavra.delivery.queue import Schedule
from cavra.delivery.runs import resolve_target, schedule_for
from cavra.errors import ConfigError, InputError
from cavra.ratelimit import RateLimit
from cavra.secrets import Secret
from cavra.service import parse_providers, select_targets

HOOK_A = "https://hooks.slack.test/services/T000/B000/aaaaaaaaaaaaaaaaaaaaaaaa"
HOOK_B = "https://hooks.slack.test/services/T000/B111/bbbbbbbbbbbbbbbbbbbbbbbb"
ENV = {"SLACK_WEBHOOK_URL": HOOK_A, "SLACK_RELEASE_URL": HOOK_B}


def write(tmp_path: Path, connectors: dict[str, object]) -> str:
    p = tmp_path / "connectors.json"
    p.write_text(json.dumps({"connectors": connectors}))
    return str(p)


def two_slacks(tmp_path: Path, **release: object) -> str:
    return write(
        tmp_path,
        {
            "slack": {"url_env": "SLACK_WEBHOOK_URL"},
            "slack-release": {"provider": "slack", "url_env": "SLACK_RELEASE_URL", **release},
        },
    )


def test_an_entry_may_name_its_provider(tmp_path: Path) -> None:
    cfg = load_config(two_slacks(tmp_path, rate_limit="2/2", headers={"X-Team": "release"}), environ=ENV)
    assert not cfg.errors and list(cfg.targets) == ["slack", "slack-release"]
    own, release = cfg.targets["slack"], cfg.targets["slack-release"]
    assert (own.provider, own.destination) == ("slack", "slack")
    assert (release.provider, release.destination, release.category) == ("slack", "slack-release", "chatops")
    assert cfg.provider_of == {"slack": "slack", "slack-release": "slack"}
    assert isinstance(release.settings.url, Secret) and release.settings.url.reveal() == HOOK_B
    assert release.settings.headers == {"X-Team": "release"} and own.settings.headers == {}
    # one event, two destinations: two idempotency keys; the provider-named one keeps its old key
    assert own.delivery_key("evt-1") != release.delivery_key("evt-1")
    # every redactor knows both hooks (evidence about one never carries the other's)
    assert HOOK_B not in own.redactor.scrub(f"echo {HOOK_B}")


def test_unknown_provider_value_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, {"slack-release": {"provider": "slak", "url_env": "SLACK_RELEASE_URL"}})
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=ENV)
    assert str(err.value).startswith(f"{path}: connectors.slack-release.provider: unknown provider 'slak'")


@pytest.mark.parametrize("name", ["Slack-Release", "-slack", "slack release", "x" * 64])
def test_invalid_destination_name_is_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, {name: {"provider": "slack", "url_env": "SLACK_RELEASE_URL"}})
    with pytest.raises(ConfigError, match="is not a valid destination name"):
        load_config(path, environ=ENV)


def test_a_destination_name_is_accepted_where_a_provider_is(tmp_path: Path) -> None:
    cfg = load_config(two_slacks(tmp_path), environ=ENV)
    names = parse_providers("slack-release,slack")
    assert names == ["slack-release", "slack"]
    targets, errors = select_targets(cfg, names)
    assert [t.destination for t in targets] == ["slack-release", "slack"] and not errors
    with pytest.raises(InputError, match=r"unknown provider 'slack-soc'.*destinations: slack, slack-release"):
        select_targets(cfg, ["slack-soc"])
    with pytest.raises(ConfigError, match="provider 'jira' is not configured"):
        select_targets(cfg, ["jira"])
    with pytest.raises(InputError, match="unknown provider 'Bad Name'"):
        parse_providers("Bad Name")


def test_a_disabled_destination_is_refused_and_its_jobs_are_not_sent(tmp_path: Path) -> None:
    cfg = load_config(two_slacks(tmp_path, enabled=False), environ=ENV)
    assert list(cfg.targets) == ["slack"] and cfg.disabled == {"slack-release"}
    with pytest.raises(ConfigError, match="destination 'slack-release' is disabled"):
        select_targets(cfg, ["slack-release"])
    with pytest.raises(ConfigError, match="destination 'slack-release' is disabled"):
        resolve_target(cfg, "slack-release")  # a job queued before it was disabled
    assert [t.destination for t in select_targets(cfg, None)[0]] == ["slack"]  # 'all' skips it


def test_each_destination_has_its_own_rate_limit_bucket(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            {
                "slack": {"url_env": "SLACK_WEBHOOK_URL"},
                "slack-release": {"provider": "slack", "url_env": "SLACK_RELEASE_URL", "rate_limit": "5/10"},
                "slack-soc": {"provider": "slack", "url_env": "SLACK_RELEASE_URL"},
            },
        ),
        environ=ENV,
    )
    limits = effective_limits({}, cfg)
    assert limits["slack"] == limits["slack-soc"] == RateLimit(1, 4)  # Slack's default, per destination
    assert limits["slack-release"] == RateLimit(5, 10)
    # the operator's setting for a provider covers its destinations; one for a destination wins
    limits = effective_limits({"slack": RateLimit(2, 2), "slack-soc": RateLimit(3, 3)}, cfg)
    assert (limits["slack-release"], limits["slack-soc"]) == (RateLimit(2, 2), RateLimit(3, 3))


def test_a_destination_may_override_the_retry_schedule(tmp_path: Path) -> None:
    cfg = load_config(
        two_slacks(tmp_path, retry={"backoff_base": 5, "backoff_max": 30, "max_runs": 3}), environ=ENV
    )
    base = Schedule(base_delay=60, max_delay=3600, max_runs=12)
    assert schedule_for(cfg, "slack", base) == base
    own = schedule_for(cfg, "slack-release", base)
    assert (own.base_delay, own.max_delay, own.max_runs, own.max_age) == (5, 30, 3, base.max_age)
    only_cap = load_config(two_slacks(tmp_path, retry={"backoff_max": 10}), environ=ENV)
    capped = schedule_for(only_cap, "slack-release", base)
    assert (capped.base_delay, capped.max_delay) == (10, 10)


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ({"backoff_base": 60, "backoff_max": 5}, "backoff_max must not be less than backoff_base"),
        ({"max_runs": 0}, "connectors.slack-release.retry.max_runs"),
        ({"backoff": 5}, "connectors.slack-release.retry.backoff: unknown key"),
    ],
)
def test_a_bad_retry_override_names_its_key(tmp_path: Path, retry: dict[str, object], message: str) -> None:
    cfg = load_config(two_slacks(tmp_path, retry=retry), environ=ENV)
    assert message in cfg.errors["slack-release"] and "slack" in cfg.targets


def test_destinations_never_share_an_access_token() -> None:
    cache = TokenCache()
    a, b = cache.scoped("jamf"), cache.scoped("jamf-lab")
    a.put(CachedToken("https://jamf.test/api/oauth/token|client", Secret("token-of-jamf"), 1e18))
    assert a.get("https://jamf.test/api/oauth/token|client") is not None
    assert b.get("https://jamf.test/api/oauth/token|client") is None  # same credential key, other destination
    b.drop("https://jamf.test/api/oauth/token|client")
    assert a.get("https://jamf.test/api/oauth/token|client") is not None


def test_every_entry_is_a_listed_destination_even_one_that_does_not_load(tmp_path: Path) -> None:
    from cavra.governance.destinations import list_destinations

    cfg = load_config(
        write(
            tmp_path,
            {
                "no-such-provider": {"provider": "webhook", "url": "https://x.test", "timeout_seconds": -1},
                "slack": {"url_env": "SLACK_WEBHOOK_URL"},
                "slack-off": {"provider": "slack", "url_env": "SLACK_RELEASE_URL", "enabled": False},
            },
        ),
        environ=ENV,
    )
    items = {d["name"]: d for d in list_destinations(None, cfg)}
    assert list(items) == ["no-such-provider", "slack", "slack-off"]
    assert (
        items["no-such-provider"]["loaded"] is False
        and "connectors.no-such-provider.timeout_seconds" in items["no-such-provider"]["error"]
    )
    assert (items["slack-off"]["enabled"], items["slack-off"]["loaded"]) == (False, False)
    assert items["slack"]["health"]["status"] == "unknown" and items["slack"]["breaker"]["state"] == "closed"
    assert HOOK_A not in str(items)
