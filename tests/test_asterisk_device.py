"""A device-code check-in through a real Asterisk running the shipped dialplan.

The worker rings the no-landline number (``[carecall-device]``) from their own mobile,
keys worker number, PIN and the code the home's device shows (computed here from the
test seed at the server's pinned time) as received DTMF; the attendance is logged at
that home as verified by device.
"""

from __future__ import annotations

import datetime as dt

import pytest
import pytest_twisted

from ivr.devicecodes import DeviceKey, code_at
from ivr.importer import import_csv
from tests.asterisk_fixtures import in_thread
from tests.callhelpers import T0, attendances, start_server
from tests.helpers import add_visits, context_for, factory_for, import_world
from tests.test_asterisk_calls import key_in

pytestmark = pytest.mark.asterisk
DEVICE = "08001234569"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    report = import_csv(factory, "devices", f"serial,resident_reference,secret\nTOK-4,R004,{SEED}\n",
                        context_for(settings))
    assert report.ok, report.summary()
    return factory


@pytest.fixture
def server(settings, world):
    srv = start_server(settings)
    yield srv
    pytest_twisted.blockon(srv.stop())


@pytest_twisted.inlineCallbacks
def test_a_device_code_keyed_through_real_asterisk_logs_a_verified_arrival(settings, world, server, asterisk_rig):
    rig = asterisk_rig
    rig.set_agi(server.port)
    add_visits(settings, world, ("V1", "R004", T0, 30, "1001"))
    now = T0 + dt.timedelta(minutes=4)
    server.at(now)
    code = code_at(DeviceKey(0, 0, SEED), int(now.timestamp() // 60))
    call = rig.call(DEVICE, "07911123001")
    yield in_thread(key_in, call, [("GET DATA agent-user", "1001#"), ("GET DATA agent-pass", "1234"),
                                   ("GET DATA vm-password", code + "#")])
    status = yield in_thread(call.var, "AGISTATUS")
    assert status == "HANGUP"
    [att] = attendances(world)
    assert att.arrival_method == "device" and att.arrival_verified and att.arrival_at == now
