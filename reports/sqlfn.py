"""Date arithmetic that gives the same integers on SQLite and PostgreSQL.

The figures compare instants to the second ("exactly 15 minutes late is punctual"), so
they need time differences in SQL. The two engines disagree on how to subtract
timestamps (SQLite has ``julianday`` floats, whose rounding turns 900 s into 900.00004;
PostgreSQL has intervals), so every comparison here goes through whole seconds since the
epoch and whole days since 1970-01-01, which both engines compute exactly.

Local dates (Europe/London) are found in SQL by adding the zone's UTC offset, taken from
a CASE over the zone's transitions in the reporting range, computed here in Python from
``zoneinfo``: no database time-zone tables needed, identical on both engines.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Column, Integer, MetaData, Select, Table, case, insert, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.sqltypes import NullType

EPOCH_DAY = dt.date(1970, 1, 1)
DAY = 86400


class epoch_seconds(FunctionElement[int]):
    """Whole seconds since 1970-01-01 UTC of a naive-UTC timestamp column (fractions dropped)."""

    type = BigInteger()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    version = getattr(compiler.dialect, "server_version_info", None) or (0,)
    if tuple(version) >= (3, 38):
        return f"unixepoch({arg})"  # three times faster than strftime('%s'), same integer
    return f"CAST(strftime('%s', {arg}) AS INTEGER)"


@compiles(epoch_seconds, "postgresql")
def _epoch_seconds_pg(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    # The columns are ``timestamp without time zone`` holding UTC: EXTRACT treats them as UTC.
    return f"CAST(floor(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


class epoch_day(FunctionElement[int]):
    """Whole days since 1970-01-01 of a DATE column."""

    type = Integer()
    inherit_cache = True
    name = "epoch_day"


@compiles(epoch_day, "sqlite")
def _epoch_day_sqlite(element: epoch_day, compiler: Any, **kw: Any) -> str:
    # julianday of a date is an exact .5 value, so the difference is an exact integer.
    return f"CAST(julianday({compiler.process(element.clauses, **kw)}) - 2440587.5 AS INTEGER)"


@compiles(epoch_day, "postgresql")
def _epoch_day_pg(element: epoch_day, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} - DATE '1970-01-01')"


def day_number(day: dt.date) -> int:
    return (day - EPOCH_DAY).days


def to_epoch(instant: dt.datetime) -> int:
    return int(instant.timestamp())


def offset_segments(tz: ZoneInfo, lo: dt.datetime, hi: dt.datetime) -> list[tuple[int, int]]:
    """``[(start_epoch, offset_seconds), ...]``: the zone's UTC offset from each start on.

    Covers ``[lo - 2 days, hi + 2 days]``; found by stepping hour by hour, which is
    cheap for a reporting range and catches every transition of a real zone.
    """
    start = lo - dt.timedelta(days=2)
    end = hi + dt.timedelta(days=2)
    t = start.replace(minute=0, second=0, microsecond=0)
    current = int(t.astimezone(tz).utcoffset().total_seconds())  # type: ignore[union-attr]
    segments = [(to_epoch(t), current)]
    while t < end:
        t += dt.timedelta(hours=1)
        offset = int(t.astimezone(tz).utcoffset().total_seconds())  # type: ignore[union-attr]
        if offset != current:
            # Transitions happen on the hour in every zone carecall serves; if one did not,
            # find the exact minute in the hour that just passed.
            exact = t - dt.timedelta(hours=1)
            while int(exact.astimezone(tz).utcoffset().total_seconds()) != offset:  # type: ignore[union-attr]
                exact += dt.timedelta(minutes=1)
            segments.append((to_epoch(exact), offset))
            current = offset
    return segments


def local_seconds(col: Any, tz: ZoneInfo, lo: dt.datetime, hi: dt.datetime) -> ColumnElement[int]:
    """Local wall-clock seconds since the epoch of a UTC timestamp column, valid near [lo, hi]."""
    secs = epoch_seconds(col)
    segments = offset_segments(tz, lo, hi)
    if len(segments) == 1:
        return secs + literal(segments[0][1])
    whens = [(secs >= start, literal(offset)) for start, offset in reversed(segments[1:])]
    return secs + case(*whens, else_=literal(segments[0][1]))


def local_day(col: Any, tz: ZoneInfo, lo: dt.datetime, hi: dt.datetime) -> ColumnElement[int]:
    """The local date of a UTC timestamp column, as days since 1970-01-01 (integer division)."""
    # Grouped explicitly: a custom operator does not parenthesise its operands.
    return local_seconds(col, tz, lo, hi).self_group().op("/", precedence=8)(literal(DAY))


def materialise(session: Session, name: str, query: Select[Any]) -> Table:
    """Run ``query`` once into a temporary table that several figures then read.

    SQLite evaluates a CTE afresh for every statement that uses it; a temporary table
    costs one pass. Created with the query's column types and filled by INSERT … SELECT
    (PostgreSQL refuses bound parameters in CREATE TABLE … AS), so values come back
    converted (UTC datetimes, booleans) exactly as from the query itself. Temporary
    tables are private to the connection; :func:`drop` removes them at the end.
    """
    columns = []
    for c in query.selected_columns:
        kind = c.type
        if isinstance(kind, NullType):
            kind = BigInteger()
        columns.append(Column(c.name, kind))
    tmp = Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])
    conn = session.connection()
    tmp.create(conn)
    conn.execute(insert(tmp).from_select([c.name for c in columns], query))
    return tmp


def drop(session: Session, *tables: Table) -> None:
    conn = session.connection()
    for t in tables:
        t.drop(conn)
