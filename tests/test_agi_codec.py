"""The AGI codec against byte transcripts: no sockets, no reactor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agi.codec import (
    MAX_LINE,
    NEED_DATA,
    AGIConnection,
    Closed,
    DeadChannel,
    Environment,
    Hangup,
    InvalidCommand,
    LocalProtocolError,
    RemoteProtocolError,
    Result,
    UsageError,
    format_command,
)

ENV = (
    b"agi_network: yes\r\nagi_network_script: checkin\nagi_request: agi://127.0.0.1/checkin\n"
    b"agi_uniqueid: 1741597200.7\nagi_callerid: 02086989911\nagi_calleridname: Jos\xe9 \xff\n"
    b"agi_arg_1: \n\n"
)


def events(conn: AGIConnection) -> list[object]:
    out = []
    while (e := conn.next_event()) is not NEED_DATA:
        out.append(e)
        if isinstance(e, Closed):
            break
    return out


def ready() -> AGIConnection:
    c = AGIConnection()
    c.receive_data(ENV)
    [env] = events(c)
    assert isinstance(env, Environment)
    return c


def test_environment_is_one_event_after_the_blank_line_even_split_across_reads():
    c = AGIConnection()
    for i in range(len(ENV)):
        c.receive_data(ENV[i : i + 1])
        got = events(c)
        if i < len(ENV) - 1:
            assert got == []
    env = got[0]
    assert env.vars["agi_network_script"] == "checkin" and env.vars["agi_uniqueid"] == "1741597200.7"
    assert env.vars["agi_arg_1"] == ""


def test_caller_id_name_that_is_not_utf8_is_decoded_with_replacement():
    c = AGIConnection()
    c.receive_data(ENV)
    [env] = events(c)
    assert env.vars["agi_calleridname"] == "Jos\ufffd \ufffd"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"200 result=0\n", Result("0")),
        (b"200 result=1001\n", Result("1001")),
        (b"200 result=12 (timeout)\n", Result("12", "timeout")),
        (b"200 result= (timeout)\n", Result("", "timeout")),
        (b"200 result=-1\n", Result("-1")),
        (b"200 result=0 endpos=12345\n", Result("0", None, 12345)),
        (b"200 result=1 (value (with) parens)\n", Result("1", "value (with) parens")),
        (b"511 Command Not Permitted on a dead channel or intercept routine\n",
         DeadChannel("Command Not Permitted on a dead channel or intercept routine")),
        (b"510 Invalid or unknown command\n", InvalidCommand("Invalid or unknown command")),
        (b"520 Invalid command syntax.  Proper usage not available.\n",
         UsageError(("Invalid command syntax.  Proper usage not available.",))),
    ],
)
def test_reply_lines_parse_to_typed_events(line, expected):
    c = ready()
    c.send("GET DATA", "agent-user", 6000, 8)
    c.receive_data(line)
    assert events(c) == [expected]
    assert not c.awaiting_reply


def test_multi_line_520_usage_is_one_reply():
    c = ready()
    c.send("SAY TIME", "x", "")
    c.receive_data(b"520-Invalid command syntax.  Proper usage follows:\n Usage: SAY TIME <time> <escape digits>\n"
                   b"  Say a given time.\n520 End of proper usage.\n")
    [e] = events(c)
    assert isinstance(e, UsageError) and e.lines[0].startswith("Invalid") and e.lines[-1] == "End of proper usage."
    assert len(e.lines) == 4


def test_hangup_line_is_never_a_reply_and_the_reply_still_follows():
    c = ready()
    c.send("STREAM FILE", "goodbye", "")
    c.receive_data(b"HANGUP\n200 result=0 endpos=100\n")
    assert events(c) == [Hangup(), Result("0", None, 100)]


def test_caller_hangup_during_get_data_gives_minus_one_then_hangup_then_511():
    c = ready()
    c.send("GET DATA", "agent-pass", 6000, 4)
    c.receive_data(b"200 result=-1\nHANGUP\n")
    assert events(c) == [Result("-1"), Hangup()]
    c.send("STREAM FILE", "goodbye", "")
    c.receive_data(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    assert isinstance(events(c)[0], DeadChannel)


def test_after_our_hangup_the_reply_then_their_hangup_line_then_close():
    c = ready()
    c.send("HANGUP")
    c.receive_data(b"200 result=1\nHANGUP\n")
    assert events(c) == [Result("1"), Hangup()]
    c.receive_data(b"")
    assert events(c) == [Closed()]


def test_send_is_refused_while_a_reply_is_outstanding():
    c = ready()
    c.send("ANSWER")
    with pytest.raises(LocalProtocolError, match="no reply yet"):
        c.send("STREAM FILE", "beep", "")


def test_send_is_refused_before_the_environment():
    with pytest.raises(LocalProtocolError, match="before the environment"):
        AGIConnection().send("ANSWER")


def test_arguments_are_quoted_and_escaped():
    assert format_command("STREAM FILE", "goodbye", "") == b'STREAM FILE goodbye ""\n'
    assert format_command("GET DATA", "agent-incorrect&agent-user", 6000, 8) == \
        b"GET DATA agent-incorrect&agent-user 6000 8\n"
    assert format_command("SET VARIABLE", "X", 'say "hi" \\ there') == b'SET VARIABLE X "say \\"hi\\" \\\\ there"\n'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("a\nb",), "newline"),
        (("x" * MAX_LINE,), "at most 8192"),
        (tuple("a" * 127), "at most 128"),
    ],
)
def test_commands_agi_cannot_carry_are_refused(args, message):
    c = ready()
    with pytest.raises(LocalProtocolError, match=message):
        c.send("SET VARIABLE", *args)
    c.send("ANSWER")  # nothing was sent: the connection is still usable


def test_reply_with_no_command_outstanding_is_a_remote_error():
    c = ready()
    c.receive_data(b"200 result=0\n")
    with pytest.raises(RemoteProtocolError, match="no command outstanding"):
        events(c)


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\n", b"hello\n\n"],
)
def test_garbage_environment_is_a_remote_error_with_a_clear_message(data):
    c = AGIConnection()
    c.receive_data(data)
    with pytest.raises(RemoteProtocolError, match="agi_name: value"):
        events(c)
    with pytest.raises(RemoteProtocolError):
        c.next_event()  # stays failed


def test_line_longer_than_the_limit_is_refused_before_it_ends():
    c = AGIConnection()
    c.receive_data(b"agi_request: " + b"x" * (MAX_LINE + 10))
    with pytest.raises(RemoteProtocolError, match="longer than 8192"):
        events(c)


def test_environment_has_a_bounded_number_of_lines():
    c = AGIConnection()
    c.receive_data(b"".join(b"agi_arg_%d: x\n" % i for i in range(300)))
    with pytest.raises(RemoteProtocolError, match="environment longer"):
        events(c)


def test_unknown_reply_code_is_a_remote_error():
    c = ready()
    c.send("ANSWER")
    c.receive_data(b"999 what\n")
    with pytest.raises(RemoteProtocolError, match="unexpected AGI reply code 999"):
        events(c)


def test_eof_gives_closed_and_sending_afterwards_is_refused():
    c = ready()
    c.receive_data(b"")
    assert events(c) == [Closed()]
    with pytest.raises(LocalProtocolError, match="closed"):
        c.send("ANSWER")


def _outcome(chunks: list[bytes]) -> tuple[str, object]:
    c = AGIConnection()
    try:
        for chunk in chunks:
            c.receive_data(chunk)
            event = c.next_event()
            if event is not NEED_DATA:
                return "event", event
        return "need data", None
    except RemoteProtocolError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("data", [
    ENV,
    ENV + b"200 result=0\n",
    b"agi_a: 1\r\n\r\nHANGUP\n",
    b"\n",
    b"agi_a: 1\nnot env\n\n",
    b"agi_a: " + b"x" * (MAX_LINE + 1) + b"\n\n",
    b"agi_a: " + b"x" * (MAX_LINE - 8) + b"\n\n",
    b"".join(b"agi_arg_%d: x\n" % i for i in range(255)) + b"\n",
    b"".join(b"agi_arg_%d: x\n" % i for i in range(256)) + b"\n",
    b"".join(b"agi_v%d: " % i + b"y" * 4000 + b"\n" for i in range(16)) + b"\n",
    b"".join(b"agi_v%d: " % i + b"y" * 4080 + b"\n" for i in range(16)) + b"\n",
])
def test_the_environment_reads_the_same_whole_or_byte_by_byte(data):
    """The whole-environment fast path and the line-by-line path agree, limits and errors included."""
    whole = _outcome([data])
    assert whole == _outcome([data[i : i + 1] for i in range(len(data))])
    assert whole == _outcome([c for c in (data[: len(data) // 2], data[len(data) // 2 :]) if c])


_ENV_PIECES = ["agi_", "a", "Z", "_", "9", ":", " ", "\t", "\r", "\x0b", "\x85", "\u2028", "é", "x y", "\n"]


_ANY_LINE = st.lists(st.sampled_from(_ENV_PIECES), max_size=8).map("".join)
_ENV_LIKE_LINE = st.builds(lambda name, sep, value: f"agi_{name}:{sep}{value}",
                           st.text("az_9", min_size=1, max_size=4), st.sampled_from(["", " ", "\t", "\r", "\x85"]),
                           st.lists(st.sampled_from([p for p in _ENV_PIECES if p != "\n"]), max_size=5).map("".join))


@given(st.lists(st.one_of(_ENV_LIKE_LINE, _ENV_LIKE_LINE, _ENV_LIKE_LINE, _ANY_LINE), min_size=1, max_size=6))
@settings(max_examples=400, deadline=None)
def test_any_environment_reads_the_same_whole_or_byte_by_byte(lines):
    data = ("\n".join(lines) + "\n\n").encode("utf-8")
    whole = _outcome([data])
    assert whole == _outcome([data[i : i + 1] for i in range(len(data))])
