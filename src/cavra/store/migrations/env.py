"""Alembic environment for the CAVRA evidence store.

:func:`cavra.store.migrate.upgrade_engine` passes an open connection (already in a transaction that holds
the migration lock) in ``config.attributes["connection"]``; running ``alembic`` by hand with
``-c src/cavra/store/alembic.ini`` uses ``sqlalchemy.url`` instead. Logging is left to the application.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from cavra.store.schema import metadata


def _configure_and_run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, sa.Connection):
        _configure_and_run(given)
        return
    from cavra.store.engine import create_engine, resolve

    url = context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(resolve(url))
    try:
        with engine.connect() as connection:
            _configure_and_run(connection)
            connection.commit()
    finally:
        engine.dispose()


def run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
