"""The check-in call end to end: real TCP FastAGI connections to the Twisted server.

Every test rings the in-process server on 127.0.0.1 (port 0) with the Asterisk
simulator and then reads what the database holds, on SQLite and PostgreSQL. Logged
times are exact because the server's clock is pinned (tests/callhelpers.py).
"""

from __future__ import annotations

import datetime as dt

import pytest
import pytest_twisted
from sqlalchemy import insert, select

from ivr.models import AttendanceKind, CallOutcome, Resident, ResidentLine, ReviewStatus, Visit
from tests.callhelpers import R001_LINE, T0, attendances, calls, raw_exchange, start_server
from tests.helpers import add_visits, factory_for, import_world

MIN = dt.timedelta(minutes=1)



@pytest.fixture
def world(settings):
    """Residents/workers from tests/data; each test adds its own visits."""
    factory = factory_for(settings)
    import_world(settings, factory)
    return factory


@pytest.fixture
def server(settings, world):
    srv = start_server(settings)
    yield srv
    pytest_twisted.blockon(srv.stop())



def visit_id(factory, ref):
    with factory() as s:
        return s.scalar(select(Visit.id).where(Visit.visit_ref == ref))


def resident_id(factory, ref):
    with factory() as s:
        return s.scalar(select(Resident.id).where(Resident.reference == ref))


@pytest_twisted.inlineCallbacks
def test_known_line_arrival_is_logged_against_the_workers_visit_and_confirmed(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 5 * MIN)
    result = yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    assert result.completed, result
    commands = [c for c, _ in result.transcript]
    assert commands == [
        "ANSWER",
        "GET DATA agent-user 6000 8",
        "GET DATA agent-pass 6000 4",
        'STREAM FILE agent-loginok ""',
        f'SAY TIME {int((T0 + 5 * MIN).timestamp())} ""',
        'STREAM FILE goodbye ""',
        "HANGUP",
    ]
    [att] = attendances(world)
    assert att.visit_id == visit_id(world, "V1") and att.kind == AttendanceKind.SCHEDULED
    assert att.arrival_at == T0 + 5 * MIN and att.arrival_method == "phone" and att.arrival_verified
    assert att.arrival_uniqueid == result.uniqueid and att.departure_at is None
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.ARRIVAL and rec.attendance_id == att.id and rec.visit_id == att.visit_id
    assert rec.caller_e164 == "+442086989911" and rec.location_verified and rec.review_status == ReviewStatus.NONE
    assert rec.worker_number_entered == "1001" and rec.failed_pin_attempts == 0
    kind, payload = server.events[-1]
    assert kind == "call" and payload["attendance_id"] == att.id and payload["outcome"] == "arrival"
    assert payload["visit_id"] == att.visit_id and payload["uniqueid"] == result.uniqueid


