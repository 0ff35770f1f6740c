"""An Asterisk stand-in that rings the FastAGI server over a real TCP connection.

:class:`FakeAsterisk` is the pure part (bytes in, bytes out, like the codec): it sends
a realistic ``agi_*`` environment and answers each command the way Asterisk 22 does
(ANSWER → ``200 result=0``; GET DATA → the next scripted digits or
``200 result= (timeout)``; STREAM FILE → ``200 result=0 endpos=…``; SAY … →
``200 result=0``; HANGUP → ``200 result=1`` then its own ``HANGUP`` line, then it waits
for the server to close; anything else → 510). It can hang up at the Nth command the
ways a real channel does (``200 result=-1`` + ``HANGUP``, a bare ``HANGUP`` line, 511,
or the socket closed).

Two drivers: :func:`simulate` (Twisted, for tests and the load generator) and
:func:`simulate_blocking` (plain socket, for ``carecall simulate-call``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import select
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

HANGUP_MODES = ("hangup", "line", "dead", "close")
DEAD = b"511 Command Not Permitted on a dead channel or intercept routine\n"
_ids = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class CallScript:
    """What the simulated caller does.

    ``callerid=None`` withholds the number (Asterisk then sends ``unknown``).
    ``digits`` feeds GET DATA in order ("" = let it time out). ``hangup_after=N``
    hangs up when the Nth command arrives, in ``hangup_mode``: ``hangup`` (the command
    gets ``200 result=-1`` then a ``HANGUP`` line, later ones 511), ``line`` (a bare
    ``HANGUP`` line instead of a reply), ``dead`` (511 from then on), ``close`` (the
    socket is closed).
    """

    callerid: str | None = "02086989911"
    digits: Sequence[str] = ()
    script: str = "checkin"
    uniqueid: str | None = None
    hangup_after: int | None = None
    hangup_mode: str = "hangup"
    host: str = "127.0.0.1"
    port: int = 4573
    calleridname: str | bytes = "unknown"
    extra_env: Sequence[tuple[str, str]] = ()
    network: bool = True  # False: process AGI (``AGI(carecall-agi,checkin)``), script in agi_arg_1
    args: Sequence[str] = ()  # the dialplan's AGI() arguments (``AGI(agi://…/unanswered,${EXTEN})``)

    def __post_init__(self) -> None:
        if self.hangup_mode not in HANGUP_MODES:
            raise ValueError(f"hangup_mode must be one of {', '.join(HANGUP_MODES)}")


@dataclasses.dataclass
class SimResult:
    """What happened on the wire, in order, and how it ended."""

    uniqueid: str
    transcript: list[tuple[str, str]]  # (command, reply) — reply "" when none was given
    server_hung_up: bool  # the server sent HANGUP
    server_closed: bool  # the server closed the socket (rather than us)
    think_times: list[float]  # seconds from our reply (or environment) to the server's next command
    error: str | None = None
    exit_status: int | None = None  # process AGI only

    @property
    def completed(self) -> bool:
        return self.server_hung_up and self.server_closed and self.error is None

    def played(self) -> list[str]:
        """Sound files played (STREAM FILE and the prompts inside GET DATA), in order."""
        out: list[str] = []
        for command, _reply in self.transcript:
            words = shlex.split(command)
            if command.startswith(("STREAM FILE", "GET DATA")) and len(words) > 2:
                out.extend(words[2].split("&"))
        return out

    def said_time(self) -> int | None:
        for command, _reply in self.transcript:
            if command.startswith("SAY TIME"):
                return int(shlex.split(command)[2])
        return None


class FakeAsterisk:
    """The Asterisk side of one FastAGI session, as a pure object."""

    def __init__(self, call: CallScript, clock: Callable[[], float] = time.perf_counter) -> None:
        self.call = call
        self.uniqueid = call.uniqueid or f"{int(time.time())}.{next(_ids)}"
        self._digits = list(call.digits)
        self._buffer = bytearray()
        self._clock = clock
        self._mark = 0.0
        self.transcript: list[tuple[str, str]] = []
        self.think_times: list[float] = []
        self.commands = 0
        self.hung_up = False  # the channel is gone: later commands get 511
        self.server_hung_up = False
        self.close_now = False

    def environment(self) -> bytes:
        c = self.call
        callerid = c.callerid if c.callerid else "unknown"
        name = c.calleridname if isinstance(c.calleridname, bytes) else c.calleridname.encode()
        if c.network:
            head: list[tuple[str, str | bytes]] = [
                ("agi_network", "yes"),
                ("agi_network_script", c.script),
                ("agi_request", f"agi://{c.host}:{c.port}/{c.script}"),
            ]
        else:
            head = [("agi_request", "carecall-agi")]
        pairs: list[tuple[str, str | bytes]] = [
            *head,
            ("agi_channel", f"PJSIP/trunk-{next(_ids):08x}"),
            ("agi_language", "en"),
            ("agi_type", "PJSIP"),
            ("agi_uniqueid", self.uniqueid),
            ("agi_version", "22.1.0"),
            ("agi_callerid", callerid),
            ("agi_calleridname", name),
            ("agi_callingpres", "0" if c.callerid else "35"),
            ("agi_callingani2", "0"),
            ("agi_callington", "0"),
            ("agi_callingtns", "0"),
            ("agi_dnid", "08001234567"),
            ("agi_rdnis", "unknown"),
            ("agi_context", "carecall-checkin"),
            ("agi_extension", "s"),
            ("agi_priority", "2"),
            ("agi_enhanced", "0.0"),
            ("agi_accountcode", ""),
            ("agi_threadid", "140234567890"),
            *([] if c.network else [("agi_arg_1", c.script)]),
            *[(f"agi_arg_{i}", arg) for i, arg in enumerate(c.args, start=1 if c.network else 2)],
            *c.extra_env,
        ]
        out = bytearray()
        for key, value in pairs:
            out += key.encode() + b": " + (value if isinstance(value, bytes) else value.encode()) + b"\n"
        out += b"\n"
        self._mark = self._clock()
        return bytes(out)

    def receive_data(self, data: bytes) -> bytes:
        """Take the server's bytes; return what Asterisk writes back."""
        self._buffer += data
        out = bytearray()
        while not self.close_now:
            idx = self._buffer.find(b"\n")
            if idx < 0:
                break
            line = self._buffer[:idx].decode("utf-8", "replace").rstrip("\r")
            del self._buffer[: idx + 1]
            out += self._answer(line)
        return bytes(out)

    def _answer(self, command: str) -> bytes:
        self.think_times.append(self._clock() - self._mark)
        self.commands += 1
        verb = command.upper()
        reply = self._reply(command, verb)
        self.transcript.append((command, reply.decode().strip().replace("\n", " | ")))
        self._mark = self._clock()
        return reply

    def _reply(self, command: str, verb: str) -> bytes:
        c = self.call
        if self.hung_up:
            return DEAD
        if c.hangup_after is not None and self.commands >= c.hangup_after:
            self.hung_up = True
            if c.hangup_mode == "close":
                self.close_now = True
                return b""
            if c.hangup_mode == "dead":
                return DEAD
            if c.hangup_mode == "line":
                return b"HANGUP\n"
            return b"200 result=-1\nHANGUP\n"
        if verb == "HANGUP":
            self.server_hung_up = True
            self.hung_up = True
            return b"200 result=1\nHANGUP\n"
        if verb == "ANSWER":
            return b"200 result=0\n"
        if verb.startswith("GET DATA"):
            digits = self._digits.pop(0) if self._digits else ""
            if not digits:
                return b"200 result= (timeout)\n"
            return f"200 result={digits}\n".encode()
        if verb.startswith("STREAM FILE"):
            return b"200 result=0 endpos=12000\n"
        if verb.startswith(("SAY TIME", "SAY DIGITS", "SAY NUMBER", "SAY DATETIME")):
            return b"200 result=0\n"
        if verb.startswith("SET VARIABLE") or verb.startswith("VERBOSE"):
            return b"200 result=1\n"
        if verb.startswith("EXEC "):  # an application (Wait, Busy) that ran to its end
            return b"200 result=0\n"
        return b"510 Invalid or unknown command\n"

    def result(self, server_closed: bool, error: str | None = None) -> SimResult:
        return SimResult(self.uniqueid, list(self.transcript), self.server_hung_up, server_closed,
                         list(self.think_times), error)


