"""Group commit of the calls' database effects (agi/effects.py, CallStore.run_batch).

The batcher is tested with a pool we fire by hand, so which effects travel together is
exact, not a matter of timing; the store's batches run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, func, select
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from agi.effects import EffectBatcher, in_thread_pool, one_by_one
from agi.fastagi import FastAGIFactory
from agi.simulator import CallScript, FakeAsterisk
from ivr.callstore import CallStore, MatchWindows
from ivr.db import make_engine
from ivr.dialog import CallInfo, CheckedIn, CheckIn, DialogConfig, LookupLine, RecordCall
from ivr.models import Attendance, CallRecord
from ivr.pins import PinHasher, load_or_create_key
from tests.callhelpers import T0
from tests.faults import default_visits, world
from tests.test_lockout import _rid

MIN = dt.timedelta(minutes=1)
R001, R002 = "+442086989911", "+442086989922"


class HandPool:
    """``run_db`` whose work runs only when the test says so, in order."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Any, tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, fn: Any, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.waiting.append((fn, args, d))
        return d

    def runner(self, run_batch: Any) -> Any:
        """This pool as an EffectBatcher runner for ``run_batch``."""
        return in_thread_pool(self, run_batch)

    def batches(self) -> list[list[Any]]:
        return [list(args[0]) for _fn, args, _d in self.waiting]

    def run_next(self) -> None:
        fn, args, d = self.waiting.pop(0)
        try:
            result = fn(*args)
        except Exception as exc:
            d.errback(exc)
        else:
            d.callback(result)


def _results(ds: list[Deferred[Any]]) -> list[Any]:
    out: list[Any] = []
    for d in ds:
        d.addBoth(out.append)
    return out


# ---------------------------------------------------------------- the batcher


def test_a_quiet_server_sends_each_effect_at_once_and_a_busy_one_groups_what_queued_meanwhile():
    pool = HandPool()
    batcher = EffectBatcher(pool.runner(one_by_one(lambda e: e * 10)))
    first = batcher.submit(1)
    assert pool.batches() == [[1]]  # nothing in flight: no waiting for company
    rest = [batcher.submit(n) for n in (2, 3, 4)]
    assert pool.batches() == [[1]]  # the pool is busy: these queue
    got = _results([first, *rest])
    pool.run_next()
    assert got == [10] and pool.batches() == [[2, 3, 4]]  # one hand-off for all three
    pool.run_next()
    assert got == [10, 20, 30, 40] and pool.waiting == []
    assert (batcher.batches, batcher.effects, batcher.largest) == (2, 4, 3)


def test_one_failing_effect_fails_only_its_own_call():
    pool = HandPool()

    def run(effect: int) -> int:
        if effect == 3:
            raise ValueError("bad effect")
        return effect

    batcher = EffectBatcher(pool.runner(one_by_one(run)))
    batcher.submit(0)
    ds = [batcher.submit(n) for n in (2, 3, 4)]
    got = _results(ds)
    pool.run_next()
    pool.run_next()
    assert got[0] == 2 and got[2] == 4
    assert got[1].check(ValueError) and str(got[1].value) == "bad effect"


def test_a_broken_runner_fails_its_batch_and_the_next_batch_still_runs():
    pool = HandPool()
    calls: list[list[int]] = []

    def runner(effects: list[int]) -> list[tuple[bool, Any]]:
        calls.append(list(effects))
        if len(calls) == 2:
            raise RuntimeError("pool broke")
        return [(True, e) for e in effects]

    batcher = EffectBatcher(pool.runner(runner), max_batch=2)
    got = _results([batcher.submit(n) for n in range(5)])
    for _ in range(3):
        pool.run_next()
    assert calls == [[0], [1, 2], [3, 4]]  # max_batch splits the queue
    assert got[0] == 0 and got[3:] == [3, 4]
    assert all(f.check(RuntimeError) for f in got[1:3])


def test_batches_in_flight_are_bounded():
    pool = HandPool()
    batcher = EffectBatcher(pool.runner(one_by_one(lambda e: e)), max_inflight=2)
    for n in range(5):
        batcher.submit(n)
    assert pool.batches() == [[0], [1]]
    pool.run_next()
    assert pool.batches() == [[1], [2, 3, 4]]
    with pytest.raises(ValueError):
        EffectBatcher(pool.runner(one_by_one(lambda e: e)), max_batch=0)


# ---------------------------------------------------------------- the store's batches (both engines)


def _store(settings) -> CallStore:
    return CallStore(make_engine(settings.db_url), PinHasher(load_or_create_key(settings.secret_path)),
                     MatchWindows.from_settings(settings))


def _checkin(uid: str, line: str, number: str, pin: str, rids: tuple[int, ...], at: dt.datetime) -> CheckIn:
    return CheckIn(CallInfo(uid, "checkin", at, line), number, pin, rids, True, at, 0, False)


