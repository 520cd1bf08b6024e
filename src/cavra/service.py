"""The façade every face calls (CLI, HTTP API, console). No face talks to connectors, HTTP or SQL directly."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cavra.config import LoadedConfig, Target
from cavra.connectors.base import TokenCache
from cavra.connectors.registry import CATEGORY_OF, PROVIDERS, unknown_provider_message
from cavra.delivery.engine import batching, deliver_batch, deliver_many, deliver_one
from cavra.delivery.guard import GuardSettings, effective_limits
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import ProviderDelivery, build_record
from cavra.destinations import valid_name
from cavra.errors import ConfigError, InputError
from cavra.events import ENDPOINT_PUBLICATION
from cavra.ratelimit import Pacer, RateLimit
from cavra.transport import AiohttpTransport, Transport

MAX_RETRIES = 10


def parse_providers(spec: str | Sequence[str] | None) -> list[str] | None:
    """``splunk``, ``splunk,slack-release``, ``all`` (→ ``None``: every configured destination).

    Each name is a destination's (the key of its entry in the connectors file; a provider's name is the
    name of the destination that has no ``provider`` key): whether it is configured is
    :func:`select_targets`'s to say."""
    if spec is None:
        return None
    names = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    if not names:
        raise InputError("--provider: give a provider name, a comma-separated list, or 'all'")
    if names == ["all"]:
        return None
    for name in names:
        if name not in PROVIDERS and not valid_name(name):
            raise InputError(f"--provider: {unknown_provider_message(name)}")
    return list(dict.fromkeys(names))


def select_targets(config: LoadedConfig, providers: list[str] | None) -> tuple[list[Target], dict[str, str]]:
    """The targets (destinations) to deliver to and the config errors (per destination) that apply to this
    delivery. ``None``: every enabled destination."""
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
            raise config.missing(name)
    if not targets and len(errors) == 1:
        # a single requested provider that cannot load is a configuration error, not a delivery failure
        raise ConfigError(next(iter(errors.values())))
    return targets, errors


def refusal(category: str | None, event_type: str) -> str | None:
    """Why a provider of ``category`` does not take events of ``event_type`` (None: it does).
    Endpoint-management providers take only endpoint exports' publications; every other takes any event."""
    if category == "endpoint" and event_type != ENDPOINT_PUBLICATION:
        return (
            f"endpoint-management providers take endpoint exports ({ENDPOINT_PUBLICATION}, "
            f"cavra release deliver-endpoint-export), not {event_type}"
        )
    return None


def all_that_take(
    config: LoadedConfig, events: Sequence[Mapping[str, Any]]
) -> tuple[list[str], dict[str, str]]:
    """``--provider all`` for these events: the configured destinations that take every one of them, and
    why each other one was skipped (an evidence bundle is not sent to Jamf)."""
    select_targets(config, None)  # no connectors at all is a configuration error
    kinds = list(dict.fromkeys(str(e.get("event_type")) for e in events))
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    # a destination that did not load is judged by its provider too: it is reported, not skipped silently
    categories: dict[str, str | None] = {name: t.category for name, t in config.targets.items()}
    categories.update({n: CATEGORY_OF.get(config.provider_of.get(n, n)) for n in config.errors})
    for name, category in categories.items():
        why = next((r for r in (refusal(category, kind) for kind in kinds) if r is not None), None)
        if why is None:
            chosen.append(name)
        else:
            skipped[name] = why
    if not chosen:
        raise InputError(
            "--provider all: no configured destination takes these events: "
            + "; ".join(f"{name}: {why}" for name, why in skipped.items())
        )
    return chosen, skipped


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
        return await deliver_many(
            targets, event, policy=pol, transport=tr, config_errors=errors, provider_of=config.provider_of
        )
    finally:
        if own:
            await tr.close()


#: deliveries in flight per provider for targets that take one event per request
EVENTS_IN_FLIGHT = 32
#: batch requests in flight per batching provider (each carries up to the provider's batch size)
BATCHES_IN_FLIGHT = 4


@dataclass
class BatchProgress:
    """How far :func:`deliver_events` is: events finished at every provider, and per provider."""

    total: int
    done: int = 0
    per_provider: dict[str, int] = field(default_factory=dict)


async def deliver_events(
    events: Sequence[Mapping[str, Any]],
    config: LoadedConfig,
    providers: list[str] | None,
    *,
    retries: int = 1,
    policy: RetryPolicy | None = None,
    transport: Transport | None = None,
    concurrency: int = EVENTS_IN_FLIGHT,
    on_progress: Callable[[BatchProgress], None] | None = None,
) -> list[dict[str, Any]]:
    """Deliver many events to the selected providers; return one delivery record per event, in order.

    Batching targets (the SIEM intakes) get ``deliver_batch`` (many events per request within the
    provider's limits), the others ``deliver_one`` with ``concurrency`` in flight per provider; providers
    run concurrently. Events must carry distinct ``event_id`` values (see ``events.load_events_file``).
    """
    targets, errors = select_targets(config, providers)
    _require_distinct_ids(events)
    pol = policy or RetryPolicy(retries=validate_retries(retries))
    own = transport is None
    tr: Transport = transport if transport is not None else AiohttpTransport()
    run = _BatchRun(
        events=events,
        targets=targets,
        policy=pol,
        transport=tr,
        limits=effective_limits(GuardSettings.from_environment().rate_limits, config),
        concurrency=concurrency,
        on_progress=on_progress,
    )
    run.start()
    try:
        await asyncio.gather(*(run.run_target(t) for t in range(len(targets))))
    finally:
        if own:
            await tr.close()
    return [
        build_record(event, _column(run.results, n), config_errors=errors, provider_of=config.provider_of)
        for n, event in enumerate(events)
    ]


