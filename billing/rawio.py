"""Bulk reads and writes for the big runs (issue, CSV, pay): raw DBAPI values, converted once.

A 350,000-attendance period spent most of its time in per-value machinery: ORM objects
for every stored line, a bind and a result processor per datetime, a ``Decimal`` per
amount. Here the SQL is still written by SQLAlchemy (so it is right for the dialect),
but rows travel as plain tuples:

- :func:`utc_reader` turns what the driver returns for a ``UTCDateTime`` column (SQLite:
  the text ``YYYY-MM-DD HH:MM:SS.ffffff``; PostgreSQL: a naive ``datetime``) into an aware
  UTC ``datetime``, and :func:`utc_writer` does the reverse, in exactly the format
  ``UTCDateTime`` stores (string comparison in SQLite's WHERE clauses depends on it);
- :class:`LocalClock` gives UTC instants' local dates and ``YYYY-MM-DD HH:MM`` text
  through a per-hour cache (DST-correct: an hour in which the offset changes is converted
  exactly);
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


_HOUR = dt.timedelta(hours=1)
MINUTE_TEXTS = 100_000
_SPLIT = object()  # an hour the per-hour cache cannot answer: converted exactly, every time


class LocalClock:
    """UTC instants → local dates and ``YYYY-MM-DD HH:MM`` text, through a per-UTC-hour cache.

    Why: ``astimezone`` per value was a large share of the big runs. A zone's offset
    changes on a UTC hour boundary in Europe/London (01:00 UTC, spring and autumn), so one
    conversion of the hour's first instant answers every instant in it. An hour in which
    the offset changes, or whose offset is not whole hours (a zone such as +05:30, where
    local midnight falls mid-hour), is marked and converted exactly each time, so the
    cache is DST-correct in any zone, not only in London.
    """

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._days: dict[int, Any] = {}
        self._heads: dict[Any, Any] = {}
        self._hour_texts: dict[str, Any] = {}  # stored_minutes: "YYYY-MM-DD HH" -> local head or _SPLIT
        self._minute_texts: dict[str, str] = {}  # stored_minutes: "YYYY-MM-DD HH:MM" -> local text

    def _hour(self, top: dt.datetime) -> tuple[Any, Any]:
        """(local date, "YYYY-MM-DD HH:" text) for the UTC hour starting at ``top``, or _SPLIT for both."""
        first, last = top.astimezone(self.tz), (top + _HOUR - dt.timedelta(microseconds=1)).astimezone(self.tz)
        offset = first.utcoffset()
        if offset != last.utcoffset() or offset is None or offset % _HOUR:
            return _SPLIT, _SPLIT
        return first.date(), first.strftime("%Y-%m-%d %H:")

    def _key(self, instant: dt.datetime) -> int | None:
        """The UTC hour's number (hours since 0001-01-01), or None for an instant not in UTC."""
        if instant.tzinfo is not _UTC:
            return None
        return instant.toordinal() * 24 + instant.hour  # far cheaper than (instant - epoch) // hour

    def _top(self, key: int) -> dt.datetime:
        return dt.datetime.fromordinal(key // 24).replace(hour=key % 24, tzinfo=_UTC)

    def day(self, instant: dt.datetime) -> dt.date:
        """The local date of an aware instant."""
        if instant.tzinfo is _UTC:  # the cached path, inlined: this runs twice per attendance
            day = self._days.get(instant.toordinal() * 24 + instant.hour)
            if day is not None and day is not _SPLIT:
                return day
        return self._day(instant)

    def _day(self, instant: dt.datetime) -> dt.date:
        key = self._key(instant)
        if key is None:
            return instant.astimezone(self.tz).date()
        day = self._days.get(key)
        if day is None:
            day = self._days[key] = self._hour(self._top(key))[0]
        return instant.astimezone(self.tz).date() if day is _SPLIT else day

    def minutes(self, instant: dt.datetime | None) -> str:
        """An aware instant as local ``YYYY-MM-DD HH:MM`` ("" for None)."""
        if instant is None:
            return ""
        key = self._key(instant)
        head = _SPLIT if key is None else self._heads.get(key)
        if head is None:
            head = self._heads[key] = self._hour(self._top(key))[1]  # type: ignore[index]
        if head is _SPLIT:
            return instant.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")
        return f"{head}{instant.minute:02d}"

    def stored_minutes(self, dialect_name: str) -> Callable[[Any], str]:
        """:meth:`minutes` for a driver value of a ``UTCDateTime`` column, read without parsing where it can be.

        SQLite's text ``YYYY-MM-DD HH:MM:…`` is looked up by its first 16 characters (the
        UTC minute), and a new minute by its first 13 (the hour): no ``datetime`` is built
        for most rows. The clock keeps both caches for every caller; the minutes' is
        emptied when it passes :data:`MINUTE_TEXTS` (about two months of minutes), so it
        stays bounded in a long-running server. A minute of an hour the per-hour rule
        cannot answer is converted exactly every time.
        """
        read = utc_reader(dialect_name)
        if dialect_name != "sqlite":
            return lambda value: self.minutes(read(value))
        texts, heads, minutes = self._minute_texts, self._hour_texts, self.minutes

        def from_text(value: Any) -> str:
            if value is None:
                return ""
            text = texts.get(value[:16])
            if text is not None:
                return text
            head = heads.get(value[:13])
            if head is None:
                instant = read(value)
                assert instant is not None
                head = heads[value[:13]] = self._hour(instant.replace(minute=0, second=0, microsecond=0))[1]
            if head is _SPLIT:
                return minutes(read(value))
            if len(texts) >= MINUTE_TEXTS:
                texts.clear()
            text = texts[value[:16]] = head + value[14:16]
            return text

        return from_text


def pence_text(pence: int) -> str:
    """1613 → "16.13", -1613 → "-16.13" (exact; the CSV's amount and rate columns)."""
    # Exact: the float nearest pence/100 is far closer than half a penny to it (for any
    # amount below 10^13 pence), so rounding it to two places gives pence/100 itself.
    return f"{pence / 100:.2f}"


class Query:
    """A Core ``select`` compiled once and run raw (no type processing either way) many times.

    Values are bound as given, unprocessed: a datetime must already be in the driver's
    form (:func:`utc_writer`); dates, numbers and strings need nothing. ``rows(**values)``
    replaces the values of the statement's named ``bindparam(name, placeholder)`` s for one run.
    """

    def __init__(self, conn: Connection, statement: ClauseElement) -> None:
        self.conn = conn
        compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        self.sql = compiled.string
        self.params = compiled.construct_params()
        self.names = list(compiled.positiontup or []) if conn.dialect.positional else None

    def rows(self, size: int = 5000, **values: Any) -> Iterator[Any]:
        """The rows, fetched ``size`` at a time (memory holds one fetch)."""
        params = {**self.params, **values} if values else self.params
        args: Sequence[Any] | dict[str, Any] = [params[n] for n in self.names] if self.names is not None else params
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, args)
            while True:
                rows = cursor.fetchmany(size)
                if not rows:
                    return
                yield from rows
        finally:
            cursor.close()

    def first(self, **values: Any) -> Any:
        """The first row (an ``INSERT … RETURNING``'s, say), the cursor closed at once."""
        rows = self.rows(1, **values)
        try:
            return next(rows, None)
        finally:
            rows.close()


def stream(conn: Connection, statement: ClauseElement, size: int = 5000) -> Iterator[Any]:
    """Raw rows of a Core ``select`` run once (see :class:`Query`), fetched ``size`` at a time."""
    return Query(conn, statement).rows(size)


def insert_many(conn: Connection, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """``INSERT INTO table (columns) VALUES …`` for every tuple, as one DBAPI executemany."""
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    conn.exec_driver_sql(sql, rows)


def date_writer(dialect_name: str) -> Callable[[dt.date], Any]:
    """A ``Date`` column's value as the driver takes it raw (SQLite: ISO text, as SQLAlchemy stores it)."""
    if dialect_name == "sqlite":
        return dt.date.isoformat
    return lambda day: day
