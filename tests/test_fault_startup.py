"""Start while PostgreSQL is down (issue 14): ``carecall run`` comes up, answers and journals
calls, then runs the schema upgrade and replays the journal when the database returns.

A private cluster really stopped (``pg_ctl stop -m fast``); the schema is one revision
behind (the newest migration downgraded) so the upgrade at return is real work; the
call is made over real TCP to the ``carecall run`` subprocess.
"""

from __future__ import annotations

import time

import pytest
from alembic import command
from sqlalchemy import select

from agi.simulator import CallScript, simulate_blocking
from ivr.db import alembic_config, current_heads, expected_heads
from ivr.journal import JournalApplied
from tests.callhelpers import R001_LINE, attendances
from tests.faults import OwnCluster, default_visits, running, settings_for, world

BEHIND = "m001"  # every revision after the features' merge is undone before the outage


@pytest.fixture(scope="module")
def cluster():
    c = OwnCluster()
    yield c
    c.destroy()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_server_started_with_postgresql_down_answers_journals_then_migrates_and_replays(cluster, tmp_path):
    url = cluster.new_database()
    settings = settings_for(url, tmp_path)
    factory = world(settings, *default_visits())
    command.downgrade(alembic_config(url), BEHIND)
    assert current_heads(url) == {BEHIND}
    cluster.stop()
    try:
        with running(tmp_path, url, journal_retry=0.5) as server:
            log = server.log()
            assert "database unavailable at start" in log, log[-3000:]
            started = time.monotonic()
            result = simulate_blocking("127.0.0.1", server.agi_port,
                                       CallScript(callerid=R001_LINE, digits=["1001", "1234"], uniqueid="cold.1"))
            took = time.monotonic() - started
            commands = [c for c, _ in result.transcript]
            assert result.completed, result
            assert 'STREAM FILE auth-thankyou ""' in commands  # journalled, then "thank you" and the time
            assert took < 10, took
            assert "journalled: database unavailable" in server.log()
            cluster.start()
            _wait(lambda: "journal replay: applied=1" in server.log(), 60, "the replay")
            text = server.log()
            assert "database schema upgraded" in text
            assert text.index("database schema upgraded") < text.index("journal replay: applied=1")
        assert current_heads(url) == expected_heads()
        [a] = attendances(factory)
        assert a.arrival_uniqueid == "cold.1" and a.arrival_verified
        with factory() as s:
            assert len(s.scalars(select(JournalApplied.event_id)).all()) == 1
    finally:
        cluster.ensure_running()
