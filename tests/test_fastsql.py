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
    # A prepared statement takes every column with a Python-side default as a parameter.
    columns = ("worker_number", "name", "pin_hash", "team", "active", "unanswered_enabled", "updated_at")
    prepared = Prepared(insert(workers).values({c: bindparam(c, type_=workers.c[c].type) for c in columns})
                        .returning(workers.c.id))
    with engine.begin() as conn:
        conn.execute(insert(workers).values(worker_number="1", name="a", pin_hash="x", team="", active=True,
                                            updated_at=AT))
        (new_id,) = prepared.scalars(conn, worker_number="2", name="b", pin_hash="x", team="", active=True,
                                     unanswered_enabled=False, updated_at=AT)
        raw = conn.execute(text("SELECT updated_at, active FROM workers ORDER BY id")).all()
    assert raw[0] == raw[1]
    by_id = Prepared(select(workers.c.id, workers.c.updated_at, workers.c.active)
                     .where(workers.c.id == bindparam("wid")).limit(1))
    with engine.connect() as conn:
        row = by_id.first(conn, wid=new_id)
        assert row.updated_at == AT and row.active is True
        assert by_id.first(conn, wid=-1) is None
    engine.dispose()


def test_remembered_datetime_binds_never_mix_up_instants(db_url):
    """The datetime bind memo (fastsql._LastValue): the same instant again, another one, an equal copy."""
    engine = make_engine(db_url)
    # A prepared statement takes every column with a Python-side default as a parameter.
    columns = ("worker_number", "name", "pin_hash", "team", "active", "unanswered_enabled", "updated_at")
    prepared = Prepared(insert(workers).values({c: bindparam(c, type_=workers.c[c].type) for c in columns})
                        .returning(workers.c.id))
    other = AT + dt.timedelta(hours=1, microseconds=1)
    london = other.astimezone(dt.timezone(dt.timedelta(hours=1)))  # the same instant, another zone
    instants = [AT, AT, other, AT, london, other]
    with engine.begin() as conn:
        ids = [prepared.scalars(conn, worker_number=str(n), name="w", pin_hash="x", team="", active=True,
                                unanswered_enabled=False, updated_at=at)[0] for n, at in enumerate(instants)]
    read = Prepared(select(workers.c.updated_at).where(workers.c.id == bindparam("wid")))
    with engine.connect() as conn:
        assert [read.scalars(conn, wid=i)[0] for i in ids] == instants
    engine.dispose()
