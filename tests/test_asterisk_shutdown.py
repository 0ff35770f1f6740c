"""Graceful shutdown with a real Asterisk mid-call: ``carecall run`` gets SIGTERM.

What a site must see: the listener closes at once, so a new call goes to the backup
``agi://`` target; a call in progress finishes when it can within ``agi_drain_seconds``;
one still going at the deadline hears that it was not logged and to ring again, and
leaves a ``cut`` call record (before: the line dropped, no apology, no record,
``database effect failed: EffectProcessGone``).
"""

from __future__ import annotations

import datetime as dt

import pytest
import pytest_twisted

from ivr.models import CallOutcome, ReviewStatus
from tests.asterisk_fixtures import in_thread
from tests.callhelpers import attendances, calls, start_server
from tests.carecall_process import CarecallProcess
from tests.helpers import add_visits, factory_for, import_world, on_today

pytestmark = pytest.mark.asterisk
CHECKIN = "08001234567"
R001 = "02086989911"


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    now = dt.datetime.now(dt.UTC)
    add_visits(settings, factory, ("V1", "R001", on_today(now, -5, settings), 30, "1001"),
               ("V2", "R002", on_today(now, -5, settings), 30, "1002"))
    return factory


@pytest.fixture
def carecall_factory(settings, tmp_path):
    started: list[CarecallProcess] = []

    def start(**carecall) -> CarecallProcess:
        proc = CarecallProcess(settings, tmp_path / f"server{len(started)}", **carecall).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest_twisted.inlineCallbacks
def test_sigterm_mid_call_lets_the_call_finish_and_new_calls_go_to_the_backup(settings, world, asterisk_rig,
                                                                            carecall_factory):
    rig = asterisk_rig
    primary = yield in_thread(carecall_factory, agi_drain_seconds=60)
    backup = start_server(settings, now=dt.datetime.now(dt.UTC))
    try:
        rig.set_agi(primary.agi_port, backup.port)

        def scenario() -> tuple:
            first = rig.call(CHECKIN, R001)
            first.wait_agi_start("GET DATA agent-user")
            first.dtmf("1001#")
            first.wait_agi_start("GET DATA agent-pass")
            primary.terminate()  # the worker is typing their PIN
            rig.wait(lambda: "shutdown: 1 calls in progress" in primary.text(), what="the drain to begin")
            offset = rig.log_offset()
            second = rig.call(CHECKIN, "02086989922")  # R002's line, while the primary drains
            second.wait_agi_start("GET DATA agent-user")
            refused = rig.log_text(offset)
            first.dtmf("1234")
            second.dtmf("1002#")
            second.wait_agi_start("GET DATA agent-pass")
            second.dtmf("2345")
            status = (first.var("AGISTATUS", 60), second.var("AGISTATUS", 60))
            return first, second, refused, status, primary.wait_exit(60)

        first, second, refused, status, exit_code = yield in_thread(scenario)
    finally:
        yield backup.stop()
    assert f"Connecting to '127.0.0.1:{primary.agi_port}' failed" in refused  # listener closed at once
    assert status == ("HANGUP", "HANGUP") and exit_code == 0
    assert 'STREAM FILE agent-loginok ""' in first.agi_commands()  # finished normally inside the drain
    records = {r.uniqueid: r for r in calls(world)}
    assert records[first.uniqueid].outcome == CallOutcome.ARRIVAL
    assert records[second.uniqueid].outcome == CallOutcome.ARRIVAL
    assert len(attendances(world)) == 2
    assert "EffectProcessGone" not in primary.text()


def test_sigterm_past_the_drain_time_apologises_and_records_the_cut_call(settings, world, asterisk_rig,
                                                                        carecall_factory):
    rig = asterisk_rig
    primary = carecall_factory(agi_drain_seconds=1)
    rig.set_agi(primary.agi_port)
    call = rig.call(CHECKIN, R001)
    call.wait_agi_start("GET DATA agent-user")
    call.dtmf("1001#")
    call.wait_agi_start("GET DATA agent-pass")
    primary.terminate()  # the worker never types the PIN: the GET DATA runs to its 6 s timeout
    assert call.var("AGISTATUS", 60) == "HANGUP"
    assert primary.wait_exit(60) == 0
    commands = call.agi_commands()
    assert commands[-3:] == ['STREAM FILE im-sorry ""', 'STREAM FILE please-try-again ""', "HANGUP"]
    assert not any(c.startswith("GET DATA") for c in commands[commands.index("GET DATA agent-pass 6000 4") + 1:])
    assert "Playing 'please-try-again" in rig.log_text()
    [rec] = calls(world)
    assert rec.uniqueid == call.uniqueid and rec.outcome == CallOutcome.CUT
    assert rec.review_status == ReviewStatus.OPEN and rec.worker_number_entered == "1001"
    assert attendances(world) == []
    text = primary.text()
    assert "cutting 1 calls" in text and "EffectProcessGone" not in text
