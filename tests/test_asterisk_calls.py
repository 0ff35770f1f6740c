"""Calls through a real Asterisk running the shipped ``asterisk-config/`` (tests/asterisk_rig.py).

A Local channel enters ``[carecall-inbound]`` exactly as a carrier's call would, with a
chosen caller ID; keys are pressed (received DTMF) once the ``GET DATA`` that reads them
is running; the in-process FastAGI server (real reactor, real database) records the
call. What is asserted is what a site sees: the AGI commands Asterisk ran, the
``AGISTATUS`` the dialplan got, and the rows in the database.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import pytest_twisted

from ivr.models import AttendanceKind, CallOutcome
from tests.asterisk_fixtures import in_thread
from tests.callhelpers import T0, attendances, calls, start_server
from tests.helpers import add_visits, factory_for, import_world

pytestmark = pytest.mark.asterisk
MIN = dt.timedelta(minutes=1)
CHECKIN = "08001234567"
NOREPLY = "08001234568"
R001 = "02086989911"


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    return factory


@pytest.fixture
def server(settings, world):
    srv = start_server(settings)
    yield srv
    pytest_twisted.blockon(srv.stop())


def key_in(call, digits_by_prompt: list[tuple[str, str]]) -> None:
    """For each (AGI command prefix, keys): wait until that command runs, then press the keys."""
    for prompt, keys in digits_by_prompt:
        call.wait_agi_start(prompt)
        call.dtmf(keys)


@pytest_twisted.inlineCallbacks
def test_checkin_then_departure_through_the_shipped_dialplan(settings, world, server, asterisk_rig):
    rig = asterisk_rig
    rig.set_agi(server.port)
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 5 * MIN)
    call = rig.call(CHECKIN, R001)
    yield in_thread(key_in, call, [("GET DATA agent-user", "1001#"), ("GET DATA agent-pass", "1234")])
    status = yield in_thread(call.var, "AGISTATUS")
    assert status == "HANGUP"  # our HANGUP command: a real Asterisk reports HANGUP, not SUCCESS
    commands = call.agi_commands()
    assert commands[:3] == ["ANSWER", "GET DATA agent-user 6000 8", "GET DATA agent-pass 6000 4"]
    assert "STREAM FILE agent-loginok \"\"" in commands and commands[-1] == "HANGUP"
    [att] = attendances(world)
    assert att.kind == AttendanceKind.SCHEDULED and att.arrival_at == T0 + 5 * MIN and att.arrival_verified
    assert att.arrival_uniqueid == call.uniqueid
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.ARRIVAL and rec.caller_e164 == "+442086989911"

    server.at(T0 + 35 * MIN)
    call2 = rig.call(CHECKIN, R001)
    yield in_thread(key_in, call2, [("GET DATA agent-user", "1001#"), ("GET DATA agent-pass", "1234")])
    assert (yield in_thread(call2.var, "AGISTATUS")) == "HANGUP"
    assert "STREAM FILE agent-loggedoff \"\"" in call2.agi_commands()
    [att] = attendances(world)
    assert att.departure_at == T0 + 35 * MIN and att.departure_uniqueid == call2.uniqueid
    m = yield in_thread(rig.wait_log, r"AGI Script agi://127\.0\.0\.1:\d+/checkin completed, returning 4")
    assert m


def test_the_shipped_manager_user_logs_in_to_the_ami(asterisk_rig):
    from tests.asterisk_rig import AMI

    ami = AMI(asterisk_rig.ami_host, asterisk_rig.ami_port, asterisk_rig.ami_user, asterisk_rig.ami_secret)
    try:
        assert ami.banner.startswith("Asterisk Call Manager")
    finally:
        ami.close()


def wait_for_records(factory, n: int, timeout: float = 30.0):
    from tests.asterisk_rig import wait

    return wait(lambda: (lambda r: r if len(r) >= n else None)(calls(factory)), timeout, f"{n} call records")


@pytest_twisted.inlineCallbacks
def test_withheld_caller_id_is_asked_for_the_homes_phone_code(settings, world, server, asterisk_rig):
    asterisk_rig.set_agi(server.port)
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    call = asterisk_rig.call(CHECKIN, "", withheld=True)
    yield in_thread(key_in, call, [("GET DATA telephone-number", "101#"), ("GET DATA agent-user", "1001#"),
                                   ("GET DATA agent-pass", "1234")])
    assert (yield in_thread(call.var, "AGISTATUS")) == "HANGUP"
    [att] = attendances(world)
    assert not att.arrival_verified
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.ARRIVAL and rec.caller_e164 is None and not rec.location_verified


@pytest_twisted.inlineCallbacks
def test_noreply_number_raises_the_no_reply_record(settings, world, server, asterisk_rig):
    asterisk_rig.set_agi(server.port)
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 5 * MIN)
    call = asterisk_rig.call(NOREPLY, "07911123001")
    yield in_thread(key_in, call, [("GET DATA agent-user", "1001#"), ("GET DATA agent-pass", "1234")])
    assert (yield in_thread(call.var, "AGISTATUS")) == "HANGUP"
    assert 'STREAM FILE auth-thankyou ""' in call.agi_commands()
    [rec] = calls(world)
    assert rec.outcome == "no_reply" and rec.script == "noreply" and rec.visit_id is not None
    assert attendances(world) == []


@pytest_twisted.inlineCallbacks
def test_primary_down_the_backup_server_takes_the_call(settings, world, server, asterisk_rig):
    rig = asterisk_rig
    rig.set_agi(None, server.port)  # nothing listens on the primary's port
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    offset = rig.log_offset()
    call = rig.call(CHECKIN, R001)
    yield in_thread(key_in, call, [("GET DATA agent-user", "1001#"), ("GET DATA agent-pass", "1234")])
    assert (yield in_thread(call.var, "AGISTATUS")) == "HANGUP"
    log = rig.log_text(offset)
    assert "Couldn't connect to any host.  FastAGI failed." in log
    assert "carecall primary unreachable, trying backup" in log
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.ARRIVAL


def test_no_server_at_all_the_caller_is_told_something_is_wrong(asterisk_rig):
    rig = asterisk_rig
    offset = rig.log_offset()
    call = rig.call(CHECKIN, R001)
    assert call.var("AGISTATUS") == "FAILURE"
    log = rig.log_text(offset)
    assert "Playing 'im-sorry" in log and "Playing 'tt-somethingwrong" in log


@pytest.mark.parametrize(("dialled", "caller"), [
    ("08001234567", "+442086989911"),
    ("448001234567", "442086989911"),
    ("+448001234567", "02086989911"),
    ("00448001234567", "00442086989911"),
])
@pytest_twisted.inlineCallbacks
def test_every_carrier_number_format_reaches_the_checkin_with_the_home_found(settings, world, server,
                                                                           asterisk_rig, dialled, caller):
    asterisk_rig.set_agi(server.port)
    call = asterisk_rig.call(dialled, caller)
    yield in_thread(call.wait_agi_start, "GET DATA agent-user")  # the home was found by its caller ID
    call.hangup_handset()
    [rec] = yield in_thread(wait_for_records, world, 1)
    assert rec.script == "checkin" and rec.caller_e164 == "+442086989911" and rec.outcome == CallOutcome.HANGUP
    assert rec.stage == "worker_number"  # not "phone_code": the line was recognised
    assert (yield in_thread(call.var, "AGISTATUS")) == "HANGUP"


def test_noreply_number_in_international_form_reaches_the_noreply_script(asterisk_rig):
    rig = asterisk_rig
    offset = rig.log_offset()
    call = rig.call("+448001234568", "447911123001")
    assert call.var("AGISTATUS") == "FAILURE"  # no server: but the right script was asked for
    assert re.search(r"AGI\(\"[^\"]+\", \"agi://127\.0\.0\.1:\d+/noreply\"\)", rig.log_text(offset))


@pytest.mark.parametrize("dialled", ["+33123456789", "09001234567", "+448009999999"])
def test_a_number_that_is_not_ours_hears_not_in_service(asterisk_rig, dialled):
    rig = asterisk_rig
    offset = rig.log_offset()
    call = rig.call(dialled, R001)
    call.wait_hangup()
    log = rig.log_text(offset)
    assert "Playing 'ss-noservice" in log and "AGI(" not in log


@pytest_twisted.inlineCallbacks
def test_wrong_pin_then_right_one_is_logged_with_the_incorrect_prompt_played(settings, world, server, asterisk_rig):
    """A real Asterisk's GET DATA plays one file: "agent-incorrect&agent-user" was "File does not exist",
    result=-1, and the call was taken for a hang-up."""
    asterisk_rig.set_agi(server.port)
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    offset = asterisk_rig.log_offset()
    call = asterisk_rig.call(CHECKIN, R001)

    def login_twice() -> None:
        key_in(call, [("GET DATA agent-user", "1001#"), ("GET DATA agent-pass", "9999")])
        call.wait_agi('STREAM FILE agent-incorrect ""')
        call.wait_agi_start("GET DATA agent-user", nth=2)
        call.dtmf("1001#")
        call.wait_agi_start("GET DATA agent-pass", nth=2)
        call.dtmf("1234")

    yield in_thread(login_twice)
    assert (yield in_thread(call.var, "AGISTATUS")) == "HANGUP"
    assert "does not exist" not in asterisk_rig.log_text(offset)
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.ARRIVAL and rec.failed_pin_attempts == 1