# ---------------------------------------------------------------- Twisted driver


class _SimProtocol(Protocol):
    def __init__(self, fake: FakeAsterisk, done: Deferred[SimResult]) -> None:
        self.fake = fake
        self.done = done
        self._we_closed = False

    def connectionMade(self) -> None:
        self.transport.write(self.fake.environment())  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        out = self.fake.receive_data(data)
        if out:
            self.transport.write(out)  # type: ignore[union-attr]
        if self.fake.close_now and not self._we_closed:
            self._we_closed = True
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if not self.done.called:
            self.done.callback(self.fake.result(server_closed=not self._we_closed))


class _SimFactory(ClientFactory):
    def __init__(self, fake: FakeAsterisk, done: Deferred[SimResult]) -> None:
        self.fake = fake
        self.done = done

    def buildProtocol(self, addr: Any) -> _SimProtocol:
        return _SimProtocol(self.fake, self.done)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.done.called:
            self.done.errback(reason)


def simulate(reactor: Any, host: str, port: int, call: CallScript, timeout: float = 30.0) -> Deferred[SimResult]:
    """Ring the server once; fires with the :class:`SimResult` when the connection ends."""
    done: Deferred[SimResult] = Deferred()
    fake = FakeAsterisk(call)
    connector = reactor.connectTCP(host, port, _SimFactory(fake, done), timeout=timeout)

    def give_up() -> None:
        if not done.called:
            done.callback(fake.result(server_closed=False, error=f"no end of call within {timeout:g} s"))
            connector.disconnect()

    timer = reactor.callLater(timeout, give_up)

    def stop_timer(value: Any) -> Any:
        if timer.active():
            timer.cancel()
        return value

    done.addBoth(stop_timer)
    return done


