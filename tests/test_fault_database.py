"""Database down: calls complete on the journal and are replayed once, in order, at their original times.

PostgreSQL: a private cluster really stopped (``pg_ctl stop -m fast``) and started by
the test. SQLite: writes made to fail by a trigger that aborts every insert/update of
attendances and call records (a real failing write through the real engine), then
dropped. Calls go over real TCP to the in-process FastAGI server.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import pytest_twisted
from sqlalchemy import func, select, text

from ivr import journal as journal_mod
from ivr.journal import JournalApplied
from ivr.models import CallRecord
from tests.callhelpers import R001_LINE, T0, attendances, calls, start_server
from tests.faults import OwnCluster, default_visits, settings_for, world

MIN = dt.timedelta(minutes=1)
R002_LINE = "020 8698 9922"


@pytest.fixture(scope="module")
def cluster():
    c = OwnCluster()
    yield c
    c.destroy()


def _said(result) -> int | None:
    return result.said_time()


def _stamp(t: dt.datetime) -> int:
    return int(t.timestamp())


@pytest_twisted.inlineCallbacks
def test_postgresql_stopped_calls_are_journalled_confirmed_and_replayed_once_in_order(cluster, tmp_path):
    settings = settings_for(cluster.new_database(), tmp_path)
    factory = world(settings, *default_visits())
    server = start_server(settings)
    try:
        server.at(T0 + 2 * MIN)
        live = yield server.call(callerid=R001_LINE, digits=["1001", "1234"], uniqueid="live.1")
        assert live.completed and _said(live) == _stamp(T0 + 2 * MIN)

        cluster.stop()
        # 1) the departure of the live arrival; the line lookup itself fails
        server.at(T0 + 30 * MIN)
        dep = yield server.call(callerid=R001_LINE, digits=["1001", "1234"], uniqueid="down.1")
        # 2) withheld caller ID: the phone-code lookup fails; the code is journalled
        server.at(T0 + 31 * MIN)
        code = yield server.call(callerid=None, digits=["102", "1002", "2345"], uniqueid="down.2")
        # 3) a wrong PIN cannot be checked offline: journalled, refused at replay
        server.at(T0 + 32 * MIN)
        wrong = yield server.call(callerid="020 8698 9933", digits=["1003", "9999"], uniqueid="down.3")
        # 4) a caller who hangs up during the PIN: the call record itself is journalled
        server.at(T0 + 33 * MIN)
        gone = yield server.call(callerid="020 8698 9933", digits=["1003"], hangup_after=3, uniqueid="down.4")
        for r, t in ((dep, 30), (code, 31), (wrong, 32)):
            assert r.completed, r
            commands = [c for c, _ in r.transcript]
            assert 'STREAM FILE auth-thankyou ""' in commands  # "thank you", then the time
            assert _said(r) == _stamp(T0 + t * MIN)
        assert not gone.server_hung_up

        # The journal is on disk, fsynced, with the PIN only as its keyed hash.
        status = journal_mod.status(settings)
        assert status["pending"] == 4 and status["on_journal"]
        assert status["oldest_at"] == (T0 + 30 * MIN).isoformat()
        raw = (journal_mod.directory_for(settings) / "journal.jsonl").read_text()
        lines = [json.loads(x)["event"] for x in raw.splitlines()]
        assert [e["uniqueid"] for e in lines] == ["down.1", "down.2", "down.3", "down.4"]
        assert [e["kind"] for e in lines] == ["checkin", "checkin", "checkin", "call"]
        assert lines[0]["data"]["pin_hash"] == server.runtime.hasher.hash("1001", "1234")
        assert lines[1]["data"]["phone_code"] == "102" and lines[1]["data"]["call"]["caller_e164"] is None
        for pin in ("1234", "2345", "9999"):
            assert f'"{pin}"' not in raw and f":{pin}," not in raw

        cluster.start()
        # Back up, but four events wait: a new check-in queues behind them (journalled too).
        server.at(T0 + 40 * MIN)
        late = yield server.call(callerid="020 8698 9933", digits=["1003", "3456"], uniqueid="after.1")
        assert late.completed and 'STREAM FILE auth-thankyou ""' in [c for c, _ in late.transcript]
        report = yield server.factory.replay_journal()
        assert (report.applied, report.skipped, report.torn, report.failed) == (5, 0, 0, [])
        assert report.outcomes == {"departure": 1, "arrival": 2, "failed_login": 1, "hangup": 1}
        again = yield server.factory.replay_journal()
        assert again is None  # nothing pending
        assert journal_mod.status(settings)["pending"] == 0
    finally:
        yield server.stop()

    [a1, a2, a3] = attendances(factory)
    assert (a1.arrival_uniqueid, a1.arrival_at) == ("live.1", T0 + 2 * MIN)
    assert (a1.departure_uniqueid, a1.departure_at) == ("down.1", T0 + 30 * MIN)  # original time
    assert a1.departure_verified  # caller ID resolved at replay
    assert (a2.arrival_uniqueid, a2.arrival_at, a2.arrival_verified) == ("down.2", T0 + 31 * MIN, False)
    assert (a3.arrival_uniqueid, a3.arrival_at) == ("after.1", T0 + 40 * MIN)
    recs = {c.uniqueid: c for c in calls(factory)}
    assert recs["down.3"].outcome == "failed_login" and recs["down.3"].review_status == "open"
    assert recs["down.4"].outcome == "hangup" and recs["down.4"].stage == "pin"
    assert recs["down.1"].outcome == "departure" and recs["down.1"].ended_at == T0 + 30 * MIN
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(JournalApplied)) == 5


_FAIL_WRITES = [
    f"CREATE TRIGGER fault_{table}_{op} BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    for table in ("attendances", "call_records") for op in ("INSERT", "UPDATE")
]


@pytest_twisted.inlineCallbacks
def test_sqlite_failing_write_is_journalled_and_replayed_when_writes_work_again(sqlite_template, tmp_path):
    import shutil

    path = tmp_path / "carecall.db"
    shutil.copyfile(sqlite_template, path)
    settings = settings_for(f"sqlite:///{path}", tmp_path)
    factory = world(settings, *default_visits())
    server = start_server(settings)
    try:
        with factory.kw["bind"].begin() as conn:
            for sql in _FAIL_WRITES:
                conn.execute(text(sql))
        server.at(T0 + 3 * MIN)
        r = yield server.call(callerid=R002_LINE, digits=["1002", "2345"], uniqueid="ro.1")
        assert r.completed and _said(r) == _stamp(T0 + 3 * MIN)
        assert calls(factory) == [] and attendances(factory) == []
        assert journal_mod.status(settings)["pending"] == 1
        with factory.kw["bind"].begin() as conn:
            for sql in _FAIL_WRITES:
                conn.execute(text("DROP TRIGGER " + sql.split()[2]))
        report = yield server.factory.replay_journal()
        assert report.applied == 1
    finally:
        yield server.stop()
    [att] = attendances(factory)
    assert (att.arrival_uniqueid, att.arrival_at, att.arrival_verified) == ("ro.1", T0 + 3 * MIN, True)
    with factory() as s:
        assert s.scalar(select(CallRecord.outcome)) == "arrival"


@pytest_twisted.inlineCallbacks
def test_journal_that_cannot_be_written_gives_no_confirmation(sqlite_template, tmp_path):
    """Never "logged" for something that is not durable: journal append fails → no SAY TIME."""
    import shutil

    path = tmp_path / "carecall.db"
    shutil.copyfile(sqlite_template, path)
    settings = settings_for(f"sqlite:///{path}", tmp_path)
    factory = world(settings, *default_visits())
    journal_dir = journal_mod.directory_for(settings)
    journal_dir.parent.mkdir(parents=True, exist_ok=True)
    journal_dir.write_text("a file where the journal directory should be")  # mkdir/open will fail
    server = start_server(settings)
    try:
        with factory.kw["bind"].begin() as conn:
            for sql in _FAIL_WRITES:
                conn.execute(text(sql))
        r = yield server.call(callerid=R002_LINE, digits=["1002", "2345"], uniqueid="nojournal.1")
    finally:
        yield server.stop()
    assert r.said_time() is None and r.server_closed and r.error is None
    assert not any(c.startswith("STREAM FILE auth-thankyou") for c, _ in r.transcript)
