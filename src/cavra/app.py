"""The service object: one :class:`Cavra` per process owns the connector config, the evidence store and the
delivery runtime (transport, retry policy, outbox worker, replay), and is the only thing a face is given.

The service layer is this module, :mod:`cavra.service` (delivering one event to its targets) and
:mod:`cavra.governance` (records, events, routes, dashboards). Faces (``cavra.api``, ``cavra.cli``,
``cavra.console``) import those and the shared leaf modules (errors, events, config, redaction, secrets,
metrics), never ``cavra.store``, ``cavra.delivery``, ``cavra.connectors`` or ``cavra.transport``: the import
contracts in ``pyproject.toml`` (run by ``make lint``) fail otherwise. See docs/architecture.md.

The few store and queue types and constants a face legitimately names (in a signature, a filter, a
table's column set) are re-exported at the end of this module, so a face never imports them from the
internals. A :class:`Cavra` opens its store on first use and is a context manager that closes it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cavra.config import CONFIG_ENV, LoadedConfig, load_config
from cavra.delivery import replay as _replay
from cavra.delivery.guard import GuardSettings, parse_rate_limits
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.queue import DEFAULT_WAIT_SECONDS, Schedule, Submission
from cavra.delivery.record import iso as iso_millis
from cavra.delivery.replay import ReplayItem
from cavra.delivery.runtime import DeliveryRuntime
from cavra.delivery.worker import Worker
from cavra.governance.notes import delivery_runtime
from cavra.redaction import Redactor
from cavra.secrets import Secret
from cavra.store import ENV_URL, METADATA_KINDS, Store, open_store, redact_url, upgrade
from cavra.store.base import check_purge_states, iso
from cavra.store.engine import resolve, store_file
from cavra.store.jobs import FINAL_STATES, JOB_STATES, SUCCEEDED, Job, JobFilter, QueueStats
from cavra.transport import AiohttpTransport, Transport

T = TypeVar("T")
ConfigSource = LoadedConfig | Callable[[], LoadedConfig | None]


@dataclass(frozen=True)
class StoreWhere:
    """Where the store options point: ``display`` (a URL's password redacted), the backend
    (``sqlite``, ``postgresql``, ``json``) and the store's file when that file does not exist yet."""

    display: str
    backend: str
    missing: Path | None


class Cavra:
    """The service object every face is given (the API's runtime, the CLI's commands, the console).

    ``store_url``/``metadata_json`` name the evidence store (``None``: ``$CAVRA_STORE_URL`` or the default
    SQLite file); ``config_path`` the connector config (``None``: ``$CAVRA_CONNECTOR_CONFIG``, if set);
    ``transport`` replaces the pooled aiohttp transport (tests); ``retry_base_delay`` shortens the retry
    schedule of deliveries made in-process (tests, demos)."""

    def __init__(
        self,
        *,
        store_url: str | None = None,
        metadata_json: str | None = None,
        config_path: str | None = None,
        env: Mapping[str, str] | None = None,
        transport: Transport | None = None,
        retry_base_delay: float | None = None,
    ) -> None:
        self.store_url = store_url
        self.metadata_json = metadata_json
        self.config_path = config_path
        self.env: Mapping[str, str] = {} if env is None else env
        self.retry_base_delay = retry_base_delay
        self.config: LoadedConfig | None = None
        self.loaded_at: datetime | None = None
        self.redactor = Redactor()
        self._store: Store | None = None
        self._store_lock = threading.Lock()
        self._transport: Transport | None = transport
        self._own_transport = transport is None
        #: completion notes, wake-ups, access tokens and shared writers: one per service object, shared by
        #: its deliveries and its in-process worker (they wake each other)
        self.delivery: DeliveryRuntime = delivery_runtime()

    # --- connector config ----------------------------------------------------------------------------
    def load_config(self) -> LoadedConfig | None:
        """(Re)load the connector config named by ``config_path`` or ``$CAVRA_CONNECTOR_CONFIG`` in ``env``
        (``None`` when neither names one); a file that cannot load raises ConfigError. The redactor learns
        every target's secrets and the store URL's password."""
        path = self.config_path or self.env.get(CONFIG_ENV)
        if not path:
            self.config = None
            return None
        loaded = load_config(path, self.env)
        secrets: list[Secret | str] = []
        store_url = self.store_url or ""
        try:
            password = urlsplit(store_url).password if "://" in store_url else None
        except ValueError:
            password = None
        if password:
            secrets.append(password)
        self.config, self.loaded_at = loaded, datetime.now(UTC)
        self.redactor = loaded.redactor.with_secrets(secrets)
        return loaded

    # --- the store -----------------------------------------------------------------------------------
    def where(self) -> StoreWhere:
        """Where the store options point, without opening anything."""
        loc = resolve(self.store_url, metadata_json=self.metadata_json)
        path = store_file(loc)
        return StoreWhere(loc.display, loc.backend, path if path is not None and not path.exists() else None)

    @property
    def store(self) -> Store:
        """The store, opened (created and migrated if needed) on first use; a StoreError is raised again
        on the next use rather than remembered."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = open_store(self.store_url, metadata_json=self.metadata_json)
        return self._store

    async def astore(self) -> Store:
        """The store, opened off the event loop the first time."""
        if self._store is not None:
            return self._store
        return await asyncio.to_thread(lambda: self.store)

    def probe_store(self) -> None:
        """Prove the store answers (opening it if needed); raises StoreError when it does not."""
        # a keyed read of a record that never exists: costs one index lookup
        self.store.get_record_entry("integration", "__readyz__")

    def upgrade_store(self) -> str | None:
        """Create the store or migrate it to the newest schema; the revision it is at."""
        return upgrade(self.store_url, metadata_json=self.metadata_json)

    def close_store(self) -> None:
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def __enter__(self) -> Cavra:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close_store()

    # --- the delivery runtime ------------------------------------------------------------------------
    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = AiohttpTransport()
        return self._transport

    def policy(self, retries: int) -> RetryPolicy | None:
        """The retry policy for a delivery (``None``: the service's default for ``retries``)."""
        base = self.retry_base_delay
        if base is None:
            return None
        return RetryPolicy(retries=retries, base_delay=base, max_delay=max(base, base * 8))

    def worker(self, config: ConfigSource, settings: WorkerSettings | None = None, **options: Any) -> Worker:
        """An outbox worker on this store and transport; ``settings`` (:func:`worker_settings`; default:
        from the environment) the queue's schedule and the breakers and rate limits; ``options`` the
        worker's own (concurrency, lease_seconds, poll_interval, shutdown_timeout, observer, ...)."""
        options.setdefault("retry_base_delay", self.retry_base_delay)
        options.setdefault("runtime", self.delivery)
        if self._transport is not None:
            options.setdefault("transport", self._transport)
        if settings is not None:
            options |= {"schedule": settings.schedule, "guard": settings.guard}
        return Worker(self.store, config, **options)

    async def deliver(
        self,
        fn: Callable[..., Awaitable[T]],
        config: LoadedConfig,
        *args: Any,
        retries: int | None = None,
        **kwargs: Any,
    ) -> T:
        """Run one of the service layer's delivery functions (``governance.publish_events``,
        ``deliver_integration``, ``deliver_promotion``/``_rollback``/``_endpoint_export``,
        ``send_destination_test``) with this object's store, transport and, when ``retries`` is given,
        its retry policy: the one place where a face's delivery meets the delivery runtime."""
        store = await self.astore()
        if retries is not None:
            kwargs |= {"retries": retries, "policy": self.policy(retries)}
        if _takes_runtime(fn):
            kwargs.setdefault("runtime", self.delivery)
        return await fn(store, config, *args, transport=self.transport, **kwargs)

    async def redeliver(
        self,
        delivery_id: str,
        config: LoadedConfig,
        *,
        idempotency_key: str | None,
        wait: bool,
        timeout: float,
    ) -> Submission:
        """Queue a stored delivery's event again as a new job linked to it (and wait for it if asked)."""
        return await _replay.redeliver(
            await self.astore(),
            delivery_id,
            runtime=self.delivery,
            config=config,
            transport=self.transport,
            retry_base_delay=self.retry_base_delay,
            idempotency_key=idempotency_key,
            wait=wait,
            timeout=timeout,
        )

    def replay(
        self,
        *,
        states: Sequence[str],
        provider: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
        dry_run: bool = False,
        **filters: Any,
    ) -> list[ReplayItem]:
        """Queue finished jobs again, each as a new job linked to its last record (see delivery.replay)."""
        return _replay.replay(
            self.store,
            states=tuple(states),
            provider=provider,
            since=since,
            limit=limit,
            dry_run=dry_run,
            **filters,
        )

    def get_job(self, job_id: str) -> Job | None:
        return self.store.get_job(job_id)

    def list_jobs(self, flt: JobFilter, *, limit: int) -> tuple[list[Job], QueueStats]:
        """Outbox jobs, oldest first, and the queue's counts."""
        store = self.store
        return list(store.list_jobs(flt, limit=limit)), store.queue_stats()

    def purge_jobs(self, states: Sequence[str], *, finished_before: datetime, dry_run: bool) -> int:
        """Delete finished jobs (of ``states``: see :func:`check_purge_states`) older than
        ``finished_before``; how many (``dry_run``: how many would be)."""
        return self.store.purge_jobs(states=states, finished_before=finished_before, dry_run=dry_run)

    async def aclose(self) -> None:
        """Close the transport (when this object made it) and the store."""
        if self._own_transport and self._transport is not None:
            await self._transport.close()
            self._transport = None
        self.close_store()


@functools.cache
def _takes_runtime(fn: Callable[..., Any]) -> bool:
    """Whether a service-layer delivery function takes the delivery runtime (``runtime=``)."""
    return "runtime" in inspect.signature(fn).parameters


@dataclass(frozen=True)
class WorkerSettings:
    """A worker's retry schedule (of outbox runs) and its breaker and rate-limit settings."""

    schedule: Schedule
    guard: GuardSettings


def worker_settings(
    *,
    backoff_base: float | None = None,
    backoff_max: float | None = None,
    max_runs: int | None = None,
    max_age: float | None = None,
    breaker_threshold: int | None = None,
    breaker_cooldown: float | None = None,
    rate_limit: str | None = None,
) -> WorkerSettings:
    """The environment's settings (``CAVRA_QUEUE_*``, ``CAVRA_BREAKER_*``, ``CAVRA_RATE_LIMITS``) overridden
    by the values given (``None``: not given); a bad value raises ConfigError naming it."""
    schedule = Schedule.from_environment(
        base_delay=backoff_base, max_delay=backoff_max, max_runs=max_runs, max_age=max_age
    )
    guard = GuardSettings.from_environment(
        failure_threshold=breaker_threshold,
        cooldown=breaker_cooldown,
        rate_limits=parse_rate_limits(rate_limit) if rate_limit else None,
    )
    return WorkerSettings(schedule, guard)


def replay_states(*, failed: bool, dead: bool, include_succeeded: bool) -> tuple[str, ...]:
    """The job states ``deliveries replay``'s flags select (default: failed and dead)."""
    return _replay.states_for(failed=failed, dead=dead, include_succeeded=include_succeeded)


__all__ = [
    "DEFAULT_WAIT_SECONDS",
    "ENV_URL",
    "FINAL_STATES",
    "JOB_STATES",
    "METADATA_KINDS",
    "SUCCEEDED",
    "Cavra",
    "ConfigSource",
    "Job",
    "JobFilter",
    "QueueStats",
    "ReplayItem",
    "RetryPolicy",
    "Store",
    "StoreWhere",
    "Submission",
    "Transport",
    "Worker",
    "WorkerSettings",
    "check_purge_states",
    "iso",
    "iso_millis",
    "redact_url",
    "replay_states",
    "worker_settings",
]
