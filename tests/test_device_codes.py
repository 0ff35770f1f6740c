"""Check-in with no landline: the code shown by the home's verification device.

The matching is pure (``ivr.devicecodes``) and tested at its window edges; the whole
path is tested by real FastAGI calls that key a code computed from a test device's
secret, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import datetime as dt

import pytest
import pytest_twisted
from sqlalchemy import select

from ivr.devicecodes import DeviceKey, Refusal, code_at, match_code
from ivr.devices import DeviceCodeUse, VerificationDevice
from ivr.importer import import_csv
from ivr.models import CallOutcome, ReviewStatus
from tests.callhelpers import T0, attendances, calls, start_server
from tests.helpers import add_visits, context_for, factory_for, import_world

MIN = dt.timedelta(minutes=1)
# Fixed seeds, as a site would type them from the device's sheet.
SEED_R004 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
SEED_R002 = "KRUGKIDROVUWG2ZAMJZG653OEBTG66BA"
WORKER_MOBILE = "07911 123001"  # the worker rings from their own phone: it proves nothing


def counter(now: dt.datetime, step: int = 60) -> int:
    return int(now.timestamp() // step)


# ------------------------------------------------------------------ pure matching

KEY = DeviceKey(device_id=1, resident_id=4, secret=SEED_R004)
OTHER = DeviceKey(device_id=2, resident_id=2, secret=SEED_R002)
LATE = dt.timedelta(hours=2)
NOW = T0 + dt.timedelta(seconds=30)  # mid-step


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_code_of_this_step_or_one_either_side_is_fresh(offset):
    code = code_at(KEY, counter(NOW) + offset)
    found = match_code(code, [KEY, OTHER], NOW, LATE)
    assert not isinstance(found, str)
    assert (found.resident_id, found.counter, found.late, found.at) == (4, counter(NOW) + offset, False, NOW)


def test_a_code_two_steps_ahead_is_refused():
    assert match_code(code_at(KEY, counter(NOW) + 2), [KEY], NOW, LATE) == Refusal.NO_MATCH


def test_an_older_code_is_entered_late_at_the_start_of_its_step():
    c = counter(NOW) - 30
    found = match_code(code_at(KEY, c), [KEY], NOW, LATE)
    assert not isinstance(found, str) and found.late
    assert found.at == dt.datetime.fromtimestamp(c * 60, dt.UTC) == T0 - 30 * MIN


def test_late_entry_stops_at_the_configured_limit():
    oldest = counter(NOW - LATE)  # the step that was showing exactly LATE ago: still accepted
    assert not isinstance(match_code(code_at(KEY, oldest), [KEY], NOW, LATE), str)
    assert match_code(code_at(KEY, oldest - 1), [KEY], NOW, LATE) == Refusal.NO_MATCH


def test_a_code_that_opens_two_homes_is_refused_as_ambiguous():
    twin = DeviceKey(device_id=3, resident_id=9, secret=SEED_R004)  # a cloned seed in another home
    assert match_code(code_at(KEY, counter(NOW)), [KEY, twin], NOW, LATE) == Refusal.AMBIGUOUS


def test_a_code_of_the_wrong_length_matches_nothing():
    code = code_at(KEY, counter(NOW))
    assert match_code(code[:5], [KEY], NOW, LATE) == Refusal.NO_MATCH
    assert match_code(code + "1", [KEY], NOW, LATE) == Refusal.NO_MATCH


def test_codes_are_the_rfc_6238_ones_a_hardware_token_shows():
    # RFC 6238 appendix B, SHA-1, seed "12345678901234567890", T = 59 s, 30 s step, 8 digits.
    seed = base64.b32encode(b"12345678901234567890").decode()
    key = DeviceKey(1, 1, seed, digits=8, step_seconds=30)
    assert code_at(key, 59 // 30) == "94287082"


# ------------------------------------------------------------------ real calls


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    report = import_csv(factory, "devices",
                        f"serial,resident_reference,secret\nTOK-4,R004,{SEED_R004}\nTOK-2,R002,{SEED_R002}\n",
                        context_for(settings))
    assert report.ok, report.summary()
    return factory


@pytest.fixture
def server(settings, world):
    srv = start_server(settings)
    yield srv
    pytest_twisted.blockon(srv.stop())


def r004_code(at: dt.datetime) -> str:
    return code_at(DeviceKey(0, 0, SEED_R004), counter(at))


@pytest_twisted.inlineCallbacks
def test_a_device_code_keyed_from_the_workers_mobile_logs_a_verified_arrival_at_that_home(settings, world, server):
    add_visits(settings, world, ("V1", "R004", T0, 30, "1001"))
    now = T0 + 4 * MIN
    server.at(now)
    result = yield server.call(callerid=WORKER_MOBILE, script="device", digits=["1001", "1234", r004_code(now)])
    assert result.completed, result
    commands = [c for c, _ in result.transcript]
    assert commands[:4] == ["ANSWER", "GET DATA agent-user 6000 8", "GET DATA agent-pass 6000 4",
                            "GET DATA vm-password 6000 8"]
    assert 'STREAM FILE agent-loginok ""' in commands
    [att] = attendances(world)
    assert att.arrival_method == "device" and att.arrival_verified and att.arrival_at == now
    assert att.arrival_entered_at is None
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.ARRIVAL and rec.location_verified and rec.script == "device"

    # The departure, with a later code: the same decision closes the open arrival.
    later = now + 31 * MIN
    server.at(later)
    result = yield server.call(callerid=WORKER_MOBILE, script="device", digits=["1001", "1234", r004_code(later)])
    assert result.completed
    [att] = attendances(world)
    assert att.departure_method == "device" and att.departure_verified and att.departure_at == later


@pytest_twisted.inlineCallbacks
def test_a_code_already_used_is_refused_and_the_call_goes_to_review(settings, world, server):
    add_visits(settings, world, ("V1", "R004", T0, 30, "1001"), ("V2", "R004", T0, 30, "1002"))
    now = T0 + 2 * MIN
    server.at(now)
    code = r004_code(now)
    first = yield server.call(callerid=WORKER_MOBILE, script="device", digits=["1001", "1234", code])
    assert first.completed
    # Someone else keys the same code (read out over the phone): refused three times.
    second = yield server.call(callerid="07911 123002", script="device", digits=["1002", "2345", code, code, code])
    assert second.completed
    prompts = [c for c, _ in second.transcript if c.startswith("GET DATA")]
    assert prompts[2:] == ["GET DATA vm-password 6000 8"] * 3
    assert [c for c, _ in second.transcript].count('STREAM FILE agent-incorrect ""') == 2
    assert len(attendances(world)) == 1
    rec = calls(world)[-1]
    assert rec.outcome == CallOutcome.UNKNOWN_LINE and rec.review_status == ReviewStatus.OPEN
    assert "used" in rec.detail
    with world() as s:
        assert s.scalar(select(DeviceCodeUse.counter)) == counter(now)


@pytest_twisted.inlineCallbacks
def test_a_code_keyed_late_is_logged_at_the_codes_time_and_flagged_entered_late(settings, world, server):
    add_visits(settings, world, ("V1", "R004", T0, 30, "1001"))
    shown = T0 + 1 * MIN + dt.timedelta(seconds=20)
    now = T0 + 50 * MIN  # no signal in the home: the worker rang from the bus stop
    server.at(now)
    result = yield server.call(callerid=WORKER_MOBILE, script="device", digits=["1001", "1234", r004_code(shown)])
    assert result.completed
    [att] = attendances(world)
    assert att.arrival_at == T0 + 1 * MIN  # the start of the code's step
    assert att.arrival_entered_at == now and att.arrival_method == "device"


@pytest_twisted.inlineCallbacks
def test_a_wrong_pin_never_reaches_the_code(settings, world, server):
    add_visits(settings, world, ("V1", "R004", T0, 30, "1001"))
    result = yield server.call(callerid=WORKER_MOBILE, script="device",
                               digits=["1001", "0000", "654321", "1001", "1234", r004_code(T0)])
    assert result.completed
    [att] = attendances(world)
    assert att.arrival_method == "device"


def test_the_secret_is_sealed_and_never_stored_in_clear(settings, world):
    with world() as s:
        sealed = s.scalars(select(VerificationDevice.secret_sealed)).all()
    assert sealed and all(SEED_R004 not in v and SEED_R002 not in v for v in sealed)


def test_a_bad_device_row_imports_nothing_and_says_why(settings, world):
    report = import_csv(world, "devices", "serial,resident_reference,secret\nX1,R001,short\nX2,R999,"
                        f"{SEED_R004}\n", context_for(settings))
    assert not report.ok
    text = "\n".join(str(e) for e in report.errors)
    assert "line 2" in text and "base32" in text and "line 3" in text and "R999" in text
    with world() as s:
        assert s.scalar(select(VerificationDevice.id).where(VerificationDevice.serial == "X1")) is None


def test_invoices_and_timesheets_name_the_method_of_a_check_in_without_the_landline():
    from billing.rules import AttendanceRow, method_of

    def row(arrival: str | None, departure: str | None) -> AttendanceRow:
        return AttendanceRow(1, "V1", 4, "1001", T0, T0 + 30 * MIN, T0, arrival, None, T0 + 30 * MIN, departure, None)

    assert method_of(row("phone", "phone")) == "phone"
    assert method_of(row("device", "device")) == "device"
    assert method_of(row("tag", "phone")) == "tag"
    assert method_of(row("device", "tag")) == "device+tag"
    assert method_of(row("tag", "manual")) == "manual"


def test_a_visits_file_with_notes_sets_what_the_worker_sees_and_one_without_keeps_them(settings):
    from ivr.models import Visit

    factory = factory_for(settings)
    import_world(settings, factory)
    ctx = context_for(settings)
    with_notes = ("visit_ref,resident_reference,planned_start,planned_end,workers,time_critical,notes\n"
                  "N1,R004,2026-03-10 09:00,2026-03-10 09:30,1001,no,Medication from the blister pack\n")
    assert import_csv(factory, "visits", with_notes, ctx).ok
    without = ("visit_ref,resident_reference,planned_start,planned_end,workers,time_critical\n"
               "N1,R004,2026-03-10 09:15,2026-03-10 09:45,1001,no\n")
    assert import_csv(factory, "visits", without, ctx).ok
    with factory() as s:
        v = s.scalar(select(Visit).where(Visit.visit_ref == "N1"))
        assert v.worker_notes == "Medication from the blister pack"
        assert v.planned_start == T0 + 15 * MIN
