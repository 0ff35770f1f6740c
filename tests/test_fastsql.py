"""Prepared statements write and read exactly what SQLAlchemy's own execute would."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, insert, select, text

from ivr.db import make_engine
from ivr.fastsql import Prepared
from ivr.models import Worker

workers = Worker.__table__
AT = dt.datetime(2026, 10, 25, 1, 30, 15, 250000, tzinfo=dt.UTC)


def test_prepared_insert_stores_the_same_text_as_sqlalchemy(db_url):
    engine = make_engine(db_url)
    columns = ("worker_number", "name", "pin_hash", "team", "active", "updated_at")
    prepared = Prepared(insert(workers).values({c: bindparam(c, type_=workers.c[c].type) for c in columns})
                        .returning(workers.c.id))
    with engine.begin() as conn:
        conn.execute(insert(workers).values(worker_number="1", name="a", pin_hash="x", team="", active=True,
                                            updated_at=AT))
        (new_id,) = prepared.scalars(conn, worker_number="2", name="b", pin_hash="x", team="", active=True,
                                     updated_at=AT)
        raw = conn.execute(text("SELECT updated_at, active FROM workers ORDER BY id")).all()
    assert raw[0] == raw[1]
    by_id = Prepared(select(workers.c.id, workers.c.updated_at, workers.c.active)
                     .where(workers.c.id == bindparam("wid")).limit(1))
    with engine.connect() as conn:
        row = by_id.first(conn, wid=new_id)
        assert row.updated_at == AT and row.active is True
        assert by_id.first(conn, wid=-1) is None
    engine.dispose()
