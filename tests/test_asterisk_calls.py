"""Calls through a real Asterisk running the shipped ``asterisk-config/`` (tests/asterisk_rig.py).

A Local channel enters ``[carecall-inbound]`` exactly as a carrier's call would, with a
chosen caller ID; keys are pressed (received DTMF) once the ``GET DATA`` that reads them
is running; the in-process FastAGI server (real reactor, real database) records the
call. What is asserted is what a site sees: the AGI commands Asterisk ran, the
``AGISTATUS`` the dialplan got, and the rows in the database.
"""

from __future__ import annotations

import datetime as dt

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
