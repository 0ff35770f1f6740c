"""A stuck database (issue 14): callers never wait in silence more than ~3 s at any step.

Another process holds the lock the check-in needs: on SQLite the write lock
(``BEGIN IMMEDIATE`` and nothing more), on PostgreSQL an ``ACCESS EXCLUSIVE`` lock on
the attendances and call records. A ``carecall run`` subprocess (effects in worker
processes, as deployed) takes real calls over TCP; the simulated Asterisk times every
gap between its reply and the server's next command. The lock is then released and
the journalled check-ins must be replayed, each once.
"""

from __future__ import annotations

import subprocess
import sys
import time

from sqlalchemy.engine import make_url

from agi.simulator import CallScript, simulate_blocking
from ivr.db import is_sqlite, normalise_url
from tests.callhelpers import R001_LINE, attendances, calls
from tests.faults import default_visits, running, settings_for, world

MAX_SILENCE = 3.5  # seconds: agi_effect_timeout (2.5 s) plus the step's own work on a loaded 2-core box

SQLITE_LOCK = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
c.execute("ROLLBACK")
"""

PG_LOCK = """
import sys
import psycopg
c = psycopg.connect(sys.argv[1])
c.execute("LOCK TABLE attendances, call_records IN ACCESS EXCLUSIVE MODE")
print("locked", flush=True)
sys.stdin.read()
c.rollback()
"""


def _hold_lock(db_url: str) -> subprocess.Popen[str]:
    url = make_url(normalise_url(db_url))
    if is_sqlite(db_url):
        code, target = SQLITE_LOCK, str(url.database)
    else:
        code, target = PG_LOCK, url.set(drivername="postgresql").render_as_string(hide_password=False)
    proc = subprocess.Popen([sys.executable, "-c", code, target], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


def test_calls_against_a_locked_database_never_wait_more_than_3_s_and_are_replayed(db_url, tmp_path):
    settings = settings_for(db_url, tmp_path)
    factory = world(settings, *default_visits())
    with running(tmp_path, db_url, journal_retry=0.5, extra_toml="agi_effect_timeout = 2.5\n") as server:
        # Warm: one call with the database free (worker processes started, statements prepared).
        ok = simulate_blocking("127.0.0.1", server.agi_port,
                               CallScript(callerid="020 8698 9933", digits=["1003", "3456"], uniqueid="free.1"))
        assert ok.completed and ok.said_time() is not None
        lock = _hold_lock(db_url)
        try:
            results = []
            for i, (line, worker, pin) in enumerate(((R001_LINE, "1001", "1234"), ("020 8698 9922", "1002", "2345"))):
                start = time.monotonic()
                r = simulate_blocking("127.0.0.1", server.agi_port,
                                      CallScript(callerid=line, digits=[worker, pin], uniqueid=f"stuck.{i}"))
                results.append((r, time.monotonic() - start))
        finally:
            _release(lock)
        for r, took in results:
            assert r.completed, r
            assert 'STREAM FILE auth-thankyou ""' in [c for c, _ in r.transcript]  # journalled, confirmed
            assert r.said_time() is not None
            assert max(r.think_times) <= MAX_SILENCE, (r.uniqueid, r.think_times)
            assert took < 8, took
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(attendances(factory)) < 3:
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "pending=0" not in server.log():
            time.sleep(0.2)
        log = server.log()
        assert "falling back to the journal" in log
        assert "journal replay: applied=" in log and "pending=0" in log, log[-3000:]
    arrivals = sorted(a.arrival_uniqueid for a in attendances(factory))
    assert arrivals == ["free.1", "stuck.0", "stuck.1"]  # each check-in once
    for uid in ("stuck.0", "stuck.1"):
        # One arrival record; a check-in that committed late (its lock freed within the busy
        # timeout) is met again by its journalled twin at replay: a "duplicate" record, nothing more.
        outcomes = sorted(c.outcome for c in calls(factory) if c.uniqueid == uid)
        assert outcomes in (["arrival"], ["arrival", "duplicate"]), (uid, outcomes)
