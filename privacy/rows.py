"""Schema-generic row work for the registry: plain values, text columns, deletes that
follow foreign keys (a deleted row's children go too; nullable references are cleared)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, ColumnElement, String, Table, Text, delete, select, update
from sqlalchemy.orm import Session

from ivr.schema import metadata


def plain(value: Any) -> Any:
    """A JSON-ready value: ISO times in UTC, decimals as text."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def text_columns(table: Table) -> list[Column[Any]]:
    return [c for c in table.columns if isinstance(c.type, String | Text)]


def primary_key(table: Table) -> list[Column[Any]]:
    return list(table.primary_key.columns)


def _referrers(table: Table) -> Iterator[tuple[Table, Column[Any], Column[Any]]]:
    """(child table, child column, referenced column) for every FK pointing at ``table``."""
    for child in metadata.sorted_tables:
        for fk in child.foreign_keys:
            if fk.column.table is table:
                yield child, fk.parent, fk.column


def delete_where(session: Session, table: Table, condition: ColumnElement[bool]) -> int:
    """Delete the rows matching ``condition`` and, first, what refers to them: nullable
    references are set to NULL, rows that cannot exist without them are deleted (recursively).

    Set-based: each referring table takes one statement with a sub-select of the doomed
    keys, so a retention run over years of call records is a handful of statements.
    ``condition`` must read only ``table``'s own columns (it is evaluated again after the
    children are dealt with)."""
    for child, col, ref in _referrers(table):
        doomed = select(ref).where(condition)
        if col.nullable:
            session.execute(update(child).where(col.in_(doomed)).values({col.name: None}))
        else:
            delete_where(session, child, col.in_(doomed))
    return session.execute(delete(table).where(condition)).rowcount or 0
