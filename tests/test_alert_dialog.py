"""The on-call alert call as plain calls (sans-IO transcripts): replies and effect results in, actions out."""

from __future__ import annotations

import datetime as dt

from agi.codec import DeadChannel, Result
from ivr.alert_dialog import (
    AcceptAlert,
    Accepted,
    AlertBrief,
    AlertCallEnded,
    AlertCallStarted,
    AlertDialog,
    AlertDialogConfig,
    AlertPrompts,
    AlreadyHandled,
    PassAlertOn,
    PinRejected,
    alert_args,
)
from ivr.dialog import Command, Finished

NOW = dt.datetime(2026, 3, 10, 22, 5, tzinfo=dt.UTC)
DUE = dt.datetime(2026, 3, 10, 21, 45, tzinfo=dt.UTC)
OK = Result("0")
KEY1, KEY2 = Result(str(ord("1"))), Result(str(ord("2")))
MENU = "if-correct-press&digits/1&vm-press&digits/2&vm-for&vm-next"
MENU_GET = Command("GET DATA", ("vm-next", "6000", "1"))


def through(d, first, parts, escape="12"):
    """Asterisk plays one file per command: each part of a prompt is its own STREAM FILE."""
    nxt = first
    for part in parts:
        assert nxt == Command("STREAM FILE", (part, escape))
        nxt = d.send(OK)
    return nxt


def menu(d, first, invalid=False):
    """The menu question: every part but the last with 1 and 2 as escapes, then GET DATA the last."""
    parts = MENU.split("&")[:-1]
    return through(d, first, (["pm-invalid-option"] if invalid else []) + parts)


def bye(d, first, *parts):
    nxt = through(d, first, [*parts, "vm-goodbye"], escape="")
    assert nxt == Command("HANGUP")
    return d.send(Result("1"))


def env(script="alert?alert=12&delivery=34"):
    return {"agi_network": "yes", "agi_network_script": script, "agi_request": f"agi://h/{script}",
            "agi_uniqueid": "1741644300.9", "agi_callerid": "carecall", "agi_calleridname": "carecall alert"}


def new_dialog(**cfg):
    return AlertDialog(AlertDialogConfig(**cfg), clock=lambda: NOW.timestamp())


def brief(kind="missed", ref="R004", open_=True):
    return AlertBrief(kind, DUE, ref, open_)


def told(d, kind="missed", ref="R004"):
    """Start the call and hear the facts without pressing anything; returns the first menu GET DATA."""
    assert d.start(env()) == Command("ANSWER")
    assert d.send(OK) == AlertCallStarted(12, 34, "1741644300.9", NOW)
    assert d.send(brief(kind, ref)) == Command("STREAM FILE", ("vm-Urgent", "12"))
    nxt = d.send(OK)
    if kind == "no_reply":
        assert nxt == Command("STREAM FILE", ("number-not-answering", "12"))
        nxt = d.send(OK)
    assert nxt == Command("STREAM FILE", ("vm-received", "12"))
    assert d.send(OK) == Command("SAY TIME", (str(int(DUE.timestamp())), "12"))
    assert d.send(OK) == Command("STREAM FILE", ("vm-from", "12"))
    # The reference character by character; never the resident's name.
    verb = "SAY DIGITS" if ref.isdigit() else "SAY ALPHA"
    assert d.send(OK) == Command(verb, (ref, "12"))
    return d.send(OK)


def test_accepting_with_1_and_the_pin_acknowledges_as_that_user():
    d = new_dialog()
    assert menu(d, told(d)) == MENU_GET
    assert d.send(Result("1")) == Command("GET DATA", ("agent-pass", "6000", "4"))
    assert d.send(Result("1234")) == AcceptAlert(12, 34, "1234", NOW, final_try=False)
    fin = bye(d, d.send(Accepted("alice")), "auth-thankyou")
    assert isinstance(fin, Finished) and fin.outcome == "accepted"
    assert fin.record == {"alert_id": 12, "delivery_id": 34, "outcome": "accepted"}


def test_a_key_pressed_while_the_facts_are_read_counts():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    assert d.send(brief()) == Command("STREAM FILE", ("vm-Urgent", "12"))
    assert d.send(OK) == Command("STREAM FILE", ("vm-received", "12"))
    # "1" pressed during SAY TIME: straight to the PIN.
    assert d.send(OK) == Command("SAY TIME", (str(int(DUE.timestamp())), "12"))
    assert d.send(KEY1) == Command("GET DATA", ("agent-pass", "6000", "4"))


