"""PostgreSQL for the bench: a private schema in the local server's ``test`` database, dropped at the end.

The server is the one the test suite uses (127.0.0.1:5432, trust authentication, user ``postgres`` or
``root``); ``CAVRA_BENCH_PG`` may name another ``host:port/dbname``. When no server answers, the
PostgreSQL contestants are reported as skipped with the connection error.
"""

from __future__ import annotations

import os
import uuid
from types import TracebackType

DEFAULT = "127.0.0.1:5432/test"


def _target() -> tuple[str, int, str]:
    spec = os.environ.get("CAVRA_BENCH_PG") or DEFAULT
    hostport, _, db = spec.partition("/")
    host, _, port = hostport.partition(":")
    return host or "127.0.0.1", int(port or 5432), db or "test"


class PgSchema:
    """``with PgSchema("name") as pg:`` → ``pg.url`` (or ``pg.error`` when PostgreSQL is unreachable)."""

    def __init__(self, prefix: str = "cavra_bench", *, keep: bool = False, name: str | None = None) -> None:
        self.host, self.port, self.db = _target()
        self.schema = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.keep = keep
        self.user: str | None = None
        self.error: str | None = None
        self.server_version: str | None = None

    @property
    def url(self) -> str:
        return (
            f"postgresql://{self.user}@{self.host}:{self.port}/{self.db}"
            f"?options=-csearch_path%3D{self.schema}"
        )

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, dbname=self.db, user=self.user, autocommit=True, connect_timeout=5
        ) as conn:
            conn.execute(sql)

    def exists(self) -> bool:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, dbname=self.db, user=self.user, connect_timeout=5
        ) as conn:
            row = conn.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (self.schema,)
            ).fetchone()
        return row is not None

    def start(self) -> PgSchema:
        try:
            import psycopg
        except ImportError as exc:
            self.error = f"psycopg is not installed ({exc})"
            return self
        errors = []
        for user in ("postgres", "root"):
            try:
                with psycopg.connect(
                    host=self.host, port=self.port, dbname=self.db, user=user, connect_timeout=5
                ) as conn:
                    row = conn.execute("SHOW server_version").fetchone()
                    self.server_version = None if row is None else str(row[0]).split(" ")[0]
                self.user = user
                break
            except psycopg.Error as exc:
                errors.append(f"{user}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}")
        if self.user is None:
            self.error = (
                f"PostgreSQL at {self.host}:{self.port}/{self.db} is unreachable ({'; '.join(errors)})"
            )
            return self
        self._execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        return self

    def drop(self) -> None:
        if self.user is not None:
            self._execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def __enter__(self) -> PgSchema:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.keep:
            self.drop()
