"""Hot statements run as driver SQL with ``executemany``: the worker path's per-row cost without the
per-row parameter handling of SQLAlchemy Core.

A :class:`Raw` statement is written once with ``?`` placeholders and the SQL type of each parameter;
per dialect it is rendered once (``?`` for sqlite3, ``%s`` for psycopg) and each parameter goes through
the type's own bind processor (so timestamps are stored exactly as the Core statements store them:
naive UTC, in SQLite's text format on SQLite).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

Processor = Callable[[Any], Any] | None


class Raw:
    """A driver-level statement with typed positional parameters."""

    def __init__(self, sql: str, types: Sequence[sa.types.TypeEngine[Any]]) -> None:
        if sql.count("?") != len(types):
            raise ValueError(f"{len(types)} types for {sql.count('?')} placeholders: {sql}")
        self.sql = sql
        self.types = list(types)
        self._rendered: dict[str, tuple[str, list[Processor]]] = {}

    def _render(self, dialect: sa.Dialect) -> tuple[str, list[Processor]]:
        got = self._rendered.get(dialect.name)
        if got is None:
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            sql = self.sql.replace("?", mark) if mark != "?" else self.sql
            procs: list[Processor] = [t.dialect_impl(dialect).bind_processor(dialect) for t in self.types]
            got = self._rendered[dialect.name] = (sql, procs)
        return got

    def executemany(self, conn: sa.Connection, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        sql, procs = self._render(conn.dialect)
        if any(p is not None for p in procs):
            rows = [
                tuple(v if p is None or v is None else p(v) for p, v in zip(procs, r, strict=True))
                for r in rows
            ]
        conn.exec_driver_sql(sql, list(rows) if len(rows) > 1 else tuple(rows[0]))


def insert(table: sa.Table, columns: Sequence[str]) -> Raw:
    """``INSERT INTO table (columns) VALUES (?, ...)`` typed by the table's columns."""
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'  # noqa: S608 - names from schema.py
    return Raw(sql, [table.c[c].type for c in columns])
