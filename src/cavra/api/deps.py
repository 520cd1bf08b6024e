"""What routes depend on: the runtime (config, store, transport, in-flight deliveries) and the caller's role.

One :class:`Runtime` lives on ``app.state.runtime``. Its service object (``runtime.service``,
:class:`cavra.app.Cavra`) holds the server's delivery runtime (completion notes, wake-ups, access tokens,
shared writers), which every delivery route and the in-process worker share. Deliveries run as tasks it
tracks and shields, so a client that disconnects, or a server that is shutting down, does not cut a
delivery short: the lifespan waits for them (up to the shutdown timeout) before it closes the transport and
the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cavra.api.auth import Role, role_allows, roles_allowed
from cavra.api.errors import ApiError
from cavra.api.settings import ApiSettings
from cavra.app import Cavra, RetryPolicy, Store, Transport, Worker
from cavra.config import CONFIG_ENV, LoadedConfig
from cavra.errors import CavraError
from cavra.redaction import Redactor

log = logging.getLogger("cavra.api")
T = TypeVar("T")


class Runtime:
    """The server's long-lived resources, built from :class:`ApiSettings`: the service object
    (:class:`~cavra.app.Cavra`: config, store, transport, worker) and the deliveries in flight."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.service = Cavra(
            store_url=settings.store_url,
            config_path=settings.config_path,
            env=settings.env,
            transport=settings.transport,
            retry_base_delay=settings.retry_base_delay,
        )
        self.config_problem = f"no connector config: pass --config FILE or set {CONFIG_ENV}"
        self.inflight: set[asyncio.Task[Any]] = set()
        self.closing = False
        self.worker: Worker | None = None

    # --- connector config ----------------------------------------------------------------------------
    @property
    def config(self) -> LoadedConfig | None:
        return self.service.config

    @property
    def loaded_at(self) -> datetime | None:
        return self.service.loaded_at

    @property
    def redactor(self) -> Redactor:
        return self.service.redactor

    def load_config(self) -> None:
        """(Re)load the connector config; an explicit file that cannot load raises ConfigError."""
        previous = self.service.redactor
        if self.service.load_config() is None:
            return
        # log formatters given the previous redactor (cavra serve) learn the reloaded secrets too
        for handler in logging.getLogger().handlers:
            formatter = handler.formatter
            if formatter is not None and getattr(formatter, "redactor", None) is previous:
                formatter.redactor = self.redactor  # type: ignore[attr-defined]

    def require_config(self) -> LoadedConfig:
        if self.config is None:
            raise ApiError(503, self.config_problem, code="not_configured")
        return self.config

    # --- store and transport -------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The store, opened on first use (a StoreError is answered 503 and tried again next time)."""
        return self.service.store

    async def startup(self) -> None:
        """Open the store before the first request (a failure is logged; ``/readyz`` reports it), and start
        the in-process outbox worker when the settings ask for it."""
        try:
            await self.astore()
        except CavraError as exc:
            log.error("the store is not available: %s", self.redactor.scrub(str(exc)))
            return
        if self.settings.worker:
            from cavra.metrics import METRICS

            self.worker = self.service.worker(
                lambda: self.config,
                concurrency=self.settings.worker_concurrency,
                transport=self.transport,
                shutdown_timeout=self.settings.shutdown_timeout,
                observer=METRICS,
            )
            await self.worker.start()

    async def astore(self) -> Store:
        """The store, opened off the event loop the first time."""
        return await self.service.astore()

    @property
    def transport(self) -> Transport:
        return self.service.transport

    def policy(self, retries: int) -> RetryPolicy | None:
        """The retry policy for a delivery (``None``: the service's default for ``retries``)."""
        return self.service.policy(retries)

    @property
    def exports_dir(self) -> Path:
        return Path(self.settings.exports_dir) if self.settings.exports_dir else Path.cwd()

    # --- deliveries ----------------------------------------------------------------------------------
    async def run_delivery(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a delivery as a tracked task that finishes even if the request is cancelled."""
        if self.closing:
            raise ApiError(503, "the server is shutting down; try again shortly", code="shutting_down")
        task: asyncio.Task[T] = asyncio.create_task(make())
        self.inflight.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # retrieved here so a delivery whose client went away is logged once, not "never retrieved"
            log.debug("delivery task ended with %s", type(task.exception()).__name__)

    async def drain(self) -> None:
        """Wait for in-flight deliveries (up to the shutdown timeout)."""
        self.closing = True
        pending = [t for t in self.inflight if not t.done()]
        if not pending:
            return
        log.info("waiting for %d in-flight deliveries", len(pending))
        _done, late = await asyncio.wait(pending, timeout=self.settings.shutdown_timeout)
        if late:
            log.warning(
                "%d deliveries still running after %.0f s; cancelling",
                len(late),
                self.settings.shutdown_timeout,
            )
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        if self.worker is not None:
            await self.worker.close()  # finishes or releases the jobs it holds
            self.worker = None
        await self.service.aclose()


def get_runtime(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


# The dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
# a thread hop (and a wake-up of the event loop) on every request for what is an attribute read.
async def runtime_dependency(request: Request) -> Runtime:
    return get_runtime(request)


async def get_store(runtime: Annotated[Runtime, Depends(runtime_dependency)]) -> Store:
    return await runtime.astore()


async def get_config(runtime: Annotated[Runtime, Depends(runtime_dependency)]) -> LoadedConfig:
    return runtime.require_config()


RuntimeDep = Annotated[Runtime, Depends(runtime_dependency)]
StoreDep = Annotated[Store, Depends(get_store)]
ConfigDep = Annotated[LoadedConfig, Depends(get_config)]

# --- who is calling ------------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description="An API token; its role decides what it may call.")


@dataclass(frozen=True)
class Principal:
    """The caller: the token's name and role (``loopback``/``admin`` in protected mode)."""

    name: str
    role: Role


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits callers whose role includes ``role``; 401 or 403 JSON otherwise."""
    allowed = " or ".join(roles_allowed(role))

    async def dependency(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Principal:
        tokens = get_runtime(request).settings.tokens
        if tokens.protected_mode:
            return Principal("loopback", "admin")  # the middleware has admitted loopback clients only
        challenge = {"WWW-Authenticate": 'Bearer realm="cavra"'}
        if creds is None or not creds.credentials:
            raise ApiError(
                401,
                f"authentication required: send Authorization: Bearer <token>; "
                f"this route needs role {allowed}",
                headers=challenge,
            )
        token = tokens.authenticate(creds.credentials)
        if token is None:
            raise ApiError(
                401,
                f"the API token is not valid; this route needs role {allowed}",
                headers={"WWW-Authenticate": 'Bearer realm="cavra", error="invalid_token"'},
            )
        if not role_allows(token.role, role):
            raise ApiError(
                403, f"this route needs role {allowed}; token {token.name!r} has role {token.role}"
            )
        return Principal(token.name, token.role)

    return dependency


AuditorDep = Depends(require("auditor"))
OperatorDep = Depends(require("operator"))
AdminDep = Depends(require("admin"))
