"""Hot statements run as driver SQL: the worker path's per-statement and per-row cost without SQLAlchemy
Core's statement compilation, cache-key generation and per-row parameter handling.

A :class:`Raw` statement is written once with ``?`` placeholders and the SQL type of each parameter;
per dialect it is rendered once (``?`` for sqlite3, ``%s`` for psycopg) and each parameter goes through
the type's own bind processor (so timestamps are stored exactly as the Core statements store them:
naive UTC, in SQLite's text format on SQLite). Result columns, when declared, go through their types'
result processors (timestamps read back as aware UTC, booleans as ``bool``), as Core's results do.

A list parameter is written ``IN (?*)`` (or ``NOT IN (?*)``) with :func:`many` as its type: SQLite gets
one ``?`` per value (the rendered text is cached per list length), PostgreSQL ``= ANY(%s)`` (``<> ALL``)
with the list as one array parameter, so one prepared statement serves every length.

Statements run on the DBAPI cursor of the connection's current transaction (the transaction SQLAlchemy
began and commits); a driver error is raised as SQLAlchemy's :class:`~sqlalchemy.exc.DBAPIError` (and a
lost connection is invalidated), as a Core statement would raise it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

Processor = Callable[[Any], Any] | None
_IN = "IN (?*)"
_NOT_IN = "NOT IN (?*)"


class _Many:
    """The type of a list parameter (``IN (?*)``): each value is bound as ``type``."""

    def __init__(self, type_: sa.types.TypeEngine[Any]) -> None:
        self.type = type_


def many(type_: sa.types.TypeEngine[Any]) -> Any:
    """The type of an ``IN (?*)`` list parameter whose values are of ``type_``."""
    return _Many(type_)


class _Rendered:
    __slots__ = ("active", "any_proc", "lists", "procs", "results", "sql")

    def __init__(
        self, sql: str, procs: list[Processor], lists: list[bool], results: Sequence[Processor]
    ) -> None:
        self.sql = sql
        self.procs = procs
        self.lists = lists
        self.results = results
        self.any_proc = any(p is not None for p in procs)
        #: (position, processor) of the parameters that have one
        self.active = [(n, p) for n, p in enumerate(procs) if p is not None]


class Raw:
    """A driver-level statement with typed positional parameters (and, optionally, typed result columns)."""

    def __init__(
        self,
        sql: str,
        types: Sequence[Any],
        result: Sequence[sa.types.TypeEngine[Any]] = (),
    ) -> None:
        marks = sql.count("?")  # an IN (?*) list is one parameter
        if marks != len(types):
            raise ValueError(f"{len(types)} types for {marks} placeholders: {sql}")
        if sum(isinstance(t, _Many) for t in types) != sql.count("(?*)"):
            raise ValueError(f"list parameters and IN (?*) markers differ: {sql}")
        self.sql = sql
        self.types = list(types)
        self.result = list(result)
        self._rendered: dict[str, _Rendered] = {}
        self._expanded: dict[tuple[int, ...], str] = {}

    def _render(self, dialect: sa.Dialect) -> _Rendered:
        got = self._rendered.get(dialect.name)
        if got is None:
            qmark = dialect.paramstyle == "qmark"
            sql = self.sql
            if not qmark:
                sql = sql.replace(_NOT_IN, "<> ALL(?)").replace(_IN, "= ANY(?)").replace("?", "%s")
            procs: list[Processor] = []
            lists: list[bool] = []
            for t in self.types:
                listed = isinstance(t, _Many)
                lists.append(listed)
                base = t.type if listed else t
                procs.append(base.dialect_impl(dialect).bind_processor(dialect))
            results = [t.dialect_impl(dialect).result_processor(dialect, None) for t in self.result]
            got = self._rendered[dialect.name] = _Rendered(sql, procs, lists, results)
        return got

    def _bind(self, r: _Rendered, params: Sequence[Any], qmark: bool) -> tuple[str, list[Any]]:
        """The statement text and flat parameters for one execution."""
        if not any(r.lists):
            if not r.any_proc:
                return r.sql, list(params)
            return r.sql, [
                v if p is None or v is None else p(v) for p, v in zip(r.procs, params, strict=True)
            ]
        out: list[Any] = []
        lengths: list[int] = []
        for p, listed, v in zip(r.procs, r.lists, params, strict=True):
            if listed:
                values = [x if p is None or x is None else p(x) for x in v]
                if not values:
                    raise ValueError(f"an empty list for IN (?*): {self.sql}")
                if qmark:
                    out.extend(values)
                    lengths.append(len(values))
                else:
                    out.append(values)
            else:
                out.append(v if p is None or v is None else p(v))
        if not qmark:
            return r.sql, out
        key = tuple(lengths)
        sql = self._expanded.get(key)
        if sql is None:
            parts = r.sql.split("(?*)")
            sql = parts[0] + "".join(
                "(" + ", ".join("?" * n) + ")" + rest for n, rest in zip(lengths, parts[1:], strict=True)
            )
            if len(self._expanded) < 256:
                self._expanded[key] = sql
        return sql, out

    def rows(self, conn: sa.Connection, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run once; the result rows (each value through its declared result type's processor)."""
        dialect = conn.dialect
        r = self._render(dialect)
        sql, flat = self._bind(r, params, dialect.paramstyle == "qmark")
        cursor = _run(conn, sql, flat, many=False)
        try:
            got = cursor.fetchall()
        finally:
            cursor.close()
        procs = r.results
        if not any(p is not None for p in procs):
            return [tuple(row) for row in got]
        return [
            tuple(v if p is None or v is None else p(v) for p, v in zip(procs, row, strict=True))
            for row in got
        ]

    def run(self, conn: sa.Connection, params: Sequence[Any] = ()) -> int:
        """Run once (no result rows); the row count."""
        dialect = conn.dialect
        sql, flat = self._bind(self._render(dialect), params, dialect.paramstyle == "qmark")
        cursor = _run(conn, sql, flat, many=False)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def executemany(self, conn: sa.Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Run once per row of parameters (no list parameters)."""
        if not rows:
            return
        r = self._render(conn.dialect)
        if any(r.lists):
            raise ValueError(f"executemany with list parameters: {self.sql}")
        if r.any_proc:
            rows = [_processed(x, r.active) for x in rows]
        if len(rows) == 1:
            _run(conn, r.sql, rows[0], many=False).close()
        else:
            _run(conn, r.sql, rows, many=True).close()


def _processed(row: Sequence[Any], active: list[tuple[int, Callable[[Any], Any]]]) -> list[Any]:
    """``row`` with each value that has a bind processor (and is not ``None``) passed through it."""
    out = list(row)
    for n, p in active:
        v = out[n]
        if v is not None:
            out[n] = p(v)
    return out


def _run(conn: sa.Connection, sql: str, params: Any, *, many: bool) -> Any:
    """Execute on the DBAPI connection of ``conn``'s transaction; driver errors as SQLAlchemy raises them."""
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = dbapi_conn.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
    except Exception as exc:
        cursor.close()
        dialect = conn.dialect
        dbapi = dialect.loaded_dbapi
        if not isinstance(exc, dbapi.Error):
            raise
        lost = dialect.is_disconnect(exc, dbapi_conn, cursor)
        if lost:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            sql, params, exc, dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from exc
    return cursor


def insert(table: sa.Table, columns: Sequence[str], suffix: str = "") -> Raw:
    """``INSERT INTO table (columns) VALUES (?, ...)`` typed by the table's columns (``suffix`` appended:
    an ``ON CONFLICT`` clause, a ``RETURNING`` list without parameters)."""
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks}){suffix}'  # noqa: S608 - names from schema.py
    return Raw(sql, [table.c[c].type for c in columns])


def columns(table: sa.Table, names: Sequence[str] | None = None, prefix: str = "") -> str:
    """``"a", "b", ...`` (or ``prefix."a", ...``): a column list for driver SQL."""
    pre = f"{prefix}." if prefix else ""
    return ", ".join(f'{pre}"{c.name}"' for c in table.c if names is None or c.name in names)