def test_wrong_pin_is_asked_again_and_three_wrong_end_the_call_for_the_chain_to_move_on():
    d = new_dialog()
    menu(d, told(d))
    d.send(Result("1"))
    assert d.send(Result("0000")) == AcceptAlert(12, 34, "0000", NOW, final_try=False)
    again = Command("GET DATA", ("agent-pass", "6000", "4"))
    assert through(d, d.send(PinRejected()), ["auth-incorrect"], escape="") == again
    assert through(d, d.send(Result("12")), ["auth-incorrect"], escape="") == again  # too short
    assert d.send(Result("9999")) == AcceptAlert(12, 34, "9999", NOW, final_try=True)
    assert d.send(PinRejected()) == AlertCallEnded(12, 34, NOW, "wrong PIN 3 times")
    assert bye(d, d.send(None), "auth-incorrect").outcome == "wrong_pin"


def test_pass_it_on_with_2():
    d = new_dialog()
    menu(d, told(d))
    assert d.send(Result("2")) == PassAlertOn(12, 34, NOW)
    assert bye(d, d.send(None), "auth-thankyou").outcome == "passed_on"


def test_pass_it_on_pressed_during_the_facts():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    d.send(brief())
    assert d.send(KEY2) == PassAlertOn(12, 34, NOW)


def test_no_key_repeats_the_menu_then_ends_without_a_decision():
    d = new_dialog()
    menu(d, told(d))
    assert menu(d, d.send(Result(""))) == MENU_GET
    assert menu(d, d.send(Result("7")), invalid=True) == MENU_GET
    assert d.send(Result("")) == AlertCallEnded(12, 34, NOW, "no key pressed")
    assert bye(d, d.send(None)).outcome == "no_key"
    # A key pressed during the question's first parts is taken at once.
    d = new_dialog()
    assert told(d) == Command("STREAM FILE", ("if-correct-press", "12"))
    assert d.send(KEY1) == Command("GET DATA", ("agent-pass", "6000", "4"))


def test_hang_up_mid_call_is_recorded_for_the_chain():
    d = new_dialog()
    menu(d, told(d))
    d.send(Result("1"))
    assert d.hangup("HANGUP from Asterisk") == AlertCallEnded(12, 34, NOW, "hung up (pin)")
    fin = d.send(None)
    assert isinstance(fin, Finished) and fin.outcome == "hangup"
    # A dead channel reply is the same.
    d = new_dialog()
    menu(d, told(d))
    assert d.send(DeadChannel()) == AlertCallEnded(12, 34, NOW, "hung up (menu)")


def test_someone_else_took_it_while_the_phone_rang():
    d = new_dialog()
    d.start(env())
    d.send(OK)
    assert bye(d, d.send(brief(open_=False)), "cancelled").outcome == "already_handled"
    # … or between the menu and the PIN.
    d = new_dialog()
    menu(d, told(d))
    d.send(Result("1"))
    d.send(Result("1234"))
    assert d.send(AlreadyHandled("bob")) == Command("STREAM FILE", ("cancelled", ""))


def test_numeric_reference_is_said_as_digits_and_kind_prompts_are_configurable():
    d = new_dialog()
    assert menu(d, told(d, kind="no_reply", ref="4711")) == MENU_GET
    d = new_dialog(prompts=AlertPrompts(intro="custom/alert", kinds={"missed": "custom/missed"}, menu="custom/menu"))
    d.start(env())
    d.send(OK)
    assert d.send(brief()) == Command("STREAM FILE", ("custom/alert", "12"))
    assert d.send(OK) == Command("STREAM FILE", ("custom/missed", "12"))
    for _ in range(4):  # when, SAY TIME, resident, SAY ALPHA
        nxt = d.send(OK)
    assert nxt.verb == "SAY ALPHA" and d.send(OK) == Command("GET DATA", ("custom/menu", "6000", "1"))


def test_a_call_without_alert_and_delivery_ids_hangs_up():
    assert alert_args(env("alert?alert=5&delivery=6")) == (5, 6)
    assert alert_args(env("alert?alert=x")) is None
    fin = new_dialog().start(env("alert"))
    assert isinstance(fin, Finished) and fin.outcome == "error" and fin.hang_up


def test_every_default_alert_prompt_ships_in_debians_asterisk_core_sounds_en():
    from pathlib import Path

    listing = (Path(__file__).with_name("data") / "asterisk-core-sounds-en.txt").read_text().split()
    sounds = {Path(line).name.rsplit(".", 1)[0] for line in listing} | {
        line.removeprefix("./usr/share/asterisk/sounds/en/").rsplit(".", 1)[0] for line in listing} | set(listing)
    prompts = AlertPrompts()
    for name, value in [*vars(prompts).items(), *(("kind " + k, v) for k, v in prompts.kinds.items())]:
        if not isinstance(value, str) or not value:
            continue
        for part in value.split("&"):
            assert part in sounds, f"alert prompt {name}: {part!r} is not in asterisk-core-sounds-en"
