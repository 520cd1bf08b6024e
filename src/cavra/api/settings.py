"""What the API server is built from: connector config, store, tokens, limits.

:meth:`ApiSettings.from_environment` is how ``cavra serve`` builds it (flags first, then environment
variables); tests build it directly, usually with an explicit ``environ`` and an injected ``transport``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cavra.api.auth import TokenSet
from cavra.api.guards import ALLOWED_HOSTS_ENV, allowed_hosts_from
from cavra.app import Transport
from cavra.errors import ConfigError

MAX_BODY_ENV = "CAVRA_API_MAX_BODY_BYTES"
EXPORTS_DIR_ENV = "CAVRA_EXPORTS_DIR"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: seconds the server waits, on shutdown, for deliveries still running
DEFAULT_SHUTDOWN_TIMEOUT = 60.0


@dataclass(frozen=True)
class ApiSettings:
    """Everything :func:`cavra.api.app.create_app` needs.

    * ``config_path``: the connector config; default ``$CAVRA_CONNECTOR_CONFIG``.
    * ``store_url``: the evidence store; default ``$CAVRA_STORE_URL``, then the embedded SQLite file
      (``json:FILE`` selects the seed's metadata file).
    * ``exports_dir``: the directory endpoint-export artifact paths are relative to (default: the cwd).
    * ``environ``: where connector secrets are read from (default: the process environment).
    * ``retry_base_delay`` (backoff base) and ``transport`` (instead of pooled aiohttp): for tests.
    * ``worker``: run an outbox worker in the server process (``cavra serve`` turns it on unless
      ``--no-worker``), with ``worker_concurrency`` jobs at once.
    * ``allowed_hosts``: ``Host`` names answered besides loopback ones (``--allowed-host``); ``host_check``:
      whether the ``Host`` header is checked at all (default: in protected mode, or when names are
      allowed; ``cavra serve`` also turns it on whenever it listens on loopback).
    """

    config_path: str | None = None
    store_url: str | None = None
    tokens: TokenSet = field(default_factory=TokenSet)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    exports_dir: str | None = None
    retry_base_delay: float | None = None
    environ: Mapping[str, str] | None = None
    transport: Transport | None = None
    worker: bool = False
    worker_concurrency: int = 8
    allowed_hosts: tuple[str, ...] = ()
    host_check: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_hosts", allowed_hosts_from(self.allowed_hosts))
        if self.max_body_bytes < 1024:
            raise ConfigError(
                f"the request body limit must be at least 1024 bytes, got {self.max_body_bytes}"
            )
        if self.shutdown_timeout < 0:
            raise ConfigError("the shutdown timeout must not be negative")

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    @property
    def checked_hosts(self) -> frozenset[str] | None:
        """The names answered besides loopback ones, or None when the ``Host`` header is not checked."""
        on = self.host_check
        if on is None:
            on = self.tokens.protected_mode or bool(self.allowed_hosts)
        return frozenset(self.allowed_hosts) if on else None

    @classmethod
    def from_environment(
        cls,
        *,
        config_path: str | None = None,
        store_url: str | None = None,
        tokens_file: str | None = None,
        max_body_bytes: int | None = None,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        exports_dir: str | None = None,
        allowed_hosts: tuple[str, ...] | list[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> ApiSettings:
        """Settings for ``cavra serve``: explicit flags win over ``CAVRA_*`` environment variables."""
        env = os.environ if environ is None else environ
        hosts = (
            allowed_hosts_from(allowed_hosts)
            if allowed_hosts
            else allowed_hosts_from([env.get(ALLOWED_HOSTS_ENV, "")], ALLOWED_HOSTS_ENV)
        )
        limit = max_body_bytes
        if limit is None:
            raw = env.get(MAX_BODY_ENV)
            if raw:
                try:
                    limit = int(raw)
                except ValueError:
                    raise ConfigError(f"{MAX_BODY_ENV}: must be a whole number of bytes") from None
        return cls(
            config_path=config_path,
            store_url=store_url,
            tokens=TokenSet.load(tokens_file, env),
            max_body_bytes=limit if limit is not None else DEFAULT_MAX_BODY_BYTES,
            shutdown_timeout=shutdown_timeout,
            exports_dir=exports_dir or env.get(EXPORTS_DIR_ENV) or None,
            environ=environ,
            allowed_hosts=hosts,
        )
