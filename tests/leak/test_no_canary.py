"""No connector secret, in any form, in any channel an auditor or operator sees (issue 12, "Secrets").

One test per registered provider (a new connector is covered as soon as the registry and the emulator kit
know it): every provider's emulator echoes everything it received (raw, URL-encoded, base64) plus every
other connector's canaries in every form; the deliveries go through the API (two servers: SQLite with text
logs, PostgreSQL with JSON logs; waiting and through the outbox), the CLI (``--output``, ``--json``, a
``--metadata-json`` store, history and dashboards) and the console. Every destination that takes templates
has ones that print every context value (the Jira comment and ServiceNow work note included). The world is
built once per module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from cavra.connectors.registry import PROVIDERS
from tests.connectors.kit import EMULATORS

from .world import World, build

pytestmark = pytest.mark.slow

CHANNELS = [
    "API answers (sqlite)",
    "API answers (postgresql)",
    "console pages",
    "server log (text)",
    "server log (json)",
    "CLI",
    "--output evidence files",
    "stored records (sqlite)",
    "stored records (postgresql)",
    "stored records (JSON file)",
]


def _pg_url() -> Iterator[str | None]:
    try:
        from tests.store.conftest import PG_DB, PG_HOST, PG_PORT, _admin_execute, pg_user

        user = pg_user()
    except BaseException as exc:  # pytest.skip is a BaseException: PostgreSQL is not there
        pytest.skip(f"PostgreSQL is needed for the store and JSON-log channels: {exc}")
    import uuid

    schema = f"cavra_leak_{uuid.uuid4().hex[:12]}"
    _admin_execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{PG_DB}?options=-csearch_path%3D{schema}"
    finally:
        _admin_execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for url in _pg_url():
        yield build(tmp_path_factory.mktemp("leak"), url)


def test_every_channel_was_really_exercised(world: World) -> None:
    for channel in CHANNELS:
        texts = world.channels.get(channel, [])
        assert texts and any(t.strip() for t in texts), f"no text collected from {channel}"
    for name in ("sqlite", "postgresql"):
        answers = world.channels[f"API answers ({name})"]
        assert any("**REDACTED**" in t for t in answers)
        assert any(re.search(r'"last_error":\s*"', t) for t in answers), "no job ended with a last_error"
        assert any("cavra_" in t for t in answers), "/metrics was not read"


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_no_canary_of_the_provider_in_any_channel(world: World, provider: str) -> None:
    canaries = world.canaries[provider]
    assert canaries, f"{provider}: the emulator config holds no secret to look for"
    emulator = EMULATORS[provider][1]
    echoed = [r for r in world.received if r["provider"] == emulator and r["status"] == 400]
    assert echoed, f"{provider}: its emulator never echoed a request: the check would prove nothing"
    mine = canaries | world.pairs[provider]
    found = {
        channel: sorted(f"{canary[:6]}… as {form[:12]}…" for canary, form in hits.items() if canary in mine)
        for channel, hits in world.found.items()
    }
    found = {channel: hits for channel, hits in found.items() if hits}
    assert not found, f"{provider} secrets leaked: {found}"


@pytest.mark.parametrize(
    ("provider", "method", "path_end"),
    [
        ("slack", "POST", ""),
        ("teams", "POST", ""),
        ("jira", "POST", "/comment"),
        ("servicenow", "PATCH", ""),
    ],
)
def test_the_dumping_templates_were_rendered(world: World, provider: str, method: str, path_end: str) -> None:
    """The check above means something: the templates printed the context (the Jira comment and the
    ServiceNow work note of a second delivery included) in requests the emulators received."""
    emulator = EMULATORS[provider][1]
    bodies = [
        str(r["body"])
        for r in world.received
        if r["provider"] == emulator and r["method"] == method and str(r["path"]).endswith(path_end)
    ]
    assert any(f"'provider': '{provider}'" in body for body in bodies), (provider, len(bodies))
