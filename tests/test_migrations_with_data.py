"""Upgrading a site's database that already holds data, not just an empty one.

Batch migrations on SQLite rebuild tables; with foreign keys enforced, dropping the old
``workers`` or ``attendances`` table fails as soon as other rows refer to it. Every
migration is run here over a database upgraded only to ``c001`` (the start of this
session's branches) and filled with a world of residents, workers, visits, an
attendance and a call, on both engines; the rows must survive unchanged.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from ivr.db import alembic_config, current_heads, expected_heads, normalise_url, upgrade

T0 = dt.datetime(2026, 3, 10, 9, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database (no schema yet) on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old-site.db'}"
        return
    server = request.getfixturevalue("pg_server")
    name = f"old_site_{os.getpid()}"
    server.execute_autocommit(f"DROP DATABASE IF EXISTS {name}")
    server.execute_autocommit(f"CREATE DATABASE {name}")
    try:
        yield server.url(name)
    finally:
        server.execute_autocommit(f"DROP DATABASE IF EXISTS {name}")


def test_upgrading_a_database_with_data_keeps_every_row(empty_db_url):
    url = empty_db_url
    command.upgrade(alembic_config(url), "c001")
    engine = create_engine(normalise_url(url))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO residents (id, reference, name, address, postcode, funder, team, phone_code, "
                          "access_notes, keysafe_reference, processing_restricted, active, updated_at) VALUES "
                          "(1, 'R001', 'Alice Brown', '1 Elm Road', 'SE6 1AA', 'Lewisham', '', '101', '', '', "
                          "false, true, :t)"), {"t": T0})
        conn.execute(text("INSERT INTO resident_lines (id, resident_id, e164) VALUES (1, 1, '+442086989911')"))
        conn.execute(text("INSERT INTO workers (id, worker_number, name, pin_hash, mobile_e164, team, active, "
                          "updated_at) VALUES (1, '1001', 'Wendy Walker', 'x', NULL, '', true, :t)"), {"t": T0})
        conn.execute(text("INSERT INTO visits (id, visit_ref, resident_id, planned_start, planned_end, "
                          "workers_required, time_critical, status, cancel_reason, updated_at) VALUES "
                          "(1, 'V1', 1, :s, :e, 1, false, 'scheduled', '', :s)"),
                     {"s": T0, "e": T0 + dt.timedelta(minutes=30)})
        conn.execute(text("INSERT INTO visit_workers (visit_id, worker_id, position) VALUES (1, 1, 1)"))
        conn.execute(text("INSERT INTO attendances (id, visit_id, resident_id, worker_id, kind, arrival_at, "
                          "arrival_method, arrival_verified, arrival_uniqueid, departure_verified, created_at, "
                          "updated_at) VALUES (1, 1, 1, 1, 'scheduled', :t, 'phone', true, 'u-1', false, :t, :t)"),
                     {"t": T0})
    engine.dispose()
    upgrade(url)
    assert current_heads(url) == expected_heads()
    engine = create_engine(normalise_url(url))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM residents")).scalars().all() == ["Alice Brown"]
        assert conn.execute(text("SELECT worker_number FROM workers")).scalars().all() == ["1001"]
        assert conn.execute(text("SELECT arrival_method, worker_id FROM attendances")).one() == ("phone", 1)
        assert conn.execute(text("SELECT count(*) FROM visit_workers")).scalar() == 1
    engine.dispose()
