"""Logs: structured, one line per call step with the uniqueid; no PIN, no resident name, no full number.

In process with ``twisted.logger.capturedLogs`` (the events and their fields), and in a
``carecall run`` subprocess (the text an operator reads).
"""

from __future__ import annotations

import re
import socket

import pytest_twisted
from twisted.logger import LogLevel, capturedLogs, formatEvent

from agi.fastagi import redact
from agi.simulator import CallScript, simulate_blocking
from tests.callhelpers import R001_LINE, T0, start_server
from tests.faults import default_visits, running, settings_for, world

NAMES = ("Alice", "Brown", "Bob Green", "Cara White", "Wendy", "Walker", "Sam Smith", "Priya")
FULL_NUMBERS = ("2086989911", "2086989922", "2086989933", "79460000", "7911123")
PINS = ("1234", "2345", "3456", "9876")


def _assert_clean(text: str) -> None:
    for secret in NAMES + FULL_NUMBERS:
        assert secret not in text, secret
    for pin in PINS:
        assert not re.search(rf"(?<![\d.]){pin}(?![\d.])", text), pin


def test_redact_masks_numbers_to_the_last_three_digits_and_short_runs_whole():
    assert redact("line 'agi_callerid: 02086989911' bad") == "line 'agi_callerid: ********911' bad"
    assert redact("pin 1234 then +44 20 8698 9911") == "pin **** then *********911"


@pytest_twisted.inlineCallbacks
def test_every_call_step_is_one_structured_line_with_the_uniqueid_and_nothing_personal(db_url, tmp_path):
    settings = settings_for(db_url, tmp_path)
    world(settings, *default_visits())
    server = start_server(settings)
    try:
        with capturedLogs() as events:
            server.at(T0)
            yield server.call(callerid=R001_LINE, digits=["1001", "1234"], uniqueid="log.ok")
            yield server.call(callerid="020 7946 0000", digits=["101", "1001", "9876", "1001", "9876", "1001",
                                                                "9876"], uniqueid="log.bad")
            yield server.call(callerid=R001_LINE, digits=["1002"], hangup_after=3, uniqueid="log.gone")
            yield server.call(callerid=None, digits=["999", "", ""], uniqueid="log.unknown")
    finally:
        yield server.stop()
    agi = [e for e in events if e.get("log_namespace") == "carecall.agi"]
    assert agi
    for e in agi:
        assert e.get("uniqueid", "").startswith("log."), e  # every line carries the call's uniqueid
        _assert_clean(formatEvent(e))
        _assert_clean(repr({k: v for k, v in e.items() if not k.startswith("log_") or k == "log_format"}))
    ok = [e["stage"] for e in agi if e["uniqueid"] == "log.ok" and "outcome" not in e]
    assert ok == ["answer", "line_lookup", "worker_number", "pin", "recording", "confirming", "done"]
    [end] = [e for e in agi if e["uniqueid"] == "log.ok" and "outcome" in e]
    assert end["outcome"] == "arrival" and end["caller"] == "*********911" and end["log_level"] == LogLevel.info
    assert {e["outcome"] for e in agi if "outcome" in e} == {"arrival", "failed_login", "hangup", "unknown_line"}


def test_a_running_server_writes_no_pin_name_or_full_number(db_url, tmp_path):
    url = db_url
    settings = settings_for(url, tmp_path)
    world(settings, *default_visits())
    with running(tmp_path, url) as server:
        port = server.agi_port
        simulate_blocking("127.0.0.1", port, CallScript(callerid="02086989911", digits=["1001", "1234"],
                                                        uniqueid="sub.1"))
        simulate_blocking("127.0.0.1", port, CallScript(callerid="02086989922", digits=["1002", "9876"] * 3,
                                                        uniqueid="sub.2"))
        with socket.create_connection(("127.0.0.1", port)) as s:  # garbage carrying a number and a PIN
            s.sendall(b"agi_callerid 02086989933 pin 3456\n\n")
            s.recv(100)
        server.terminate()
        text = server.log()
    assert "call sub.1" in text and "outcome=arrival" in text and "stage=pin" in text
    assert "outcome=failed_login" in text and "protocol error" in text
    _assert_clean(text)


# ---------------------------------------------------------------- issue 14: peer text cannot forge log lines

FORGED = "log.evil\r2026-12-01T09:00:00+0000 [x#info] ok\x1b[2K\x1b]0;owned\x07"


def test_printable_escapes_every_control_character_and_caps_the_length():
    from ivr.logsafe import printable

    assert printable("1700000000.42") == "1700000000.42"
    assert printable("a\rb\nc\x1b[2Kd\x00\x7f\u2028") == "a\\x0db\\x0ac\\x1b[2Kd\\x00\\x7f\\u2028"
    assert printable("x" * 500) == "x" * 120 + "…"


def test_a_forged_uniqueid_stays_inside_one_log_line_of_a_running_server(db_url, tmp_path):
    settings = settings_for(db_url, tmp_path)
    world(settings, *default_visits())
    with running(tmp_path, db_url) as server:
        simulate_blocking("127.0.0.1", server.agi_port, CallScript(callerid="02086989911", digits=["1001", "1234"],
                                                                   uniqueid=FORGED))
        with socket.create_connection(("127.0.0.1", server.agi_port)) as s:  # garbage with an ESC and a CR
            s.sendall(b"agi_uniqueid: x\x1b[31m\rforged\n\x00bad\n\n")
            s.recv(100)
        server.terminate()
        raw = server.log_path.read_bytes()
    assert b"\r" not in raw and b"\x1b" not in raw and b"\x07" not in raw
    text = raw.decode()
    visible = "call log.evil\\x0d2026-12-01T09:00:00+0000 [x#info] ok\\x1b[2K\\x1b]0;owned\\x07 caller="
    assert visible + "*********911 script=checkin outcome=arrival" in text  # one entry, the forgery visible inside
    entry = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[[\w.#-]+\] ")
    for line in text.splitlines():
        assert entry.match(line) or line.startswith("\t") or not line.strip(), repr(line)
