"""``kill -9`` of ``carecall run`` at points of a call: nothing half-written, nothing falsely confirmed.

Each test starts the real server as a subprocess, drives a call over TCP with the
Asterisk simulator, stops answering at a chosen command and SIGKILLs the server there,
then reads the database (and, after a restart, what the journal recovered).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from agi.simulator import CallScript
from tests.callhelpers import attendances, calls
from tests.faults import ROOT, OwnCluster, default_visits, ring_until, settings_for, start_process, world

R001 = "02086989911"


@pytest.fixture(scope="module")
def cluster():
    c = OwnCluster()
    yield c
    c.destroy()


class Db:
    """One engine's database, with a way to make it refuse writes and to mend it."""

    def __init__(self, kind: str, url: str, cluster: OwnCluster | None) -> None:
        self.kind, self.url, self.cluster = kind, url, cluster

    def break_(self, factory) -> None:
        if self.kind == "postgresql":
            self.cluster.stop()
            return
        with factory.kw["bind"].begin() as conn:
            for table in ("attendances", "call_records"):
                conn.execute(text(f"CREATE TRIGGER fault_{table} BEFORE INSERT ON {table} "
                                  "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"))

    def mend(self, factory) -> None:
        if self.kind == "postgresql":
            self.cluster.start()
            return
        with factory.kw["bind"].begin() as conn:
            for table in ("attendances", "call_records"):
                conn.execute(text(f"DROP TRIGGER fault_{table}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path, sqlite_template):
    if request.param == "sqlite":
        path = tmp_path / "carecall.db"
        shutil.copyfile(sqlite_template, path)
        return Db("sqlite", f"sqlite:///{path}", None)
    cluster = request.getfixturevalue("cluster")
    return Db("postgresql", cluster.new_database(), cluster)


def _consistent(factory) -> None:
    """No half-record: every attendance has its call record and every check-in record its attendance."""
    atts = {a.id: a for a in attendances(factory)}
    recs = calls(factory)
    linked = {r.attendance_id for r in recs if r.outcome in ("arrival", "departure")}
    assert linked == set(atts), (linked, set(atts))


def _poll(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_kill_9_before_pin_reply_and_after_confirmation(db, tmp_path):
    settings = settings_for(db.url, tmp_path)
    factory = world(settings, *default_visits())
    server = start_process(tmp_path, db.url)
    try:
        # 1) killed while the worker types the PIN: nothing at all is recorded.
        partial, sock = ring_until(server.agi_port, CallScript(callerid=R001, digits=["1001", "1234"],
                                                               uniqueid="crash.pin"), stop_at="GET DATA agent-pass")
        assert sock is not None, partial
        server.kill()
        sock.close()
        assert calls(factory) == [] and attendances(factory) == []

        # 2) killed right after the confirmation started: the check-in is already committed.
        server = start_process(tmp_path, db.url)
        confirmed, sock = ring_until(server.agi_port, CallScript(callerid=R001, digits=["1001", "1234"],
                                                                 uniqueid="crash.confirm"),
                                     stop_at="STREAM FILE agent-loginok")
        assert sock is not None, confirmed
        server.kill()
        sock.close()
        [att] = attendances(factory)
        assert att.arrival_uniqueid == "crash.confirm"
        assert [c.outcome for c in calls(factory)] == ["arrival"]

        # 3) killed straight after the PIN reply, at varying moments inside the transaction.
        for i, pause in enumerate((0.0, 0.003, 0.01)):
            server = start_process(tmp_path, db.url)
            partial, sock = ring_until(server.agi_port, CallScript(callerid="02086989933", digits=["1003"],
                                                                   uniqueid=f"crash.tx{i}"),
                                       stop_at="GET DATA agent-pass")
            assert sock is not None
            sock.sendall(b"200 result=3456\n")
            time.sleep(pause)
            server.kill()
            sock.close()
            _consistent(factory)
    finally:
        server.kill()
    _consistent(factory)


def test_kill_9_after_journalled_confirmation_is_recovered_on_restart(db, tmp_path):
    settings = settings_for(db.url, tmp_path)
    factory = world(settings, *default_visits())
    server = start_process(tmp_path, db.url)
    try:
        db.break_(factory)
        before = dt.datetime.now(dt.UTC).replace(microsecond=0)
        result, sock = ring_until(server.agi_port, CallScript(callerid=R001, digits=["1001", "1234"],
                                                              uniqueid="crash.journal"), stop_at="SAY TIME")
        assert sock is not None, result
        said = int(result.transcript[-1][0].split()[2])
        # The confirmation ("thank you", then the time) comes only after the fsync.
        assert [c for c, _ in result.transcript][-2] == 'STREAM FILE auth-thankyou ""'
        server.kill()
        sock.close()
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        cfg = tmp_path / "server.toml"
        shown = subprocess.run([sys.executable, "-m", "carecall", "--db", db.url, "--config", str(cfg), "journal",
                                "show"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert "1 event(s) pending" in shown.stdout and "crash.journal" in shown.stdout, shown
        assert "1234" not in shown.stdout.replace("crash.journal", "")  # never the PIN
        db.mend(factory)
        server = start_process(tmp_path, db.url)  # replays at start, then every 0.5 s
        assert _poll(lambda: len(attendances(factory)) == 1), server.log()[-3000:]
        [att] = attendances(factory)
        assert att.arrival_uniqueid == "crash.journal" and int(att.arrival_at.timestamp()) == said
        assert att.arrival_at >= before
        assert _poll(lambda: "pending" in server.log() and "applied=1" in server.log())
    finally:
        server.kill()
    server = start_process(tmp_path, db.url)  # once more: nothing is replayed twice
    try:
        time.sleep(1.0)
    finally:
        server.kill()
    assert len(attendances(factory)) == 1 and [c.outcome for c in calls(factory)] == ["arrival"]
    _consistent(factory)
