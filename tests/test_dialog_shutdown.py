"""Dialog.shut_down: the server stopping ends a call at its next command, never mid-command."""

from __future__ import annotations

from agi.codec import Result
from ivr.dialog import CheckIn, Command, Finished, RecordCall
from ivr.models import CallOutcome, ReviewStatus
from tests.test_dialog import OK, checked_in, env, new_dialog


def test_cut_while_a_get_data_runs_waits_for_its_reply_then_records_apologises_and_hangs_up():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    assert d.send((1,)) == Command("GET DATA", ("agent-user", "6000", "8"))
    assert d.shut_down() is None  # GET DATA is running in Asterisk: nothing to send now
    record = d.send(Result("1001"))  # its reply: the PIN prompt is never sent
    assert isinstance(record, RecordCall)
    assert record.outcome == CallOutcome.CUT and record.review_status == ReviewStatus.OPEN
    assert "not logged" in record.detail and record.stage == "pin"  # the worker number was typed
    assert d.send(5) == Command("STREAM FILE", ("im-sorry", ""))
    assert d.send(OK) == Command("STREAM FILE", ("please-try-again", ""))
    assert d.send(OK) == Command("HANGUP")
    done = d.send(Result("1"))
    assert isinstance(done, Finished) and done.outcome == CallOutcome.CUT
    assert done.record == {"outcome": "cut", "call_record_id": 5}


def test_cut_during_the_checkin_effect_keeps_the_logged_attendance_and_just_hangs_up():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    d.send((1,))
    d.send(Result("1001"))
    assert isinstance(d.send(Result("1234")), CheckIn)
    assert d.shut_down() is None
    assert d.send(checked_in()) == Command("HANGUP")  # logged: no apology, no second record
    done = d.send(Result("1"))
    assert done.outcome == "arrival" and done.record["attendance_id"] == 7


def test_caller_leaving_during_the_apology_still_leaves_the_cut_record():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    d.send((1,))
    d.shut_down()
    assert isinstance(d.send(Result("1001")), RecordCall)
    assert d.send(9) == Command("STREAM FILE", ("im-sorry", ""))
    done = d.hangup("HANGUP from Asterisk")
    assert isinstance(done, Finished) and done.outcome == CallOutcome.CUT


def test_cut_before_the_environment_arrived_finishes_at_once():
    d = new_dialog()
    done = d.shut_down()
    assert isinstance(done, Finished) and done.outcome == CallOutcome.CUT
