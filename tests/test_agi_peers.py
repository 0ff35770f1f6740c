"""Hostile AGI peers (issue 14): a slowloris and a connection flood, over real TCP.

The server listens on a real loopback socket; time is a ``task.Clock`` the test
advances, so "10 s" is exact and costs nothing. The last test runs ``carecall run``
itself with short limits, on the real clock.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import succeed
from twisted.logger import capturedLogs

from agi.fastagi import FastAGIFactory
from carecall.config import Prompts
from ivr.dialog import CheckIn, DialogConfig, LoginFailed, LookupLine, LookupPhoneCode, RecordCall
from tests.faults import running

ENV = (b"agi_network: yes\nagi_network_script: checkin\nagi_request: agi://h/checkin\n"
       b"agi_uniqueid: slow.1\nagi_callerid: unknown\n\n")


class _Recorder:
    """Effects without a database: only what the limits need."""

    def __init__(self) -> None:
        self.records: list[RecordCall] = []

    def run(self, effect):
        if isinstance(effect, LookupLine | LookupPhoneCode):
            return (1,)
        if isinstance(effect, CheckIn):
            return LoginFailed()
        self.records.append(effect)
        return len(self.records)


def _listen(clock: task.Clock, **limits):
    store = _Recorder()
    f = FastAGIFactory(DialogConfig(prompts=Prompts()), store, lambda fn, *a: succeed(fn(*a)), clock, **limits)
    port = reactor.listenTCP(0, f, interface="127.0.0.1")
    return f, store, port


def _turn(seconds: float = 0.02):
    """Let the real reactor move the bytes (no test clock involved)."""
    return task.deferLater(reactor, seconds, lambda: None)


def _closed(sock: socket.socket) -> bool:
    """The server closed (or reset) this connection; any bytes it sent are read and dropped."""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _client(port) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port.getHost().port))
    s.setblocking(False)
    return s


@pytest_twisted.inlineCallbacks
def test_a_peer_dripping_its_environment_a_byte_a_second_is_cut_at_10_seconds():
    clock = task.Clock()
    f, store, port = _listen(clock, idle_timeout=60.0, call_limit=600.0, env_timeout=10.0)
    s = _client(port)
    try:
        cut_at = None
        with capturedLogs() as events:
            for i in range(len(ENV) - 1):  # never the final blank line
                s.send(ENV[i:i + 1])
                yield _turn()
                clock.advance(1)
                yield _turn()
                if _closed(s):
                    cut_at = clock.seconds()
                    break
        assert cut_at is not None and 10 <= cut_at <= 11, cut_at
        assert [e["why"] for e in events if "why" in e] == ["environment not complete after 10 s"]
        assert f.active == 0 and store.records == []  # no call started, nothing to record
    finally:
        s.close()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_whole_environment_then_silence_is_still_governed_by_the_idle_timeout():
    """The deadline is for the environment only: a real call's pause (typing) is not cut at 10 s."""
    clock = task.Clock()
    _f, store, port = _listen(clock, idle_timeout=60.0, call_limit=600.0, env_timeout=10.0)
    s = _client(port)
    try:
        s.sendall(ENV)
        yield _turn(0.05)
        clock.advance(30)
        yield _turn()
        assert not _closed(s)
        clock.advance(31)
        yield _turn()
        assert _closed(s)
        [rec] = store.records
        assert "silent" in rec.detail
    finally:
        s.close()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_connections_over_the_cap_are_closed_at_once_counted_and_logged():
    clock = task.Clock()
    f, _store, port = _listen(clock, env_timeout=10.0, max_connections=3)
    held = [_client(port) for _ in range(3)]
    extra: list[socket.socket] = []
    try:
        for s in held:
            s.send(b"agi_network: yes\n")
        for _ in range(100):
            yield _turn()
            if f.active == 3:
                break
        assert f.active == 3
        with capturedLogs() as events:
            extra = [_client(port) for _ in range(5)]
            for _ in range(100):
                yield _turn()
                if all(_closed(s) for s in extra):
                    break
        assert all(_closed(s) for s in extra)  # closed without a byte, not left hanging
        assert not any(_closed(s) for s in held)
        assert (f.refused, f.active) == (5, 3)
        warned = [e for e in events if "refused" in (e.get("log_format") or "")]
        assert len(warned) == 1 and warned[0]["refused"] == 1  # one line per 10 s, not one per peer
        held.pop().close()  # a slot frees up: the next caller is served
        for _ in range(100):
            yield _turn()
            if f.active == 2:
                break
        s = _client(port)
        extra.append(s)
        s.sendall(ENV)
        for _ in range(100):
            yield _turn()
            if f.active == 3:
                break
        assert f.active == 3 and not _closed(s)
    finally:
        for s in held + extra:
            s.close()
        yield port.stopListening()


def _recv_until_closed(s: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closed ``s`` (or None if it stayed open for ``timeout``)."""
    start = time.monotonic()
    s.settimeout(0.1)
    while time.monotonic() - start < timeout:
        try:
            if not s.recv(4096):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
    return None


def test_a_running_server_cuts_a_slowloris_and_closes_connections_over_its_cap(db_url, tmp_path):
    toml = "agi_environment_timeout = 1.5\nagi_max_connections = 2\n"
    with running(tmp_path, db_url, extra_toml=toml) as server:
        port = server.agi_port
        with contextlib.ExitStack() as stack:
            drip = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            start = time.monotonic()
            drip.settimeout(0.2)
            cut = None
            for i in range(len(ENV) - 1):  # a byte every 0.2 s, never idle for long
                drip.send(ENV[i:i + 1])
                try:
                    if not drip.recv(100):
                        cut = time.monotonic() - start
                        break
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    cut = time.monotonic() - start
                    break
            assert cut is not None and 1.4 <= cut <= 4, cut
            held = [stack.enter_context(socket.create_connection(("127.0.0.1", port))) for _ in range(2)]
            for s in held:
                s.sendall(b"agi_network: yes\n")
            time.sleep(0.3)  # both accepted before the third knocks
            over = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            assert (_recv_until_closed(over, 1.0) or 9) < 1.0
        server.terminate()
        text = server.log()
    assert "environment not complete after 1.5 s" in text
    assert "AGI connection refused: 2 calls open (agi_max_connections=2)" in text