def _commits(store: CallStore) -> list[int]:
    seen: list[int] = []
    event.listen(store.engine, "commit", lambda conn: seen.append(1))
    return seen


def _batch_world(settings):
    """Three residents with a visit each, a store that counts its commits, and a call time."""
    factory = world(settings, *default_visits())
    store = _store(settings)
    return factory, store, _commits(store), (_rid(factory, "R001"), _rid(factory, "R002")), T0 + 5 * MIN


def test_a_batch_of_check_ins_is_one_transaction_and_each_sees_the_one_before(settings):
    factory, store, commits, (r1, r2), at = _batch_world(settings)
    out = store.run_batch([
        LookupLine(R001),
        _checkin("b.1", R001, "1001", "1234", (r1,), at),
        _checkin("b.2", R002, "1002", "2345", (r2,), at),
        # The same worker again, later, in the same batch: the departure of b.1's arrival.
        _checkin("b.3", R001, "1001", "1234", (r1,), at + 20 * MIN),
    ])
    assert len(commits) == 1
    assert all(ok for ok, _ in out)
    assert out[0][1] == (r1,)
    directions = [r.direction for _, r in out[1:]]
    assert directions == ["arrival", "arrival", "departure"]
    assert out[3][1].attendance_id == out[1][1].attendance_id
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Attendance)) == 2
        assert sorted(s.scalars(select(CallRecord.outcome))) == ["arrival", "arrival", "departure"]


def test_one_bad_effect_rolls_the_batch_back_and_the_others_are_logged_on_their_own(settings):
    factory, store, commits, (r1, r2), at = _batch_world(settings)
    broken = RecordCall(CallInfo("b.bad", "checkin", at, R001), None, "pin", at)  # type: ignore[arg-type]
    out = store.run_batch([
        _checkin("b.1", R001, "1001", "1234", (r1,), at),
        broken,  # outcome is NOT NULL: the database refuses it
        _checkin("b.2", R002, "1002", "2345", (r2,), at),
    ])
    assert [ok for ok, _ in out] == [True, False, True]
    assert isinstance(out[0][1], CheckedIn) and isinstance(out[2][1], CheckedIn)
    assert isinstance(out[1][1], store.engine.dialect.dbapi.IntegrityError)
    assert len(commits) == 2  # the batch rolled back; the two good ones committed alone
    with factory() as s:
        assert sorted(s.scalars(select(CallRecord.uniqueid))) == ["b.1", "b.2"]
        assert s.scalar(select(func.count()).select_from(Attendance)) == 2


def test_calls_waiting_on_a_busy_pool_are_recorded_in_one_batch(settings):
    """The wiring: real dialogs on the FastAGI protocol, the pool fired by hand."""
    factory = world(settings, *default_visits())
    store = _store(settings)
    pool = HandPool()
    clock = task.Clock()
    clock.advance((T0 + 5 * MIN).timestamp())
    agi = FastAGIFactory(DialogConfig.from_settings(settings), store, pool, clock)
    lines = {"1001": "02086989911", "1002": "02086989922", "1003": "02086989933"}
    pins = {"1001": "1234", "1002": "2345", "1003": "3456"}
    peers = []
    for n, (number, line) in enumerate(lines.items()):
        fake = FakeAsterisk(CallScript(callerid=line, digits=[number, pins[number]], uniqueid=f"w.{n}"))
        proto = agi.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(fake.environment())
        peers.append((proto, transport, fake))

    def converse() -> None:
        for proto, transport, fake in peers:
            while (out := transport.value()) and not transport.disconnecting:
                transport.clear()
                proto.dataReceived(fake.receive_data(out))

    converse()
    while pool.waiting:
        pool.run_next()
        converse()
    assert all(t.disconnecting for _, t, _ in peers)
    assert agi.outcomes == {"arrival": 3}
    # 3 line lookups + 3 check-ins = 6 effects; the first went alone, the rest grouped.
    assert agi.effects.effects == 6 and agi.effects.batches < 6
    with factory() as s:
        assert sorted(s.scalars(select(CallRecord.uniqueid))) == ["w.0", "w.1", "w.2"]


@pytest.mark.parametrize(("url", "setting", "pool", "expected"), [
    ("sqlite:///x.db", 0, 1, 1),
    ("postgresql://u@h/db", 0, 10, 2),
    ("postgresql://u@h/db", 6, 10, 6),
    ("postgresql://u@h/db", 6, 4, 4),  # never more batches than database threads
    ("sqlite:///x.db", 3, 1, 1),
])
def test_batches_in_flight_follow_the_engine_unless_set(url, setting, pool, expected, tmp_path):
    from agi.fastagi import batches_in_flight
    from carecall.config import load_settings

    s = load_settings(None, db_url=url, environ={}, agi_batches_in_flight=setting, data_dir=str(tmp_path))
    assert batches_in_flight(s, pool) == expected
