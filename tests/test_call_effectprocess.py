"""Call effects in worker processes (agi/effectprocess.py, agi/effectworker.py): real TCP calls,
a real worker process on each engine, the worker killed mid-run and restarted."""

from __future__ import annotations

import datetime as dt
import os
import signal

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults

from agi.effectprocess import EffectProcessGone, EffectProcessPool
from agi.effectworker import EffectError, frame, portable, read_frame
from ivr.dialog import CallInfo, LookupLine, RecordCall
from tests.callhelpers import R001_LINE, T0, attendances, calls, start_server
from tests.faults import default_visits, world

MIN = dt.timedelta(minutes=1)


def _sleep(reactor, seconds: float) -> Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


@pytest.fixture
def factory(settings):
    return world(settings, *default_visits())


@pytest.fixture
def server(settings, factory):
    srv = start_server(settings, effects="process")
    yield srv
    pytest_twisted.blockon(srv.stop())


@pytest_twisted.inlineCallbacks
def test_arrival_departure_and_duplicate_through_the_worker_process(settings, factory, server):
    server.at(T0 + 5 * MIN)
    first = yield server.call(callerid=R001_LINE, digits=["1001", "1234"], uniqueid="p.1")
    again = yield server.call(callerid=R001_LINE, digits=["1001", "1234"], uniqueid="p.1")
    server.at(T0 + 40 * MIN)
    leave = yield server.call(callerid=R001_LINE, digits=["1001", "1234"], uniqueid="p.2")
    wrong = yield server.call(callerid=R001_LINE, digits=["1002", "0000"] * 3, uniqueid="p.3")
    assert all(r.completed for r in (first, again, leave, wrong))
    [att] = attendances(factory)
    assert att.arrival_at == T0 + 5 * MIN and att.departure_at == T0 + 40 * MIN
    assert [c.outcome for c in calls(factory)] == ["arrival", "duplicate", "departure", "failed_login"]
    pool = server.workers
    assert pool is not None and all(p.running and p.started == 1 for p in pool.processes)
    assert server.factory.effects.effects >= 4


@pytest_twisted.inlineCallbacks
def test_a_killed_worker_fails_only_its_batch_and_is_started_again(settings, factory, server):
    from twisted.internet import reactor

    worker = server.workers.processes[0]
    os.kill(worker.transport.pid, signal.SIGKILL)
    for _ in range(100):  # the reactor notices the exit
        if not worker.running:
            break
        yield _sleep(reactor, 0.05)
    assert not worker.running
    # Meanwhile a check-in cannot reach the database: it is journalled, the worker hears "logged".
    server.at(T0 + 5 * MIN)
    during = yield server.call(callerid=R001_LINE, digits=["1001", "1234"], uniqueid="k.1")
    assert during.completed
    assert attendances(factory) == []
    for _ in range(100):  # restarted after a second
        if worker.running and worker.started == 2:
            break
        yield _sleep(reactor, 0.05)
    assert worker.running and worker.started == 2
    # k.1 waits in the journal; the replay (every journal_retry_seconds; here at once) applies it.
    assert server.runtime.journal.pending == 1
    report = yield server.factory.replay_journal()
    assert report.applied == 1 and server.runtime.journal.pending == 0
    after = yield server.call(callerid="020 8698 9922", digits=["1002", "2345"], uniqueid="k.2")
    assert after.completed
    assert [a.arrival_uniqueid for a in attendances(factory)] == ["k.1", "k.2"]
    assert [c.outcome for c in calls(factory)] == ["arrival", "arrival"]


@pytest_twisted.inlineCallbacks
def test_concurrent_calls_share_batches_in_the_worker(settings, factory, server):
    server.at(T0 + 5 * MIN)
    lines = {"1001": R001_LINE, "1002": "020 8698 9922", "1003": "020 8698 9933"}
    pins = {"1001": "1234", "1002": "2345", "1003": "3456"}
    results = yield gatherResults([server.call(callerid=lines[n], digits=[n, pins[n]], uniqueid=f"c.{n}")
                                   for n in lines])
    assert all(r.completed for r in results)
    assert sorted(a.arrival_uniqueid for a in attendances(factory)) == ["c.1001", "c.1002", "c.1003"]


def test_a_stopped_pool_refuses_batches_at_once(settings):
    from twisted.internet import reactor

    pool = EffectProcessPool(reactor, settings, 2)
    d = pool.run_batch([LookupLine("+442086989911")])
    failures = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(EffectProcessGone)


def test_frames_and_exceptions_cross_the_pipe(tmp_path):
    call = CallInfo("u.1", "checkin", T0, "+442086989911")
    effect = RecordCall(call, "hangup", "pin", T0)
    path = tmp_path / "pipe"
    path.write_bytes(frame((7, [effect])) + frame(("x", None)))
    with path.open("rb") as f:
        assert read_frame(f) == (7, [effect])
        assert read_frame(f) == ("x", None)
        with pytest.raises(EOFError):
            read_frame(f)

    class Unpicklable(Exception):
        def __reduce__(self):
            raise TypeError("no")

    out = portable([(True, 1), (False, ValueError("kept")), (False, Unpicklable("secret 02086989911"))])
    assert out[0] == (True, 1) and str(out[1][1]) == "kept"
    assert isinstance(out[2][1], EffectError) and str(out[2][1]) == "Unpicklable"  # the type, never the text