# ---------------------------------------------------------------- blocking driver


def simulate_blocking(host: str, port: int, call: CallScript, timeout: float = 30.0) -> SimResult:
    """The same call over a plain socket (the CLI; no reactor). Raises OSError if it cannot connect."""
    fake = FakeAsterisk(call)
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(fake.environment())
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return fake.result(server_closed=False, error=f"no end of call within {timeout:g} s")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return fake.result(server_closed=True, error="connection reset by the server")
            if not data:
                return fake.result(server_closed=True)
            out = fake.receive_data(data)
            if out:
                sock.sendall(out)
            if fake.close_now:
                return fake.result(server_closed=False)


# ---------------------------------------------------------------- process AGI driver


def simulate_process(argv: Sequence[str], call: CallScript, env: dict[str, str] | None = None,
                     timeout: float = 30.0) -> SimResult:
    """Run a process-AGI script as Asterisk does (one process, the dialog on stdin/stdout)."""
    fake = FakeAsterisk(dataclasses.replace(call, network=False))
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    error = None
    closed = False
    try:
        proc.stdin.write(fake.environment())
        proc.stdin.flush()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                error = f"no end of call within {timeout:g} s"
                break
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                closed = True
                break
            out = fake.receive_data(data)
            if out:
                try:
                    proc.stdin.write(out)
                    proc.stdin.flush()
                except BrokenPipeError:
                    closed = True
                    break
            if fake.close_now:
                break
    finally:
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(BrokenPipeError):
                stream.close()
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            error = error or "script did not exit"
    result = fake.result(server_closed=closed, error=error)
    result.exit_status = proc.returncode
    return result
