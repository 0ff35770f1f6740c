"""The fuzz targets for the AGI codec and the call dialog: run by atheris (bench/fuzz_agi.py) and Hypothesis (tests).

Two targets in one input (the first byte chooses):

* **codec** — arbitrary bytes, split into reads at arbitrary points, fed to
  :class:`agi.codec.AGIConnection`; a command is sent whenever the connection is idle
  so that replies are parsed too. Only :class:`RemoteProtocolError` may come out, and
  the bytes held never exceed :data:`MAX_LINE` plus one read.
* **dialog** — a :class:`ivr.dialog.Dialog` driven by a reply script from the input:
  each reply is either one of the shapes Asterisk really sends or raw bytes through the
  codec; each effect gets a result (or a database failure) chosen by the input. The
  dialog must never raise, must end in :class:`Finished` within a bounded number of
  steps, and may only send commands the codec accepts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from agi.codec import (
    MAX_ENV_LINES,
    MAX_LINE,
    NEED_DATA,
    AGIConnection,
    Closed,
    Environment,
    Hangup,
    LocalProtocolError,
    RemoteProtocolError,
)
from carecall.config import Prompts
from ivr.dialog import (
    AppendJournal,
    CheckedIn,
    CheckIn,
    Command,
    Dialog,
    DialogConfig,
    Finished,
    Journalled,
    LoginFailed,
    LookupLine,
    LookupPhoneCode,
    NeedPhoneCode,
    NoReplyCall,
    NoReplyRecorded,
    RecordCall,
    Wait,
)

MAX_STEPS = 200  # a dialog has at most ~25 commands and effects; more would be a loop
CONFIG = DialogConfig(prompts=Prompts())
T = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)

REPLIES = [
    b"200 result=0\n", b"200 result=1\n", b"200 result=1001\n", b"200 result=1234\n", b"200 result=101\n",
    b"200 result= (timeout)\n", b"200 result=12 (timeout)\n", b"200 result=-1\n", b"200 result=0 endpos=1200\n",
    b"HANGUP\n", b"511 Command Not Permitted on a dead channel or intercept routine\n",
    b"510 Invalid or unknown command\n", b"520-Invalid command syntax.\nUsage: GET DATA\n520 End of proper usage.\n",
    b"200 result=-1\nHANGUP\n", b"\n",
]
ENVS = [
    {"agi_network": "yes", "agi_network_script": "checkin", "agi_request": "agi://h/checkin",
     "agi_uniqueid": "1.1", "agi_callerid": "02086989911"},
    {"agi_network": "yes", "agi_network_script": "checkin", "agi_request": "agi://h/checkin",
     "agi_uniqueid": "1.2", "agi_callerid": "unknown"},
    {"agi_network": "yes", "agi_network_script": "noreply", "agi_request": "agi://h/noreply",
     "agi_uniqueid": "1.3", "agi_callerid": "07911123001"},
    {"agi_request": "x", "agi_arg_1": "checkin", "agi_uniqueid": "1.4", "agi_callerid": "+4420"},
    {"agi_network": "yes", "agi_network_script": "payroll", "agi_request": "agi://h/p", "agi_uniqueid": "1.5"},
    {"agi_network": "yes"},
]


class Reader:
    """Consumes the fuzz input as small choices; past the end every choice is 0."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


# ---------------------------------------------------------------- codec target


def fuzz_codec(data: bytes) -> int:
    """Returns the number of events parsed. Raises AssertionError on a broken invariant."""
    r = Reader(data)
    conn = AGIConnection()
    parsed = 0
    while not r.done:
        chunk = r.take(1 + r.byte() * 37)
        try:
            conn.receive_data(chunk)
            while True:
                if conn.state == "idle":
                    conn.send("GET DATA", "agent-pass", "6000", "4")
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                parsed += 1
                if isinstance(event, Environment):
                    assert len(event.vars) <= MAX_ENV_LINES
                if isinstance(event, Closed):
                    return parsed
        except RemoteProtocolError:
            return parsed
        assert len(conn._buffer) <= MAX_LINE + len(chunk) + 1, "buffer beyond one line plus one read"
    conn.receive_data(b"")
    try:
        while not isinstance(conn.next_event(), Closed):
            parsed += 1
    except RemoteProtocolError:
        pass
    return parsed