@pytest_twisted.inlineCallbacks
def test_withheld_number_asks_phone_code_and_arrival_is_not_location_verified(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    result = yield server.call(callerid=None, digits=["101", "1001", "1234"])
    assert result.completed
    assert result.transcript[1][0] == "GET DATA telephone-number 6000 8"
    [att] = attendances(world)
    assert att.visit_id == visit_id(world, "V1") and not att.arrival_verified
    [rec] = calls(world)
    assert rec.outcome == "arrival" and rec.caller_e164 is None and not rec.location_verified


@pytest_twisted.inlineCallbacks
def test_unregistered_number_with_wrong_codes_three_times_is_an_unknown_line_for_review(settings, world, server):
    result = yield server.call(callerid="020 7946 0000", digits=["999", "", "555"])
    assert result.completed
    prompts = [c for c, _ in result.transcript if c.startswith("GET DATA")]
    assert prompts == ["GET DATA telephone-number 6000 8"] + ["GET DATA telephone-number 6000 8"] * 2
    assert 'STREAM FILE im-sorry ""' in [c for c, _ in result.transcript]
    assert attendances(world) == []
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.UNKNOWN_LINE and rec.review_status == ReviewStatus.OPEN
    assert rec.caller_e164 == "+442079460000" and rec.stage == "phone_code"


@pytest_twisted.inlineCallbacks
def test_wrong_pin_three_times_hangs_up_and_records_the_failed_login(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    result = yield server.call(callerid=R001_LINE, digits=["1001", "9999", "1001", "9998", "1001", "9997"])
    assert result.completed
    commands = [c for c, _ in result.transcript]
    assert commands[-2:] == ['STREAM FILE agent-incorrect ""', "HANGUP"]
    assert commands.count('STREAM FILE agent-incorrect ""') == 3
    assert commands.count("GET DATA agent-user 6000 8") == 3
    assert "SAY TIME" not in " ".join(commands)
    assert attendances(world) == []
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.FAILED_LOGIN and rec.failed_pin_attempts == 3
    assert rec.worker_number_entered == "1001" and rec.caller_e164 == "+442086989911"
    assert rec.review_status == ReviewStatus.OPEN and rec.resident_id == resident_id(world, "R001")


@pytest_twisted.inlineCallbacks
def test_right_pin_on_third_try_logs_the_arrival_with_two_failures(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    result = yield server.call(callerid=R001_LINE, digits=["1001", "0000", "", "1001", "1234"])
    assert result.completed
    [rec] = calls(world)
    assert rec.outcome == "arrival" and rec.failed_pin_attempts == 2


@pytest_twisted.inlineCallbacks
def test_second_call_is_the_departure_and_says_its_own_time(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 2 * MIN)
    yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    server.at(T0 + 33 * MIN)
    result = yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    assert result.completed
    assert 'STREAM FILE agent-loggedoff ""' in [c for c, _ in result.transcript]
    assert result.said_time() == int((T0 + 33 * MIN).timestamp())
    [att] = attendances(world)
    assert att.arrival_at == T0 + 2 * MIN and att.departure_at == T0 + 33 * MIN
    assert att.departure_method == "phone" and att.departure_verified
    assert att.departure_uniqueid == result.uniqueid
    assert [c.outcome for c in calls(world)] == ["arrival", "departure"]


@pytest_twisted.inlineCallbacks
def test_arrival_older_than_12_hours_is_not_closed_by_a_new_call(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"),
               ("V2", "R001", T0 + dt.timedelta(hours=13), 30, "1001"))
    yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    server.at(T0 + dt.timedelta(hours=13))  # 13 h > open_attendance_hours (12)
    yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    first, second = attendances(world)
    assert first.departure_at is None and second.visit_id == visit_id(world, "V2")


@pytest_twisted.inlineCallbacks
def test_arrival_matches_the_workers_visit_nearest_in_time(settings, world, server):
    add_visits(settings, world, ("EARLY", "R001", T0 - dt.timedelta(hours=1), 30, "1001"),
               ("LATE", "R001", T0 + dt.timedelta(minutes=50), 30, "1001"))
    server.at(T0 + 30 * MIN)  # 60 min after EARLY ends (08:30), 20 min before LATE starts
    yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    [att] = attendances(world)
    assert att.visit_id == visit_id(world, "LATE")


@pytest_twisted.inlineCallbacks
def test_worker_not_scheduled_there_is_recorded_as_substitute_on_that_visit(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1002"))
    yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    [att] = attendances(world)
    assert att.kind == AttendanceKind.SUBSTITUTE and att.visit_id == visit_id(world, "V1")
    [rec] = calls(world)
    assert rec.review_status == ReviewStatus.NONE and rec.visit_id == att.visit_id


@pytest_twisted.inlineCallbacks
def test_no_visit_in_the_window_is_an_unscheduled_attendance_queued_for_review(settings, world, server):
    # A visit 5 h away is outside the -2 h … +2 h window.
    add_visits(settings, world, ("FAR", "R001", T0 + dt.timedelta(hours=5), 30, "1001"))
    result = yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    assert result.completed and 'STREAM FILE agent-loginok ""' in [c for c, _ in result.transcript]
    [att] = attendances(world)
    assert att.kind == AttendanceKind.UNSCHEDULED and att.visit_id is None
    assert att.resident_id == resident_id(world, "R001")
    [rec] = calls(world)
    assert rec.review_status == ReviewStatus.OPEN and rec.outcome == "arrival" and rec.visit_id is None


@pytest_twisted.inlineCallbacks
def test_cancelled_visit_is_not_matched(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    with world.begin() as s:
        s.get(Visit, visit_id(world, "V1")).status = "cancelled"
    yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    [att] = attendances(world)
    assert att.kind == AttendanceKind.UNSCHEDULED


@pytest_twisted.inlineCallbacks
def test_double_up_visit_takes_one_attendance_per_worker(settings, world, server):
    add_visits(settings, world, ("V2UP", "R001", T0, 30, "1001;1002"))
    a = yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    b = yield server.call(callerid=R001_LINE, digits=["1002", "2345"])
    assert a.completed and b.completed
    atts = attendances(world)
    vid = visit_id(world, "V2UP")
    assert [(x.visit_id, x.kind) for x in atts] == [(vid, "scheduled"), (vid, "scheduled")]
    assert len({x.worker_id for x in atts}) == 2


@pytest_twisted.inlineCallbacks
def test_household_line_matches_the_visit_of_either_resident(settings, world, server):
    # R003 moves in with R001: the same landline now belongs to both.
    with world.begin() as s:
        s.execute(insert(ResidentLine).values(resident_id=resident_id(world, "R003"), e164="+442086989911"))
    add_visits(settings, world, ("V3", "R003", T0, 30, "1003"))
    yield server.call(callerid=R001_LINE, digits=["1003", "3456"])
    [att] = attendances(world)
    assert att.visit_id == visit_id(world, "V3") and att.resident_id == resident_id(world, "R003")
    assert att.kind == AttendanceKind.SCHEDULED and att.arrival_verified


@pytest_twisted.inlineCallbacks
def test_same_uniqueid_twice_records_once_and_repeats_the_original_time(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 4 * MIN)
    first = yield server.call(callerid=R001_LINE, digits=["1001", "1234"], uniqueid="1741597200.42")
    server.at(T0 + 9 * MIN)
    again = yield server.call(callerid=R001_LINE, digits=["1001", "1234"], uniqueid="1741597200.42")
    assert again.completed
    assert again.said_time() == first.said_time() == int((T0 + 4 * MIN).timestamp())
    assert len(attendances(world)) == 1
    assert [c.outcome for c in calls(world)] == ["arrival", CallOutcome.DUPLICATE]


@pytest.mark.parametrize(
    ("mode", "after", "stage"),
    [
        ("hangup", 3, "pin"),  # 200 result=-1 + HANGUP during the PIN's GET DATA
        ("line", 2, "worker_number"),  # a bare HANGUP line instead of the reply
        ("dead", 3, "pin"),  # 511 from then on
        ("close", 4, "confirming"),  # socket closed during the confirmation (already recorded)
        ("close", 2, "worker_number"),  # socket closed while asking the worker number
    ],
)
@pytest_twisted.inlineCallbacks
def test_hangup_mid_dialog_leaves_no_half_record_but_says_how_far_it_got(settings, world, server, mode, after,
                                                                         stage):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    result = yield server.call(callerid=R001_LINE, digits=["1001", "1234"], hangup_after=after, hangup_mode=mode)
    assert not result.server_hung_up
    yield _settled(server)
    records = calls(world)
    if stage == "confirming":  # the arrival was recorded before the confirmation began
        assert [r.outcome for r in records] == ["arrival"] and len(attendances(world)) == 1
    else:
        assert attendances(world) == []
        [rec] = records
        assert (rec.outcome, rec.stage) == (CallOutcome.HANGUP, stage)
        assert rec.caller_e164 == "+442086989911"


def _settled(server):
    """Wait until the server has finished every connection (the record is written after close)."""
    from twisted.internet.defer import Deferred

    d = Deferred()

    def poll(n=0):
        if server.factory.active == 0 or n > 400:
            server.reactor.callLater(0.02, d.callback, None)
        else:
            server.reactor.callLater(0.01, poll, n + 1)

    poll()
    return d


@pytest.mark.parametrize(
    "garbage",
    [
        b"this is not agi\n\n",  # not an environment line
        b"agi_request: agi://x/checkin\n" + b"x" * 20000,  # a huge line
        b"\n",  # missing environment
        b"agi_network: yes\nagi_network_script: payroll\nagi_request: agi://h/payroll\nagi_uniqueid: 9.1\n\n",
    ],
    ids=["garbage", "huge-line", "missing-environment", "unknown-path"],
)
@pytest_twisted.inlineCallbacks
def test_bad_input_is_hung_up_and_other_calls_still_work(settings, world, server, garbage):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    reply = yield raw_exchange(server.reactor, server.port, garbage)
    assert reply.startswith(b"HANGUP"), reply  # a clean hang-up, then the server closed
    result = yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    assert result.completed and len(attendances(world)) == 1
    yield _settled(server)
    outcomes = [r.outcome for r in calls(world)]
    assert outcomes[-1] == "arrival"
    if garbage.endswith(b"9.1\n\n"):
        assert outcomes == ["error", "arrival"]


@pytest_twisted.inlineCallbacks
def test_many_concurrent_calls_each_record_once(settings, world, server):
    from twisted.internet.defer import gatherResults

    from ivr.lockout import LockoutPolicy

    # 60 wrong PINs on one line would be slowed down by the PIN-guessing lockout
    # (tests/test_lockout.py); this test is about concurrency, so switch it off here.
    server.factory.store.lockout = LockoutPolicy(free_failures=10**6, pair_after=10**6, worker_alert_after=10**6)
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001;1002"), ("V2", "R002", T0, 30, "1003"))
    results = yield gatherResults([
        server.call(callerid=R001_LINE, digits=["1001", "1234"]),
        server.call(callerid=R001_LINE, digits=["1002", "2345"]),
        server.call(callerid="020 8698 9922", digits=["1003", "3456"]),
        server.call(callerid=None, digits=["104", "1004", "4567"]),
    ] + [server.call(callerid=R001_LINE, digits=["1001", "0000"] * 3) for _ in range(20)])
    assert all(r.completed for r in results)
    assert len(attendances(world)) == 4
    outcomes = sorted(c.outcome for c in calls(world))
    assert outcomes.count("failed_login") == 20 and outcomes.count("arrival") == 4
