"""The lateness notice and quality-call dialogs as transcripts: replies in, actions out."""

from __future__ import annotations

from agi.codec import DeadChannel, Result
from ivr.dialog import Command, Finished
from ivr.outreach_dialogs import NoticeDialog, RecordNotice, RecordSurvey, SurveyDialog

OK = Result("0", endpos=8000)


def env(script: str, **extra: str) -> dict[str, str]:
    e = {"agi_network": "yes", "agi_network_script": script, "agi_request": f"agi://h/{script}",
         "agi_uniqueid": "1764577000.9", "agi_callerid": "carecall"}
    e.update(extra)
    return e


def play(name: str) -> Command:
    return Command("STREAM FILE", (name, ""))


def test_notice_plays_provider_and_message_twice_then_records_and_hangs_up():
    d = NoticeDialog()
    assert d.start(env("notice")) == Command("GET VARIABLE", ("CARECALL_NOTICE_ID",))
    assert d.send(Result("1", "42")) == Command("ANSWER")
    said = [d.send(OK)]
    while isinstance(said[-1], Command) and said[-1].verb == "STREAM FILE":
        said.append(d.send(OK))
    assert said[:-1] == [play("carecall/provider-name"), play("carecall/worker-running-late")] * 2 + [
        play("vm-goodbye")]
    assert said[-1] == RecordNotice(42, "played", "")
    assert d.send(None) == Command("HANGUP")
    end = d.send(Result("1"))
    assert isinstance(end, Finished) and end.outcome == "played"


def test_notice_id_from_the_request_path_and_a_hang_up_mid_message_is_recorded():
    d = NoticeDialog()
    assert d.start(env("notice?id=7")) == Command("ANSWER")
    assert d.send(OK) == play("carecall/provider-name")
    assert d.hangup("HANGUP line") == RecordNotice(7, "hung_up", "the callee hung up during the message (HANGUP line)")
    end = d.send(None)
    assert isinstance(end, Finished) and end.outcome == "hangup"


def test_notice_names_missing_sound_files_in_its_record():
    d = NoticeDialog()
    d.start(env("notice", agi_arg_1="9"))
    action = d.send(OK)  # ANSWER
    while isinstance(action, Command):
        action = d.send(Result("-1", endpos=0) if "carecall/" in action.args[0] else OK)
    assert action == RecordNotice(9, "played", "missing sound files: carecall/provider-name, "
                                  "carecall/worker-running-late, carecall/provider-name, carecall/worker-running-late")


def test_notice_without_an_id_hangs_up():
    d = NoticeDialog()
    assert d.start(env("notice")) == Command("GET VARIABLE", ("CARECALL_NOTICE_ID",))
    end = d.send(Result("0"))
    assert isinstance(end, Finished) and end.outcome == "error" and end.hang_up


def answer_survey(keys: list[str]) -> tuple[list[Command], object]:
    d = SurveyDialog(digit_timeout_ms=5000)
    assert d.start(env("survey?id=3")) == Command("ANSWER")
    assert d.send(OK) == play("carecall/provider-name")
    assert d.send(OK) == play("carecall/survey-intro")
    asked, action = [], d.send(OK)
    while isinstance(action, Command) and action.verb == "GET DATA":
        asked.append(action)
        action = d.send(Result(keys.pop(0)) if keys else DeadChannel())
    return asked, action


def test_survey_asks_three_questions_one_key_each_and_stores_4_5_3():
    asked, action = answer_survey(["4", "5", "3"])
    assert [c.args for c in asked] == [("carecall/survey-on-time", "5000", "1"),
                                       ("carecall/survey-did-what-needed", "5000", "1"),
                                       ("carecall/survey-recommend", "5000", "1")]
    assert action == RecordSurvey(3, (4, 5, 3), True, "")


def test_survey_asks_again_once_after_a_bad_key_then_stores_none():
    asked, action = answer_survey(["9", "2", "", "", "1"])
    assert len(asked) == 5
    assert action == RecordSurvey(3, (2, None, 1), False, "a question was not answered with 1 to 5")


def test_survey_hang_up_keeps_the_answers_given():
    _asked, action = answer_survey(["5"])
    assert isinstance(action, RecordSurvey)
    assert (action.answers, action.complete) == ((5, None, None), False)
    assert action.detail.startswith("ended at did_what_needed")


def test_a_server_shutdown_mid_notice_records_it_and_hangs_up():
    """The FastAGI server calls ``shut_down`` on every open call once its drain time is up;
    an outbound dialog shares the check-in's driving, so it has one (it had none: AttributeError)."""
    d = NoticeDialog()
    assert d.start(env("notice?id=5")) == Command("ANSWER")
    assert d.send(OK) == play("carecall/provider-name")
    assert d.shut_down("server shutting down") is None  # a command is in flight: applied at the next
    action = d.send(OK)  # instead of the next prompt, the outcome
    assert action == RecordNotice(5, "error", "server shutting down")
    end = d.send(None)
    assert isinstance(end, Finished) and end.outcome == "error" and end.hang_up


def test_a_server_shutdown_mid_survey_keeps_the_answers_given():
    d = SurveyDialog(digit_timeout_ms=5000)
    d.start(env("survey?id=3"))
    action = d.send(OK)
    while isinstance(action, Command) and action.verb != "GET DATA":
        action = d.send(OK)
    action = d.send(Result("4"))  # the first question answered
    d.shut_down("server shutting down")
    while isinstance(action, Command):
        action = d.send(OK)
    assert isinstance(action, RecordSurvey) and action.survey_id == 3 and action.answers[0] == 4
    assert not action.complete
