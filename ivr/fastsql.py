"""Prepared Core statements for the call path: compiled once, run on the DBAPI cursor.

SQLAlchemy's ``Connection.execute`` spends about 50 µs per statement on a cached
statement (execution context, events, result metadata); the SQLite statement itself
costs a few. On the check-in hot path that overhead was most of the server's CPU per
call. A :class:`Prepared` statement keeps SQLAlchemy for what it is good at — writing
the SQL for the dialect, and the type conversions (``UTCDateTime``'s UTC handling and
SQLite's fixed datetime text format come from the same bind/result processors) — and
skips the per-execute machinery. It runs inside an ordinary ``engine.begin()``
connection, so transactions, the SQLite ``BEGIN IMMEDIATE`` hook and pooling are
unchanged.

Only plain statements with named bind parameters are supported (no "expanding" IN
lists: build one statement per list length instead).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

Processor = Callable[[Any], Any] | None


class _LastValue:
    """A bind processor that remembers its last value: a check-in binds the same instant
    (arrival, created, updated, the call's end) several times, and turning an aware
    datetime into SQLite's text costs more than running the statement. Identity, not
    equality, is compared, and the (value, result) pair is swapped in one assignment, so
    threads sharing the statement can only miss, never mix values up."""

    __slots__ = ("_fn", "_last")

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn
        self._last: tuple[Any, Any] = (object(), None)

    def __call__(self, value: Any) -> Any:
        last = self._last
        if last[0] is value:
            return last[1]
        out = self._fn(value)
        self._last = (value, out)
        return out


_DATETIME_BINDS: dict[tuple[Any, ...], _LastValue] = {}


class _Compiled:
    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.positional = bool(dialect.positional)
        names = list(compiled.positiontup or []) if self.positional else list(compiled.binds)
        self.names = names
        self.bind: dict[str, Processor] = {}
        # Literals in the statement (LIMIT 1, a status string) are anonymous binds that
        # carry their own value; named binds must be given at run time.
        self.literals: dict[str, Any] = {}
        for name in set(names):
            param = compiled.binds[name]
            proc = param.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None and isinstance(getattr(param.type, "impl", param.type), DateTime):
                # One memo per (type, dialect), shared by every datetime bind of that type.
                key = (type(param.type), getattr(param.type, "timezone", None), dialect.name)
                proc = _DATETIME_BINDS.setdefault(key, _LastValue(proc))
            self.bind[name] = proc
            if param.value is not None:
                self.literals[name] = param.effective_value
        # Result columns, in order, with the processor that turns raw values into Python ones.
        self.result: list[Processor] = []
        for column in getattr(statement, "selected_columns", []):
            self.result.append(column.type.dialect_impl(dialect).result_processor(dialect, None))
        returning = getattr(statement, "_returning", ())
        for column in returning:
            self.result.append(column.type.dialect_impl(dialect).result_processor(dialect, None))
        self.process_result = any(p is not None for p in self.result)
        keys = [c.key for c in getattr(statement, "selected_columns", [])] + [c.key for c in returning]
        self.row_type = collections.namedtuple("Row", keys, rename=True) if keys else None  # type: ignore[misc]

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if self.literals:
            values = {**self.literals, **values}
        bind = self.bind
        if self.positional:
            out = []
            for name in self.names:
                value = values[name]
                proc = bind[name]
                out.append(proc(value) if proc is not None and value is not None else value)
            return out
        return {name: (bind[name](values[name]) if bind[name] is not None and values[name] is not None
                       else values[name]) for name in self.names}

    def row(self, raw: Sequence[Any]) -> Any:
        """A named tuple (``row.id``), values converted as SQLAlchemy would."""
        if self.process_result:
            raw = [p(v) if p is not None and v is not None else v for p, v in zip(self.result, raw, strict=True)]
        assert self.row_type is not None
        return self.row_type(*raw)


class Prepared:
    """A Core statement compiled per dialect on first use, then run with bare cursors."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, conn: Connection) -> _Compiled:
        name = conn.dialect.name
        compiled = self._by_dialect.get(name)
        if compiled is None:
            compiled = self._by_dialect[name] = _Compiled(self.statement, conn.dialect)
        return compiled

    def _cursor(self, conn: Connection, values: Mapping[str, Any]) -> tuple[Any, _Compiled]:
        compiled = self._compiled(conn)
        # Make sure the Connection has begun (the SQLite BEGIN IMMEDIATE hook runs then).
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        cursor.execute(compiled.sql, compiled.params(values))
        return cursor, compiled

    def all(self, conn: Connection, **values: Any) -> list[Any]:
        cursor, compiled = self._cursor(conn, values)
        try:
            return [compiled.row(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def first(self, conn: Connection, **values: Any) -> Any | None:
        cursor, compiled = self._cursor(conn, values)
        try:
            raw = cursor.fetchone()
            return None if raw is None else compiled.row(raw)
        finally:
            cursor.close()

    def scalars(self, conn: Connection, **values: Any) -> list[Any]:
        return [row[0] for row in self.all(conn, **values)]

    def run(self, conn: Connection, **values: Any) -> int:
        """Execute for its effect; returns the row count."""
        cursor, _compiled = self._cursor(conn, values)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()
