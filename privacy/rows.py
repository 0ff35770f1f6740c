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

CHUNK = 500


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
    references are set to NULL, rows that cannot exist without them are deleted (recursively)."""
    referrers = list(_referrers(table))
    if not referrers:
        return session.execute(delete(table).where(condition)).rowcount or 0
    pk = primary_key(table)
    total = 0
    while True:
        keys = session.execute(select(*pk).where(condition).limit(CHUNK)).all()
        if not keys:
            return total
        key_cond = _key_in(pk, keys)
        for child, col, ref in referrers:
            values = select(ref).where(key_cond).scalar_subquery() if ref not in pk or len(pk) > 1 else None
            in_cond = col.in_(values) if values is not None else col.in_([k[pk.index(ref)] for k in keys])
            if col.nullable:
                session.execute(update(child).where(in_cond).values({col.name: None}))
            else:
                total += delete_where(session, child, in_cond)
        total += session.execute(delete(table).where(key_cond)).rowcount or 0


def _key_in(pk: list[Column[Any]], keys: list[Any]) -> ColumnElement[bool]:
    if len(pk) == 1:
        return pk[0].in_([k[0] for k in keys])
    from sqlalchemy import and_, or_

    return or_(*(and_(*(c == k[i] for i, c in enumerate(pk))) for k in keys))
