"""Bulk reads and writes for the big runs (issue, CSV, pay): raw DBAPI values, converted once.

A 350,000-attendance period spent most of its time in per-value machinery: ORM objects
for every stored line, a bind and a result processor per datetime, a ``Decimal`` per
amount. Here the SQL is still written by SQLAlchemy (so it is right for the dialect),
but rows travel as plain tuples:

- :func:`utc_reader` turns what the driver returns for a ``UTCDateTime`` column (SQLite:
  the text ``YYYY-MM-DD HH:MM:SS.ffffff``; PostgreSQL: a naive ``datetime``) into an aware
  UTC ``datetime``, and :func:`utc_writer` does the reverse, in exactly the format
  ``UTCDateTime`` stores (string comparison in SQLite's WHERE clauses depends on it);
- :class:`LocalMinutes` formats UTC instants as local ``YYYY-MM-DD HH:MM`` through a
  per-hour cache (the zone's offset only changes on the hour);
- :func:`pence_text` prints whole pence as pounds exactly, without ``Decimal``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from sqlalchemy.sql import ClauseElement

_UTC = dt.UTC
_ZERO = dt.timedelta(0)


def utc_reader(dialect_name: str) -> Callable[[Any], dt.datetime | None]:
    if dialect_name == "sqlite":
        parse = dt.datetime.fromisoformat

        def read_text(value: Any) -> dt.datetime | None:
            # One C call: the text plus an explicit UTC offset parses straight to an aware instant.
            return None if value is None else parse(value + "+00:00")

        return read_text

    def read_naive(value: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=_UTC)

    return read_naive


def utc_writer(dialect_name: str) -> Callable[[dt.datetime | None], Any]:
    if dialect_name == "sqlite":
        def write_text(value: dt.datetime | None) -> Any:
            if value is None:
                return None
            if value.utcoffset() != _ZERO:
                value = value.astimezone(_UTC)
            return value.isoformat(" ", "microseconds")[:26]  # drop the "+00:00"

        return write_text

    def write_naive(value: dt.datetime | None) -> Any:
        return None if value is None else value.astimezone(_UTC).replace(tzinfo=None)

    return write_naive


class LocalMinutes:
    """UTC instant → local ``YYYY-MM-DD HH:MM`` (what the CSVs print), cached per UTC hour."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._hours: dict[tuple[int, int, int, int], str] = {}

    def __call__(self, instant: dt.datetime | None) -> str:
        if instant is None:
            return ""
        key = (instant.year, instant.month, instant.day, instant.hour)
        head = self._hours.get(key)
        if head is None:
            top = instant.replace(minute=0, second=0, microsecond=0)
            head = self._hours[key] = top.astimezone(self.tz).strftime("%Y-%m-%d %H:")
        return f"{head}{instant.minute:02d}"


def pence_text(pence: int) -> str:
    """1613 → "16.13", -1613 → "-16.13" (exact; the CSV's amount and rate columns)."""
    sign = "-" if pence < 0 else ""
    whole, part = divmod(abs(pence), 100)
    return f"{sign}{whole}.{part:02d}"


def stream(conn: Connection, statement: ClauseElement, size: int = 5000) -> Iterator[Any]:
    """Raw rows of a Core ``select`` (no type processing either way), fetched ``size`` at a time.

    The statement's values are bound as given, unprocessed: a datetime must already be in
    the driver's form (:func:`utc_writer`); dates, numbers and strings need nothing.
    """
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.construct_params()
    args: Sequence[Any] | dict[str, Any] = (
        [values[n] for n in compiled.positiontup or []] if conn.dialect.positional else values)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(compiled.string, args)
        while True:
            rows = cursor.fetchmany(size)
            if not rows:
                return
            yield from rows
    finally:
        cursor.close()


def insert_many(conn: Connection, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """``INSERT INTO table (columns) VALUES …`` for every tuple, as one DBAPI executemany."""
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    conn.exec_driver_sql(sql, rows)
