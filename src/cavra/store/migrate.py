"""Alembic, driven from code: migrations are applied when a store opens and by ``cavra db upgrade``.

Upgrades are serialised between processes: on SQLite the migration runs inside ``BEGIN IMMEDIATE`` (the
database write lock); on PostgreSQL inside a transaction holding an advisory lock. A second process that
opens the store meanwhile waits, then finds the schema current. DDL is transactional on both engines, so
a failed migration leaves the previous revision intact.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: pg_advisory_xact_lock key of store migrations ("CAVRAMIG" as a 64-bit integer).
PG_MIGRATION_LOCK = 0x43415652414D4947


def alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade_engine(engine: sa.Engine, revision: str = "head") -> str | None:
    """Upgrade the database to ``revision`` (default: the newest); return the revision now current."""
    with engine.connect() as conn:
        current = current_revision(conn)
        conn.rollback()
        if revision == "head" and current == head_revision():
            return current
        conn.execution_options(cavra_immediate=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
            command.upgrade(alembic_config(conn), revision)
            return current_revision(conn)
