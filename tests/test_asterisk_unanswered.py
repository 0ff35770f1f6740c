"""The unanswered (free) check-in through a real Asterisk: the worker rings their own number
from the resident's landline; Asterisk never answers (the call costs nothing), the caller
hears ringing, then the call ends; the attendance is recorded and flagged."""

from __future__ import annotations

import datetime as dt

import pytest
import pytest_twisted
from sqlalchemy import update

from ivr.models import CallOutcome, Worker
from tests.asterisk_fixtures import in_thread
from tests.callhelpers import T0, attendances, calls, start_server
from tests.helpers import add_visits, factory_for, import_world
from tests.sip_phone import SipPhone

pytestmark = pytest.mark.asterisk
MIN = dt.timedelta(minutes=1)
DDI = "02079460001"  # inside the shipped [carecall-inbound] range _02079460XXX
R001 = "02086989911"


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    with factory.begin() as s:
        s.execute(update(Worker).where(Worker.worker_number == "1001").values(
            unanswered_ddi="+442079460001", unanswered_enabled=True))
    return factory


@pytest.fixture
def server(settings, world):
    srv = start_server(settings)
    yield srv
    pytest_twisted.blockon(srv.stop())


def states(rig, call, uniqueid: str) -> list[str]:
    return [e.get("ChannelStateDesc", "") for e in rig.events[call.event_start:]
            if e.get("Event") == "Newstate" and e.get("Uniqueid") == uniqueid]


@pytest_twisted.inlineCallbacks
def test_unanswered_call_rings_is_never_answered_and_records_the_arrival(settings, world, server, asterisk_rig):
    rig = asterisk_rig
    rig.set_agi(server.port)
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 3 * MIN)
    offset = rig.log_offset()
    call = rig.call("+44" + DDI[1:], R001)
    assert (yield in_thread(call.var, "AGISTATUS")) == "HANGUP"
    assert call.agi_commands() == ["EXEC Wait 3", "HANGUP"]  # no ANSWER, no prompt
    assert "Ringing" in states(rig, call, call.handset_uniqueid)  # the caller heard it ring
    assert "Up" not in states(rig, call, call.uniqueid) + states(rig, call, call.handset_uniqueid)
    log = rig.log_text(offset)
    assert "Answer(" not in log
    assert f"agi://127.0.0.1:{server.port}/unanswered,{DDI}" in log  # +44… dialled, national passed on
    [att] = attendances(world)
    assert att.arrival_at == T0 + 3 * MIN and att.arrival_unanswered and att.arrival_uniqueid == call.uniqueid
    [rec] = calls(world)
    assert rec.script == "unanswered" and rec.outcome == CallOutcome.ARRIVAL and rec.location_verified


@pytest_twisted.inlineCallbacks
def test_worker_hanging_up_on_hearing_it_ring_still_logs_the_departure(settings, world, server, asterisk_rig):
    rig = asterisk_rig
    rig.set_agi(server.port)
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 1 * MIN)
    first = rig.call(DDI, R001)
    yield in_thread(first.var, "AGISTATUS")
    server.at(T0 + 30 * MIN)
    second = rig.call(DDI, "+442086989911")
    yield in_thread(second.wait_agi_start, "EXEC Wait")
    second.hangup_handset()  # the worker puts the phone down on hearing it ring
    assert (yield in_thread(second.var, "AGISTATUS")) == "HANGUP"
    [att] = attendances(world)
    assert att.departure_at == T0 + 30 * MIN and att.departure_unanswered
    assert [c.outcome for c in calls(world)] == ["arrival", "departure"]


@pytest_twisted.inlineCallbacks
def test_a_number_with_the_mode_off_gives_engaged_tone(settings, world, server, asterisk_rig):
    rig = asterisk_rig
    rig.set_agi(server.port)
    call = rig.call("02079460002", R001)  # no worker has this number
    assert (yield in_thread(call.var, "AGISTATUS")) == "HANGUP"
    assert call.agi_commands() == ["EXEC Busy 5", "HANGUP"]
    assert call.var("HANGUPCAUSE") == "17"  # user busy: the caller hears engaged tone
    assert f"{call.wait_channel().rsplit(';', 1)[0]};1 is busy" in rig.log_text()
    assert attendances(world) == []
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.FAILED_LOGIN and rec.review_status == "open"


def test_no_server_at_all_gives_engaged_tone_not_an_answer(asterisk_rig):
    rig = asterisk_rig
    offset = rig.log_offset()
    call = rig.call(DDI, R001)
    assert call.var("AGISTATUS") == "FAILURE"
    log = rig.log_text(offset)
    assert "Busy(" in log and "Answer(" not in log


@pytest_twisted.inlineCallbacks
def test_unanswered_sip_call_sees_ringing_and_no_200_ok(settings, world, server, asterisk_rig, tmp_path):
    rig = asterisk_rig
    rig.set_agi(server.port)
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 2 * MIN)

    def ring() -> SipPhone:
        phone = SipPhone(rig.pjsua, f"127.0.0.1:{rig.sip_port}", R001, "+44" + DDI[1:], tmp_path / "pjsua.log")
        try:
            phone.wait_for("180 Ringing")
            phone.wait_disconnected()
        finally:
            phone.close()
        return phone

    phone = yield in_thread(ring)
    assert not phone.answered  # never CONFIRMED: no 200 OK, so the carrier bills nothing
    [att] = attendances(world)
    assert att.arrival_unanswered and att.arrival_at == T0 + 2 * MIN
