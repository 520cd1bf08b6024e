"""The façade every face calls (CLI, HTTP API, console). No face talks to connectors, HTTP or SQL directly."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cavra.config import LoadedConfig, Target, load_config
from cavra.connectors.registry import PROVIDERS, unknown_provider_message
from cavra.delivery.engine import deliver_many
from cavra.delivery.policy import RetryPolicy
from cavra.errors import ConfigError, InputError
from cavra.transport import AiohttpTransport, Transport

MAX_RETRIES = 10


def parse_providers(spec: str | Sequence[str] | None) -> list[str] | None:
    """``splunk``, ``splunk,slack``, ``all`` (→ ``None``: every configured provider)."""
    if spec is None:
        return None
    names = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    if not names:
        raise InputError("--provider: give a provider name, a comma-separated list, or 'all'")
    if names == ["all"]:
        return None
    for name in names:
        if name not in PROVIDERS:
            raise InputError(f"--provider: {unknown_provider_message(name)}")
    return list(dict.fromkeys(names))


def select_targets(config: LoadedConfig, providers: list[str] | None) -> tuple[list[Target], dict[str, str]]:
    """The targets to deliver to and the per-provider config errors that apply to this delivery."""
    if providers is None:
        if not config.targets and not config.errors:
            raise ConfigError(f"{config.source}: no connectors are configured")
        return list(config.targets.values()), dict(config.errors)
    targets: list[Target] = []
    errors: dict[str, str] = {}
    for name in providers:
        if name in config.targets:
            targets.append(config.targets[name])
        elif name in config.errors:
            errors[name] = config.errors[name]
        else:
            raise ConfigError(
                f"{config.source}: provider {name!r} is not configured (connectors.{name} is missing)"
            )
    if not targets and len(errors) == 1:
        # a single requested provider that cannot load is a configuration error, not a delivery failure
        raise ConfigError(next(iter(errors.values())))
    return targets, errors


def validate_retries(retries: int) -> int:
    if retries < 0 or retries > MAX_RETRIES:
        raise InputError(f"--retries: must be between 0 and {MAX_RETRIES}, got {retries}")
    return retries


async def deliver_event(
    event: Mapping[str, Any],
    config: LoadedConfig,
    providers: list[str] | None,
    *,
    retries: int = 1,
    policy: RetryPolicy | None = None,
    transport: Transport | None = None,
) -> dict[str, Any]:
    """Deliver one event to the selected providers concurrently; return the delivery record."""
    targets, errors = select_targets(config, providers)
    pol = policy or RetryPolicy(retries=validate_retries(retries))
    own = transport is None
    tr: Transport = transport if transport is not None else AiohttpTransport()
    try:
        return await deliver_many(targets, event, policy=pol, transport=tr, config_errors=errors)
    finally:
        if own:
            await tr.close()


def deliver_event_sync(
    event: Mapping[str, Any], config_path: str | None, providers: str | None, *, retries: int
) -> dict[str, Any]:
    config = load_config(config_path)
    return asyncio.run(deliver_event(event, config, parse_providers(providers), retries=retries))


def write_evidence(directory: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``DIR/<event_id>-connector-delivery.json`` atomically, never overwriting earlier evidence."""
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--output {out}: cannot create directory ({exc.strerror})") from None
    stem = f"{record.get('event_id') or 'event'}-connector-delivery"
    data = (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    tmp = out / f".{stem}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        n = 1
        while True:
            target = out / (f"{stem}.json" if n == 1 else f"{stem}.{n}.json")
            try:
                os.link(tmp, target)  # atomic and fails if the target exists: never overwrites
                return target
            except FileExistsError:
                n += 1
    except OSError as exc:
        raise InputError(f"--output {out}: cannot write evidence ({exc.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)