# ---------------------------------------------------------------- dialog target


def _effect_result(effect: Any, r: Reader) -> Any:
    """A plausible result for an effect, or None to make it fail (database down)."""
    choice = r.byte()
    if choice % 11 == 10:
        return None
    if isinstance(effect, LookupLine | LookupPhoneCode):
        return tuple(range(1, 1 + choice % 3))
    if isinstance(effect, RecordCall):
        return 1 + choice
    if isinstance(effect, AppendJournal):
        return Journalled(f"ev{choice}", T)
    if isinstance(effect, Wait):
        assert 0 <= effect.seconds <= 3600
        return None
    if isinstance(effect, CheckIn):
        if choice % 4 == 0:
            return LoginFailed(call_record_id=choice if effect.final_try else None, delay=choice % 3,
                               locked=choice % 7 == 0)
        return CheckedIn("arrival" if choice % 2 else "departure", T, 1, None if choice % 3 else 2,
                         "scheduled", 3, 4, 5, duplicate=choice % 5 == 0)
    if isinstance(effect, NoReplyCall):
        if choice % 4 == 0:
            return LoginFailed(call_record_id=choice if effect.final_try else None)
        if choice % 4 == 1 and not effect.final_code:
            return NeedPhoneCode(2)
        return NoReplyRecorded(1, 2 if choice % 2 else None, 3, 4, bool(choice % 3))
    raise AssertionError(f"unknown effect {effect!r}")


def fuzz_dialog(data: bytes) -> str:
    """Drive one dialog from the input; returns its outcome."""
    r = Reader(data)
    env = dict(ENVS[r.byte() % len(ENVS)])
    if r.byte() % 4 == 0:  # a hostile environment value
        env["agi_callerid"] = r.take(r.byte() % 64).decode("utf-8", "replace")
    dialog = Dialog(CONFIG, lambda: T.timestamp())
    codec = AGIConnection(environment_received=True)
    action: Any = dialog.start(env)
    steps = 0
    while not isinstance(action, Finished):
        steps += 1
        assert steps <= MAX_STEPS, f"dialog did not finish in {MAX_STEPS} steps"
        if action is None:  # a hang-up arrived while an effect was in flight: never here
            raise AssertionError("dialog returned None with no effect in flight")
        if isinstance(action, Command):
            try:
                codec.send(action.verb, *action.args)
            except LocalProtocolError as exc:
                raise AssertionError(f"dialog built a command the codec refuses: {exc}") from exc
            if r.done:
                action = dialog.hangup("connection closed")
                continue
            pick = r.byte()
            raw = REPLIES[pick % len(REPLIES)] if pick < 200 else r.take(1 + pick % 50) + b"\n"
            try:
                codec.receive_data(raw)
                event = codec.next_event()
                while event is NEED_DATA or (isinstance(event, Hangup) and not codec.awaiting_reply):
                    if event is NEED_DATA:
                        codec.receive_data(b"200 result=0\n")
                    event = codec.next_event()
            except RemoteProtocolError:
                action = dialog.hangup("protocol error")
                codec = AGIConnection(environment_received=True)  # a new stream for what remains
                continue
            if isinstance(event, Hangup):
                action = dialog.hangup("HANGUP")
                if action is None:
                    raise AssertionError("hang-up during a command gave no action")
                codec = AGIConnection(environment_received=True)
            elif isinstance(event, Closed):
                action = dialog.hangup("closed")
            else:
                action = dialog.send(event)
        else:
            result = _effect_result(action, r)
            if result is None and not isinstance(action, Wait):
                action = dialog.effect_failed("fuzz: database down")
            else:
                action = dialog.send(result)
    return str(action.outcome)


def one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        fuzz_codec(data[1:])
    else:
        fuzz_dialog(data[1:])
