"""The unanswered (free) check-in over the simulator: worker by the number dialled, home by
the caller ID, no ANSWER and no PIN; the same arrival/departure decision as a PIN call."""

from __future__ import annotations

import datetime as dt

import pytest
import pytest_twisted
from sqlalchemy import update

from ivr.dialog import Mode
from ivr.models import AttendanceKind, CallOutcome, ReviewStatus, Worker
from tests.callhelpers import R001_LINE, T0, attendances, calls, start_server
from tests.helpers import add_visits, factory_for, import_world

MIN = dt.timedelta(minutes=1)
DDI = "02079460001"


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    enable(factory, "1001", "+442079460001")
    return factory


def enable(factory, number: str, ddi: str | None, on: bool = True) -> None:
    with factory.begin() as s:
        s.execute(update(Worker).where(Worker.worker_number == number).values(unanswered_ddi=ddi,
                                                                               unanswered_enabled=on))


@pytest.fixture
def server(settings, world):
    srv = start_server(settings)
    yield srv
    pytest_twisted.blockon(srv.stop())


def ring(server, dialled: str = DDI, callerid: str | None = R001_LINE):
    return server.call(script="unanswered", callerid=callerid, args=[dialled])


@pytest_twisted.inlineCallbacks
def test_arrival_then_departure_without_answer_or_pin(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 2 * MIN)
    result = yield ring(server, "+442079460001")
    commands = [c for c, _ in result.transcript]
    assert commands == ["EXEC Wait 3", "HANGUP"], [(c.outcome, c.detail) for c in calls(world)]
    server.at(T0 + 31 * MIN)
    result = yield ring(server, "442079460001")  # the DDI in another carrier format: same worker
    assert [c for c, _ in result.transcript] == ["EXEC Wait 3", "HANGUP"]
    [att] = attendances(world)
    assert att.kind == AttendanceKind.SCHEDULED and att.arrival_at == T0 + 2 * MIN
    assert att.departure_at == T0 + 31 * MIN and att.arrival_method == "phone"
    assert att.arrival_unanswered and att.departure_unanswered and att.unanswered_mode
    assert att.arrival_verified and att.departure_verified
    arrival, departure = calls(world)
    assert (arrival.script, arrival.outcome, departure.outcome) == ("unanswered", "arrival", "departure")
    assert arrival.worker_number_entered is None and arrival.worker_id == att.worker_id


@pytest_twisted.inlineCallbacks
def test_a_pin_call_and_an_unanswered_call_close_each_other(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    server.at(T0 + 1 * MIN)
    yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    server.at(T0 + 29 * MIN)
    yield ring(server)
    [att] = attendances(world)
    assert not att.arrival_unanswered and att.departure_unanswered and att.unanswered_mode


@pytest.mark.parametrize(("why", "setup", "callerid", "dialled", "outcome"), [
    ("mode off", lambda f: enable(f, "1001", "+442079460001", on=False), R001_LINE, DDI, CallOutcome.FAILED_LOGIN),
    ("not a worker's number", lambda f: None, R001_LINE, "02079460999", CallOutcome.FAILED_LOGIN),
    ("caller ID withheld", lambda f: None, None, DDI, CallOutcome.UNKNOWN_LINE),
    ("not a resident's line", lambda f: None, "02079460555", DDI, CallOutcome.UNKNOWN_LINE),
])
@pytest_twisted.inlineCallbacks
def test_not_logged_is_engaged_tone_and_an_open_record(settings, world, server, why, setup, callerid, dialled,
                                                     outcome):
    setup(world)
    result = yield ring(server, dialled, callerid)
    assert [c for c, _ in result.transcript] == ["EXEC Busy 5", "HANGUP"], why
    assert attendances(world) == []
    [rec] = calls(world)
    assert rec.outcome == outcome and rec.review_status == ReviewStatus.OPEN and rec.script == "unanswered"
    assert "unanswered check-in" in rec.detail


def test_mode_is_data_on_the_checkin_effect():
    from ivr.dialog import CheckIn

    assert CheckIn.__dataclass_fields__["mode"].default == Mode.PIN


def test_database_down_journals_the_unanswered_checkin_with_its_mode_and_number():
    from carecall.config import Settings
    from ivr.dialog import AppendJournal, Command, Dialog, DialogConfig, Journalled, LookupLine
    from ivr.journal import effect_for, event_for
    from ivr.pins import PinHasher

    d = Dialog(DialogConfig.from_settings(Settings()), clock=lambda: T0.timestamp())
    env = {"agi_network": "yes", "agi_network_script": "unanswered", "agi_request": "agi://h/unanswered",
           "agi_uniqueid": "1741597500.9", "agi_callerid": "02086989911", "agi_arg_1": DDI}
    assert d.start(env) == LookupLine("+442086989911")
    journal = d.effect_failed("database down")
    assert isinstance(journal, AppendJournal) and journal.effect.mode == Mode.UNANSWERED
    assert journal.effect.ddi_e164 == "+442079460001" and journal.effect.resident_ids == ()
    assert d.send(Journalled("ev1", T0)) == Command("EXEC", ("Wait", "3"))  # "logged": it rings, then ends
    replayed = effect_for(event_for(journal.effect, PinHasher(b"k" * 32)))
    assert (replayed.mode, replayed.ddi_e164, replayed.call.script) == (Mode.UNANSWERED, "+442079460001",
                                                                        "unanswered")
