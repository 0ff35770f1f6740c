"""Real SIP calls on loopback through the shipped ``pjsip.conf``: the test phone (pjsua)
is the carrier, rings the check-in number with a caller ID and keys the worker number and
PIN as RFC 4733 telephone-events, exactly the ``dtmf_mode`` the sample trunk requires."""

from __future__ import annotations

import datetime as dt

import pytest
import pytest_twisted

from ivr.models import CallOutcome
from tests.asterisk_fixtures import in_thread
from tests.callhelpers import T0, attendances, calls, start_server
from tests.helpers import add_visits, factory_for, import_world
from tests.sip_phone import SipPhone

pytestmark = pytest.mark.asterisk
MIN = dt.timedelta(minutes=1)


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


@pytest.fixture
def phone_factory(asterisk_rig, tmp_path):
    phones: list[SipPhone] = []

    def ring(caller: str, dialled: str) -> SipPhone:
        phone = SipPhone(asterisk_rig.pjsua, f"127.0.0.1:{asterisk_rig.sip_port}", caller, dialled,
                         tmp_path / f"pjsua-{len(phones)}.log")
        phones.append(phone)
        return phone

    yield ring
    for phone in phones:
        phone.close()


def sip_checkin(rig, phone_factory, caller: str, dialled: str) -> tuple[SipPhone, object]:
    start = len(rig.events)
    phone = phone_factory(caller, dialled)
    call = rig.follow("PJSIP/carecall-trunk-", start)
    phone.wait_answered()
    call.wait_agi_start("GET DATA agent-user")
    phone.dtmf("1001#")
    call.wait_agi_start("GET DATA agent-pass")
    phone.dtmf("1234")
    call.wait_hangup()
    phone.wait_disconnected()
    return phone, call


@pytest_twisted.inlineCallbacks
def test_sip_call_with_rfc4733_dtmf_records_the_checkin(settings, world, server, asterisk_rig, phone_factory):
    rig = asterisk_rig
    rig.set_agi(server.port)
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 5 * MIN)
    offset = rig.log_offset()
    phone, call = yield in_thread(sip_checkin, rig, phone_factory, "+442086989911", "+448001234567")
    log = rig.log_text(offset)
    assert phone.answered and phone.disconnected  # answered over SIP, then hung up by carecall
    assert "DTMF end '1' received on PJSIP/carecall-trunk-" in log  # RFC 4733 events reached the channel
    results = dict(call.agi_transcript())
    assert results["GET DATA agent-user 6000 8"] == "200 result=1001"
    assert results["GET DATA agent-pass 6000 4"] == "200 result=1234"
    [att] = attendances(world)
    assert att.arrival_at == T0 + 5 * MIN and att.arrival_verified and att.arrival_uniqueid == call.uniqueid
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.ARRIVAL and rec.caller_e164 == "+442086989911"