def _require_distinct_ids(events: Sequence[Mapping[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for i, event in enumerate(events):
        event_id = str(event.get("event_id") or "")
        if not event_id:
            raise InputError(f"events[{i}]: event_id is required (use events.normalize_event)")
        if seen.setdefault(event_id, i) != i:
            raise InputError(
                f"events[{i}]: duplicate event_id {event_id!r} (first at events[{seen[event_id]}])"
            )


@dataclass
class _BatchRun:
    """One :func:`deliver_events` call: its inputs, its results (per target, per event) and its progress."""

    events: Sequence[Mapping[str, Any]]
    targets: list[Target]
    policy: RetryPolicy
    transport: Transport
    limits: Mapping[str, RateLimit]
    concurrency: int
    on_progress: Callable[[BatchProgress], None] | None
    tokens: TokenCache = field(default_factory=TokenCache)
    progress: BatchProgress = field(init=False)
    finished: list[int] = field(init=False)  # providers done per event
    results: list[list[ProviderDelivery | None]] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.events)
        self.progress = BatchProgress(total=n, per_provider={t.destination: 0 for t in self.targets})
        self.finished = [0] * n
        self.results = [[None] * n for _ in self.targets]

    def start(self) -> None:
        if not self.targets:
            self.progress.done = len(self.events)
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def record(self, t: int, start: int, got: Sequence[ProviderDelivery]) -> None:
        for n, result in enumerate(got, start=start):
            self.results[t][n] = result
            self.finished[n] += 1
            if self.finished[n] == len(self.targets):
                self.progress.done += 1
        self.progress.per_provider[self.targets[t].destination] += len(got)
        if self.on_progress is not None:
            self.on_progress(self.progress)

    async def batch(self, t: int, size: int, start: int) -> None:
        chunk = self.events[start : start + size]
        got = await deliver_batch(
            self.targets[t], chunk, policy=self.policy, transport=self.transport, tokens=self.tokens
        )
        self.record(t, start, got)

    async def single(self, t: int, pacer: Pacer | None, start: int) -> None:
        if pacer is not None:  # e.g. Slack: about 1 message per second per hook
            await pacer.take()
        got = await deliver_one(
            self.targets[t],
            self.events[start],
            policy=self.policy,
            transport=self.transport,
            tokens=self.tokens,
        )
        self.record(t, start, [got])

    async def run_target(self, t: int) -> None:
        target = self.targets[t]
        size = batching(target)
        unit: Callable[[int], Awaitable[None]]
        if size > 1:
            lanes = BATCHES_IN_FLIGHT
            unit = functools.partial(self.batch, t, size)
        else:
            size, lanes = 1, max(1, self.concurrency)
            limit = self.limits.get(target.destination)
            unit = functools.partial(self.single, t, None if limit is None else Pacer(limit))
        starts: Iterator[int] = iter(range(0, len(self.events), size))
        first = next(starts, None)
        if first is None:
            return
        await unit(first)  # the first request fetches any access token the others then share

        async def lane() -> None:
            for start in starts:
                await unit(start)

        await asyncio.gather(*(lane() for _ in range(lanes)))


def _column(results: list[list[ProviderDelivery | None]], n: int) -> list[ProviderDelivery]:
    """Event ``n``'s results across providers (every provider reports every event)."""
    out: list[ProviderDelivery] = []
    for row in results:
        got = row[n]
        if got is None:  # pragma: no cover - the engine returns one result per event
            raise RuntimeError(f"no delivery result for event {n}")
        out.append(got)
    return out


def ensure_output_dir(directory: str | Path) -> Path:
    """Create ``--output DIR`` up front (before anything is delivered); errors name the directory."""
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--output {out}: cannot create directory ({exc.strerror})") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"--output {out}: directory is not writable")
    return out


#: evidence files written at once by :func:`write_evidence_many` (each is fsynced; they overlap well)
EVIDENCE_WRITERS = 16


def write_evidence_many(directory: str | Path, records: Sequence[Mapping[str, Any]]) -> list[Path]:
    """:func:`write_evidence` for each record (distinct ``event_id`` values), several at once.

    Returns the paths in the records' order."""
    if len(records) <= 1:
        return [write_evidence(directory, r) for r in records]
    with ThreadPoolExecutor(max_workers=min(EVIDENCE_WRITERS, len(records))) as pool:
        return list(pool.map(lambda r: write_evidence(directory, r), records))


def write_evidence(directory: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``DIR/<event_id>-connector-delivery.json`` atomically, never overwriting earlier evidence."""
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--output {out}: cannot create directory ({exc.strerror})") from None
    # the event id names the file: anything that could leave DIR or hide the file ("/", "..") is replaced
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(record.get("event_id") or "")).lstrip(".")
    stem = f"{safe or 'event'}-connector-delivery"
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
