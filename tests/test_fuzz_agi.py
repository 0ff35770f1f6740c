"""Hostile input: the AGI codec and the dialog under Hypothesis, and the per-connection limits.

The fuzz targets are the ones atheris runs for a million inputs (bench/fuzz_agi.py,
figures in docs/reliability.md). The limits: one line at most MAX_LINE bytes, the
environment at most MAX_ENV_LINES lines / MAX_ENV_BYTES bytes, a peer silent for
``agi_idle_timeout`` or a call longer than ``agi_call_limit`` is cut (task.Clock).
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.defer import succeed
from twisted.internet.testing import StringTransport

from agi.codec import MAX_ENV_BYTES, MAX_ENV_LINES, MAX_LINE, AGIConnection, RemoteProtocolError
from agi.fastagi import FastAGIFactory
from bench.fuzz_targets import REPLIES, fuzz_codec, fuzz_dialog, one_input
from carecall.config import Prompts
from ivr.dialog import CheckIn, DialogConfig, LoginFailed, LookupLine, LookupPhoneCode, RecordCall

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=3000))
def test_codec_takes_any_bytes_without_crashing_or_holding_more_than_a_line(data):
    fuzz_codec(data)


@FUZZ
@given(st.lists(st.sampled_from(REPLIES), max_size=40).map(b"".join), st.integers(0, 255))
def test_codec_parses_any_sequence_of_real_asterisk_replies(replies, split):
    fuzz_codec(bytes([split]) + b"agi_uniqueid: 1.1\n\n" + replies)


@FUZZ
@given(st.binary(max_size=600))
def test_dialog_always_finishes_and_sends_only_valid_commands(data):
    assert fuzz_dialog(data)


@FUZZ
@given(st.lists(st.integers(0, 199), min_size=2, max_size=80).map(bytes))
def test_dialog_with_only_real_reply_shapes_always_finishes(data):
    assert fuzz_dialog(data)


def test_regression_noreply_login_failed_during_phone_code_is_a_failed_login_not_a_crash():
    # Found by atheris: a lock taken between two effects of a no-reply call.
    one_input(bytes([0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0x2F, 0x3D, 0, 1, 0, 0, 0, 0, 0x39, 0x6E, 0x6E]))
    assert fuzz_dialog(bytes([2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x2F, 0x3D, 0, 1, 0, 0, 0, 0, 0x39, 0x6E, 0x6E]))


def test_a_line_with_no_end_is_refused_once_it_passes_the_limit():
    c = AGIConnection()
    c.receive_data(b"agi_request: " + b"x" * (MAX_LINE - 20))
    assert c.next_event() is not None  # still within one line: waits
    c.receive_data(b"y" * 100)
    with pytest.raises(RemoteProtocolError, match="longer than"):
        c.next_event()
    assert len(c._buffer) == 0  # memory released


def test_environment_is_bounded_in_lines_and_bytes():
    c = AGIConnection()
    c.receive_data(b"".join(b"agi_arg_%d: x\n" % i for i in range(MAX_ENV_LINES + 1)))
    with pytest.raises(RemoteProtocolError, match="environment longer"):
        while True:
            c.next_event()
    c = AGIConnection()
    line = b"agi_callerid: " + b"9" * (MAX_LINE - 20) + b"\n"
    c.receive_data(line * (MAX_ENV_BYTES // len(line) + 1))
    with pytest.raises(RemoteProtocolError, match="environment longer"):
        while True:
            c.next_event()


class _Recorder:
    """Effects on the reactor thread (no database): only what the time limits need."""

    def __init__(self) -> None:
        self.records: list[RecordCall] = []

    def run(self, effect):
        if isinstance(effect, LookupLine | LookupPhoneCode):
            return (1,)
        if isinstance(effect, CheckIn):
            return LoginFailed()
        self.records.append(effect)
        return len(self.records)


def _factory(clock: task.Clock, store: _Recorder) -> FastAGIFactory:
    return FastAGIFactory(DialogConfig(prompts=Prompts()), store, lambda fn, *a: succeed(fn(*a)), clock,
                          idle_timeout=60.0, call_limit=600.0)


def _connect(factory: FastAGIFactory):
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_a_peer_silent_for_the_idle_timeout_is_cut():
    clock = task.Clock()
    store = _Recorder()
    f = _factory(clock, store)
    proto, transport = _connect(f)
    proto.dataReceived(b"agi_network: yes\nagi_network_script: checkin\nagi_request: agi://h/checkin\n"
                       b"agi_uniqueid: idle.1\nagi_callerid: unknown\n\n")
    assert transport.value() == b"ANSWER\n"
    clock.advance(59.9)
    assert not transport.disconnecting and not transport.disconnected
    clock.advance(0.2)
    assert transport.disconnected or transport.disconnecting
    assert f.active == 0 or f.finished == 1
    [rec] = store.records
    assert (rec.outcome, rec.stage) == ("hangup", "answer") and "silent" in rec.detail


def test_a_slow_drip_that_keeps_the_line_alive_is_cut_at_the_call_limit():
    """One byte every 50 s never trips the idle timeout; the total limit (600 s) still ends it.

    (Dripping the environment itself is cut sooner, at ``agi_environment_timeout``:
    tests/test_agi_peers.py.) Here the environment is whole and the reply drips."""
    clock = task.Clock()
    store = _Recorder()
    f = _factory(clock, store)
    proto, transport = _connect(f)
    proto.dataReceived(b"agi_network: yes\nagi_network_script: checkin\nagi_request: agi://h/checkin\n"
                       b"agi_uniqueid: slow.1\nagi_callerid: unknown\n\n")
    assert transport.value() == b"ANSWER\n"
    drip = b"200 result=0 " + b"x" * 100
    sent = 0
    while not (transport.disconnected or transport.disconnecting):
        proto.dataReceived(drip[sent % len(drip):sent % len(drip) + 1])
        sent += 1
        clock.advance(50)
        assert clock.seconds() <= 650, "call never cut"
    assert 600 <= clock.seconds() <= 650
    assert len(proto.codec._buffer) < MAX_LINE


def test_many_idle_connections_each_hold_bounded_memory():
    """500 half-open calls each holding at most one partial line: the buffers stay below 500 * MAX_LINE."""
    clock = task.Clock()
    f = _factory(clock, _Recorder())
    protos = []
    for i in range(500):
        proto, transport = _connect(f)
        proto.dataReceived(b"agi_uniqueid: m.%d\nagi_callerid: " % i + b"7" * 4000)
        protos.append((proto, transport))
    assert sum(len(p.codec._buffer) for p, _ in protos) <= 500 * MAX_LINE
    clock.advance(61)
    assert all(t.disconnecting or t.disconnected for _, t in protos)  # every one cut by the idle timeout


def test_times_and_limits_are_the_configured_defaults():
    from carecall.config import Settings

    s = Settings()
    assert (s.agi_idle_timeout, s.agi_call_limit) == (60.0, 600.0)
    assert dt.timedelta(seconds=s.agi_call_limit) == dt.timedelta(minutes=10)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=200), st.sampled_from(REPLIES)), max_size=30))
def test_the_server_protocol_survives_any_byte_stream(chunks):
    """Whole FastAGI protocol (codec + dialog + driver): no exception escapes dataReceived."""
    clock = task.Clock()
    f = _factory(clock, _Recorder())
    proto, transport = _connect(f)
    proto.dataReceived(b"agi_network: yes\nagi_network_script: checkin\nagi_request: agi://h/checkin\n"
                       b"agi_uniqueid: fz.1\nagi_callerid: 02086989911\n\n")
    for chunk in chunks:
        if transport.disconnecting:
            break
        proto.dataReceived(chunk)
    proto.connectionLost()
    clock.advance(700)
    assert f.active == 0


def test_commands_go_straight_to_the_socket_until_it_is_full_then_through_the_transport_in_order():
    """FastAGIProtocol._write: direct sends while they are whole; after a short one, Twisted buffers the rest."""
    import socket

    ours, peer = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    class SocketTransport(StringTransport):
        def getHandle(self):
            return ours

    clock = task.Clock()
    proto = _factory(clock, _Recorder()).buildProtocol(None)
    transport = SocketTransport()
    proto.makeConnection(transport)
    try:
        proto._write(b"ANSWER\n")
        assert peer.recv(100) == b"ANSWER\n" and transport.value() == b""  # sent directly
        big = b"x" * 1_000_000  # more than the socket takes at once
        proto._write(big)
        proto._write(b"HANGUP\n")
        taken = len(big) - len(transport.value()) + len(b"HANGUP\n")
        assert 0 < taken < len(big)
        assert transport.value().endswith(b"HANGUP\n")  # the rest, then the next command, in order
        assert proto._direct is None
    finally:
        ours.close()
        peer.close()
