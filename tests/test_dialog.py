"""The call dialog as plain calls: replies and effect results in, actions out."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from agi.codec import DeadChannel, Result, UsageError
from carecall.config import Prompts, Settings
from ivr.dialog import (
    CheckedIn,
    CheckIn,
    Command,
    Dialog,
    DialogConfig,
    Finished,
    LoginFailed,
    LookupLine,
    LookupPhoneCode,
    NeedPhoneCode,
    NoReplyCall,
    NoReplyRecorded,
    RecordCall,
    script_name,
)

NOW = dt.datetime(2026, 3, 10, 9, 5, tzinfo=dt.UTC)
OK = Result("0")


def env(script="checkin", callerid="02086989911", **extra):
    e = {"agi_network": "yes", "agi_network_script": script, "agi_request": f"agi://h/{script}",
         "agi_uniqueid": "1741597500.1", "agi_callerid": callerid, "agi_calleridname": "unknown"}
    e.update(extra)
    return e


def new_dialog():
    return Dialog(DialogConfig.from_settings(Settings()), clock=lambda: NOW.timestamp())


def checked_in(direction="arrival", duplicate=False):
    return CheckedIn(direction, NOW, 7, 3, "scheduled", 11, 1, 1, duplicate)


def test_known_line_dialog_asks_worker_then_pin_inside_get_data_and_confirms_time():
    d = new_dialog()
    assert d.start(env()) == Command("ANSWER")
    assert d.send(OK) == LookupLine("+442086989911")
    assert d.send((1,)) == Command("GET DATA", ("agent-user", "6000", "8"))
    assert d.send(Result("1001")) == Command("GET DATA", ("agent-pass", "6000", "4"))
    effect = d.send(Result("1234"))
    assert isinstance(effect, CheckIn)
    assert (effect.worker_number, effect.pin, effect.resident_ids, effect.location_verified) == ("1001", "1234",
                                                                                                   (1,), True)
    assert effect.at == NOW and effect.call.uniqueid == "1741597500.1" and effect.call.script == "checkin"
    assert d.send(checked_in()) == Command("STREAM FILE", ("agent-loginok", ""))
    assert d.send(OK) == Command("SAY TIME", (str(int(NOW.timestamp())), ""))
    assert d.send(OK) == Command("STREAM FILE", ("goodbye", ""))
    assert d.send(OK) == Command("HANGUP")
    fin = d.send(Result("1"))
    assert isinstance(fin, Finished) and fin.outcome == "arrival" and fin.record["attendance_id"] == 7
    assert d.finished


def test_withheld_caller_goes_straight_to_phone_code_without_line_lookup():
    d = new_dialog()
    d.start(env(callerid="unknown"))
    assert d.send(OK) == Command("GET DATA", ("telephone-number", "6000", "8"))
    assert d.send(Result("101")) == LookupPhoneCode("101")
    assert d.send((4,)) == Command("GET DATA", ("agent-user", "6000", "8"))
    d.send(Result("1001"))
    effect = d.send(Result("1234"))
    assert effect.resident_ids == (4,) and effect.location_verified is False


def test_duplicate_confirms_the_original_direction_and_time():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    d.send((1,))
    d.send(Result("1001"))
    d.send(Result("1234"))
    assert d.send(checked_in("departure", duplicate=True)) == Command("STREAM FILE", ("agent-loggedoff", ""))
    d.send(OK)
    d.send(OK)
    d.send(OK)
    assert d.send(Result("1")).outcome == "duplicate"


def test_empty_worker_number_counts_as_a_try_and_third_failure_is_recorded_by_the_dialog():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    d.send((1,))
    # "Login incorrect" is its own STREAM FILE: a real Asterisk's GET DATA plays one file only.
    assert d.send(Result("", "timeout")) == Command("STREAM FILE", ("agent-incorrect", ""))
    assert d.send(OK) == Command("GET DATA", ("agent-user", "6000", "8"))
    d.send(Result("1001"))
    assert isinstance(d.send(Result("9999")), CheckIn)
    assert d.send(LoginFailed()) == Command("STREAM FILE", ("agent-incorrect", ""))
    assert d.send(OK) == Command("GET DATA", ("agent-user", "6000", "8"))
    record = d.send(Result("", "timeout"))  # third try: nothing typed, so no CheckIn — record directly
    assert isinstance(record, RecordCall) and record.outcome == "failed_login"
    assert record.failed_pin_attempts == 3 and record.worker_number_entered == "1001"
    assert record.review_status == "open" and record.resident_id == 1
    assert d.send(5) == Command("STREAM FILE", ("agent-incorrect", ""))
    assert d.send(OK) == Command("HANGUP")
    assert d.send(Result("1")).outcome == "failed_login"


def test_hangup_during_get_data_records_once_with_the_stage_and_sends_nothing_more():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    d.send((1,))
    d.send(Result("1001"))
    record = d.send(Result("-1"))  # caller left during the PIN prompt
    assert isinstance(record, RecordCall) and (record.outcome, record.stage) == ("hangup", "pin")
    assert record.worker_number_entered == "1001"
    assert d.hangup("HANGUP line") is None  # the record is being written: nothing new to do
    fin = d.send(9)
    assert fin == Finished("hangup", "pin", {"outcome": "hangup", "call_record_id": 9})


def test_hangup_line_while_a_command_is_outstanding_ends_the_dialog():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    d.send((1,))
    record = d.hangup("HANGUP from Asterisk")
    assert isinstance(record, RecordCall) and record.stage == "worker_number"


def test_511_dead_channel_is_a_hangup():
    d = new_dialog()
    d.start(env())
    record = d.send(DeadChannel("dead"))
    assert isinstance(record, RecordCall) and (record.outcome, record.stage) == ("hangup", "answer")


def test_hangup_while_effect_runs_is_applied_when_it_returns_and_no_command_follows():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    d.send((1,))
    d.send(Result("1001"))
    d.send(Result("1234"))  # CheckIn in flight
    assert d.hangup("connection closed") is None
    fin = d.send(checked_in())  # recorded; the confirmation cannot be spoken
    assert isinstance(fin, Finished) and fin.outcome == "arrival" and fin.record["attendance_id"] == 7


@pytest.mark.parametrize(
    ("environment", "recorded"),
    [
        ({"agi_network": "yes"}, False),  # missing environment: nothing to key a record on
        (env(script="payroll"), True),  # unknown request path
    ],
)
def test_bad_environment_is_a_logged_error_and_a_hang_up(environment, recorded):
    d = new_dialog()
    action = d.start(environment)
    if recorded:
        assert isinstance(action, RecordCall) and action.outcome == "error" and "payroll" in action.detail
        action = d.send(3)
    assert isinstance(action, Finished) and action.outcome == "error" and action.hang_up


def test_usage_error_from_asterisk_is_an_error_not_a_crash():
    d = new_dialog()
    d.start(env())
    record = d.send(UsageError(("bad",)))
    assert isinstance(record, RecordCall) and record.outcome == "error"


def test_database_failure_records_error_and_hangs_up():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    record = d.fail("database error: down")  # LookupLine failed
    assert isinstance(record, RecordCall) and record.outcome == "error"
    fin = d.fail("database error: still down")  # and so did the record
    assert isinstance(fin, Finished) and fin.outcome == "error"


def test_noreply_asks_phone_code_only_when_several_visits_are_due():
    d = new_dialog()
    d.start(env(script="noreply"))
    assert d.send(OK) == Command("GET DATA", ("agent-user", "6000", "8"))
    d.send(Result("1001"))
    effect = d.send(Result("1234"))
    assert isinstance(effect, NoReplyCall) and effect.phone_code is None
    assert d.send(NeedPhoneCode(2)) == Command("GET DATA", ("telephone-number", "6000", "8"))
    effect = d.send(Result("102"))
    assert effect.phone_code == "102" and effect.final_code is False
    assert d.send(NoReplyRecorded(4, 3, 1, 2, True)) == Command("STREAM FILE", ("auth-thankyou", ""))
    assert d.send(OK) == Command("HANGUP")
    assert d.send(Result("1")).outcome == "no_reply"


def _noreply_recorded(result):
    d = new_dialog()
    d.start(env(script="noreply"))
    d.send(OK)
    d.send(Result("1001"))
    d.send(Result("1234"))
    return d, d.send(result)


def test_noreply_worker_hears_the_office_was_told_exactly_when_an_alert_was_stored():
    # No visit matched, but the alert was raised: the office has it, so "thank you" (office told).
    d, said = _noreply_recorded(NoReplyRecorded(4, None, 1, None, True))
    assert said == Command("STREAM FILE", ("auth-thankyou", ""))
    d.send(OK)
    assert d.send(Result("1")).outcome == "no_visit"
    # Nothing reached the office (no alert could be stored): the worker must not be told it did.
    _, said = _noreply_recorded(NoReplyRecorded(4, 3, 1, 2, False))
    assert said == Command("STREAM FILE", ("im-sorry", ""))


def test_script_name_comes_from_fastagi_path_or_process_agi_argument():
    assert script_name({"agi_network": "yes", "agi_network_script": "checkin?site=1"}) == "checkin"
    assert script_name({"agi_request": "carecall-agi", "agi_arg_1": "noreply"}) == "noreply"
    assert script_name({"agi_request": "carecall-agi"}) is None


def test_every_default_prompt_ships_in_debians_asterisk_core_sounds_en():
    listing = (Path(__file__).with_name("data") / "asterisk-core-sounds-en.txt").read_text().split()
    sounds = {Path(line).name.rsplit(".", 1)[0] for line in listing} | set(listing)
    for name, value in vars(Prompts()).items():
        for part in value.split("&"):  # "a&b": played one after the other
            assert part in sounds, f"prompt {name}={value!r}: {part!r} is not in asterisk-core-sounds-en"
