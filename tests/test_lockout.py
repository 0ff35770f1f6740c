"""PIN guessing: growing delay, a lock on the (worker, line) pair, the worker-wide budgets.

Policy figures under test (defaults, docs/reliability.md): 3 free failures in 60 min,
then 2, 4, 8, 16, 30, 30 … s before "incorrect"; the 10th failure of one worker number
on one line locks that pair for 30 min (never on a *trusted* line: a landline of a home
where the worker has a visit now); 10 failures of one number over any lines guard it for
60 min on every untrusted line, 5 on lines that are not a known landline (withheld, or an
unknown caller ID with a phone code) guard it on those. The parallel and spoofed-landline
attacks over real FastAGI calls are in tests/test_lockout_budget.py.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from twisted.internet import task
from twisted.internet.defer import maybeDeferred
from twisted.internet.testing import StringTransport

from agi.fastagi import FastAGIFactory
from agi.simulator import CallScript, FakeAsterisk
from ivr.callstore import CallStore, MatchWindows
from ivr.db import make_engine
from ivr.dialog import CallInfo, CheckedIn, CheckIn, DialogConfig, LoginFailed
from ivr.lockout import LockoutPolicy, locked_until
from ivr.models import CallRecord, LoginFailure
from ivr.pins import PinHasher, load_or_create_key
from tests.callhelpers import T0
from tests.faults import default_visits, world
from tests.helpers import factory_for

MIN = dt.timedelta(minutes=1)
R001 = "+442086989911"


def test_delay_grows_after_three_free_failures_and_is_capped():
    p = LockoutPolicy()
    # failures 1..3 free; 4th = 2 s, then doubling: 4, 8, 16, then the 30 s cap.
    assert [p.delay(n) for n in range(1, 10)] == [0, 0, 0, 2, 4, 8, 16, 30, 30]
    v = p.decide(T0, pair=10, line=10, worker=10)
    assert v.lock_until == T0 + dt.timedelta(minutes=30) and v.alert_worker and v.delay == 30
    v = p.decide(T0, pair=1, line=1, worker=10)  # one failure per line, many lines: no lock
    assert v.lock_until is None and v.alert_worker and v.delay == 30


def _store(settings) -> CallStore:
    return CallStore(make_engine(settings.db_url), PinHasher(load_or_create_key(settings.secret_path)),
                     MatchWindows.from_settings(settings), LockoutPolicy.from_settings(settings))


def _try(store: CallStore, line: str | None, number: str, pin: str, at: dt.datetime, uid: str,
         rids: tuple[int, ...], final: bool = False):
    call = CallInfo(uid, "checkin", at, line)
    return store.check_in(CheckIn(call, number, pin, rids, line is not None, at, 0, final))


def _rid(factory, ref: str) -> int:
    from ivr.models import Resident

    with factory() as s:
        return s.scalar(select(Resident.id).where(Resident.reference == ref))


def test_pair_is_locked_after_ten_failures_but_the_worker_still_logs_in_at_the_home_they_visit(settings):
    factory = world(settings, *default_visits())
    store = _store(settings)
    r1, r2 = _rid(factory, "R001"), _rid(factory, "R002")
    r2_line = "+442086989922"  # 1001 has no visit at R002: an untrusted line for them
    delays = []
    for i in range(10):
        result = _try(store, r2_line, "1001", "0000", T0 + i * MIN, f"g{i}", (r2,))
        assert isinstance(result, LoginFailed)
        delays.append(result.delay)
    assert delays == [0, 0, 0, 2, 4, 8, 16, 30, 30, 30]
    assert result.locked and result.call_record_id is not None  # the lock ends the call, recorded
    with factory.kw["bind"].connect() as conn:
        assert locked_until(conn, "1001", r2_line) == T0 + 9 * MIN + dt.timedelta(minutes=30)
        # The 10th failure also spent the worker budget: guarded on every untrusted line for 60 min.
        assert locked_until(conn, "1001", "*") == T0 + 9 * MIN + dt.timedelta(minutes=60)
    # The right PIN on the locked line is refused, without a delay on the refusal path …
    refused = _try(store, r2_line, "1001", "1234", T0 + 12 * MIN, "right.locked", (r2,))
    assert isinstance(refused, LoginFailed) and refused.locked
    # … but the worker logs in at the home where they have a visit now, and another worker on that line.
    ok = _try(store, R001, "1001", "1234", T0 + 12 * MIN, "right.at.visit", (r1,))
    assert isinstance(ok, CheckedIn)
    other = _try(store, r2_line, "1002", "2345", T0 + 13 * MIN, "other.worker", (r2,))
    assert isinstance(other, CheckedIn)
    # After the guard (60 min from the 10th failure) the right PIN works on that line again.
    later = _try(store, r2_line, "1001", "1234", T0 + 9 * MIN + dt.timedelta(minutes=61), "after.lock", (r2,))
    assert isinstance(later, CheckedIn)
    with factory() as s:
        details = list(s.scalars(select(CallRecord.detail).where(CallRecord.outcome == "failed_login")))
    assert any("locked" in d for d in details)


def test_failures_on_the_lines_of_the_home_with_a_visit_now_slow_the_number_down_but_never_lock_it(settings):
    factory = world(settings, *default_visits())
    store = _store(settings)
    r1 = _rid(factory, "R001")
    for i in range(12):  # a guesser on R001's lines, where 1001 has a visit now (trusted lines)
        result = _try(store, f"+44207946{i:04d}", "1001", "0000", T0 + i * MIN, f"spoof{i}", (r1,))
        assert isinstance(result, LoginFailed) and not result.locked
    assert result.delay == 30  # the 12th failure of this number: capped delay
    ok = _try(store, R001, "1001", "1234", T0 + 13 * MIN, "real.worker", (r1,))
    assert isinstance(ok, CheckedIn)  # no global lock: the real worker is not shut out
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(LoginFailure)) == 12
        # From the 10th failure of this number within the hour: one alert for the office (raised once).
        from scheduler.models import Alert

        alerts = s.execute(select(Alert.kind, Alert.dedupe_key)).all()
    assert alerts == [("failed_login", f"failed_login:worker:1001:{T0:%Y%m%d%H}")]


def test_withheld_callers_share_the_small_unknown_line_budget_but_the_home_landlines_still_work(settings):
    factory = world(settings, *default_visits())
    store = _store(settings)
    r1, r2 = _rid(factory, "R001"), _rid(factory, "R002")
    results = [_try(store, None, "1002", "0000", T0 + i * MIN, f"w{i}", (r1,)) for i in range(8)]
    assert [r.locked for r in results] == [False] * 4 + [True] * 4  # the 5th spends the budget of 5
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(LoginFailure)) == 5  # refusals check no PIN
    refused = _try(store, None, "1002", "2345", T0 + 11 * MIN, "withheld.other.home", (r2,))
    assert isinstance(refused, LoginFailed) and refused.locked  # every withheld / unknown line shares it
    # Known landlines still work: R002's (1002's visit now) and R001's (below the all-lines budget of 10).
    ok = _try(store, "+442086989922", "1002", "2345", T0 + 12 * MIN, "from.r002", (r2,))
    assert isinstance(ok, CheckedIn)
    ok = _try(store, R001, "1002", "2345", T0 + 13 * MIN, "from.r001", (r1,))
    assert isinstance(ok, CheckedIn)


def test_the_delay_is_a_reactor_timer_not_a_blocked_thread(settings):
    """With task.Clock: after the 4th failure on a line the next prompt waits 2 s, other calls go on."""
    world(settings, *default_visits())
    store = _store(settings)
    r1 = _rid(factory_for(settings), "R001")
    for i in range(3):  # three earlier failures on this line (another call)
        _try(store, R001, "1001", "0000", T0 + i * MIN, f"early{i}", (r1,))
    clock = task.Clock()
    clock.advance(T0.timestamp() + 5 * 60)
    factory = FastAGIFactory(DialogConfig.from_settings(settings), store, lambda fn, *a: maybeDeferred(fn, *a),
                             clock)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    fake = FakeAsterisk(CallScript(callerid="02086989911", digits=["1001", "0000", "1001", "1234"],
                                   uniqueid="slow.1"))
    proto.dataReceived(fake.environment())

    def pump():
        while True:
            out = transport.value()
            transport.clear()
            if not out:
                return
            reply = fake.receive_data(out)
            if reply:
                proto.dataReceived(reply)

    pump()
    sent = [c for c, _ in fake.transcript]
    assert sent[-1] == "GET DATA agent-pass 6000 4"  # the wrong PIN was answered …
    assert fake.commands == 3  # … and the server is waiting: no "incorrect" prompt yet
    assert [round(c.getTime() - clock.seconds(), 3) for c in clock.getDelayedCalls()
            if c.func.__name__ == "_wait_done"] == [2.0]
    clock.advance(1.9)
    pump()
    assert fake.commands == 3
    clock.advance(0.1)
    pump()
    sent = [c for c, _ in fake.transcript]
    assert sent[3:5] == ['STREAM FILE agent-incorrect ""', "GET DATA agent-user 6000 8"]
    assert fake.server_hung_up and sent[-1] == "HANGUP"  # right PIN on the 2nd try: logged
    assert 'STREAM FILE agent-loginok ""' in sent
