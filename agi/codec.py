"""The AGI wire protocol as a pure connection object: bytes in, typed events out.

No sockets and no clock, in the manner of h11: :meth:`AGIConnection.receive_data`
buffers what the transport read, :meth:`AGIConnection.next_event` hands back one event
(or :data:`NEED_DATA`), and :meth:`AGIConnection.send` turns one command into bytes.
The Twisted server, the pyst2 process script and the tests drive this same object.

Why a state machine and not "pair each line with the next pending request" (starpy):
Asterisk writes an unsolicited ``HANGUP`` line between replies and 520 usage errors
span several lines, so a line is only a reply when the state says one is expected.
A playback command that sees another command arrive aborts without replying, so
:meth:`send` refuses to send while a reply is outstanding.

Memory per connection is bounded: one line may be at most :data:`MAX_LINE` bytes and
the environment at most :data:`MAX_ENV_LINES` lines / :data:`MAX_ENV_BYTES` bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

MAX_LINE: Final = 8192  # Asterisk's own limit for a command line (AGI_BUF_LEN)
MAX_ARGS: Final = 128  # MAX_ARGS in res_agi.c
MAX_ENV_LINES: Final = 256  # ~25 agi_* variables plus up to 128 agi_arg_N
MAX_ENV_BYTES: Final = 64 * 1024
MAX_USAGE_LINES: Final = 64


class ProtocolError(Exception):
    """Base of the two ways a conversation can go wrong."""


class LocalProtocolError(ProtocolError):
    """We tried something the protocol forbids (a bug on our side): nothing was sent."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not AGI; the connection cannot go on."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclasses.dataclass(frozen=True)
class Environment:
    """The ``agi_*`` variables Asterisk sends before the first command."""

    vars: Mapping[str, str]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.vars.get(key, default)


@dataclasses.dataclass(frozen=True)
class Result:
    """``200 result=N [(data)] [endpos=N]``: the reply to the outstanding command."""

    result: str
    data: str | None = None
    endpos: int | None = None
    code: int = 200

    @property
    def timed_out(self) -> bool:
        return self.data == "timeout"


@dataclasses.dataclass(frozen=True)
class Hangup:
    """The unsolicited ``HANGUP`` line: the channel hung up. Never a reply to a command."""


@dataclasses.dataclass(frozen=True)
class DeadChannel:
    """511: the command was refused because the channel is gone (a reply)."""

    text: str = ""


@dataclasses.dataclass(frozen=True)
class InvalidCommand:
    """510: Asterisk does not know the command (a reply; a bug on our side)."""

    text: str = ""


@dataclasses.dataclass(frozen=True)
class UsageError:
    """520: the command's arguments were wrong; ``lines`` is the usage text (a reply)."""

    lines: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Closed:
    """The peer closed the connection; no more events follow."""


Event = Environment | Result | Hangup | DeadChannel | InvalidCommand | UsageError | Closed
Reply = Result | DeadChannel | InvalidCommand | UsageError

# States. One table of what each state accepts lives in next_event().
ENV = "env"  # reading agi_* lines until the blank line
IDLE = "idle"  # no command outstanding
AWAITING = "awaiting"  # one command sent, its reply not yet read
USAGE = "usage"  # inside a 520- … 520 block
CLOSED = "closed"  # peer closed; Closed event given
ERROR = "error"  # peer sent garbage; nothing more will be parsed

_RESULT = re.compile(r"result=(-?[0-9]*)(?: \((.*)\))?(?: endpos=(-?[0-9]+))?\s*$")
_ENV_LINE = re.compile(r"(agi_[A-Za-z0-9_]+):\s?(.*)$")
# The same, over a whole block at once: one trailing \r dropped per line, and the optional
# space after the colon may be any whitespace but the newline that ends the line.
_ENV_BLOCK = re.compile(r"^(agi_[A-Za-z0-9_]+):[^\S\n]?(.*?)\r?$", re.MULTILINE)
_SAFE_ARG = re.compile(r"[A-Za-z0-9_.,:/@+*#&=-]+")


def quote_arg(arg: str) -> str:
    """One argument as Asterisk's ``parse_args`` reads it back.

    Plain tokens go as they are; anything with a space, quote, backslash (or empty)
    is wrapped in double quotes with ``"`` and ``\\`` backslash-escaped.
    """
    if _SAFE_ARG.fullmatch(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=1024)
def format_command(verb: str, *args: str | int) -> bytes:
    """Encode one command line, refusing what Asterisk would misread.

    Cached: a dialog sends the same few command lines on every call."""
    words = verb.split()
    if not words or not all(w.isalnum() for w in words):
        raise LocalProtocolError(f"not an AGI command verb: {verb!r}")
    if len(words) + len(args) > MAX_ARGS:
        raise LocalProtocolError(f"{len(words) + len(args)} arguments; AGI allows at most {MAX_ARGS}")
    parts = [" ".join(words).upper()]
    for arg in args:
        text = str(arg)
        if any(c in text for c in "\r\n\x00"):
            raise LocalProtocolError("an AGI argument may not contain a newline or NUL")
        parts.append(quote_arg(text))
    line = (" ".join(parts) + "\n").encode("utf-8")
    if len(line) > MAX_LINE:
        raise LocalProtocolError(f"command line of {len(line)} bytes; AGI allows at most {MAX_LINE}")
    return line


class AGIConnection:
    """Our side of one AGI session (the server: Asterisk is the peer).

    ``environment_received=True`` starts past the environment, for drivers (pyst2)
    that read it themselves.
    """

    def __init__(self, *, environment_received: bool = False) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._state = IDLE if environment_received else ENV
        self._env: dict[str, str] = {}
        self._env_lines = 0
        self._env_bytes = 0
        self._usage: list[str] = []
        self._last_command = ""
        self.commands_sent = 0

    @property
    def state(self) -> str:
        return self._state

    @property
    def awaiting_reply(self) -> bool:
        return self._state in (AWAITING, USAGE)

    @property
    def last_command(self) -> str:
        return self._last_command

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes read from the peer; ``b""`` means the peer closed (EOF)."""
        if data:
            if self._eof:
                raise RuntimeError("data received after EOF")
            self._buffer += data
        else:
            self._eof = True

    def send(self, verb: str, *args: str | int) -> bytes:
        """Bytes for one command. Refused while a reply is outstanding or after close."""
        if self._state in (AWAITING, USAGE):
            raise LocalProtocolError(f"cannot send {verb!r}: no reply yet to {self._last_command!r}")
        if self._state == ENV:
            raise LocalProtocolError(f"cannot send {verb!r} before the environment has been read")
        if self._state in (CLOSED, ERROR):
            raise LocalProtocolError(f"cannot send {verb!r}: the connection is {self._state}")
        line = format_command(verb, *args)
        self._state = AWAITING
        self._last_command = " ".join(verb.split()).upper()
        self.commands_sent += 1
        return line

    def _next_line(self) -> str | None:
        idx = self._buffer.find(b"\n")
        if idx < 0:
            if len(self._buffer) > MAX_LINE:
                self._fail(f"line longer than {MAX_LINE} bytes")
            return None
        if idx > MAX_LINE:
            self._fail(f"line longer than {MAX_LINE} bytes")
        raw = bytes(self._buffer[:idx])
        del self._buffer[: idx + 1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if self._state == ENV:
            self._env_lines += 1
            self._env_bytes += idx + 1
            if self._env_lines > MAX_ENV_LINES or self._env_bytes > MAX_ENV_BYTES:
                self._fail(f"environment longer than {MAX_ENV_LINES} lines / {MAX_ENV_BYTES} bytes")
        # Caller-ID names may hold any bytes: never let decoding fail.
        return raw.decode("utf-8", "replace")

    def _fail(self, message: str) -> None:
        self._state = ERROR
        self._buffer.clear()
        raise RemoteProtocolError(message)

    def next_event(self) -> Event | _NeedData:
        """The next event, :data:`NEED_DATA`, or RemoteProtocolError for garbage."""
        if self._state == ERROR:
            raise RemoteProtocolError("connection already failed")
        if self._state == CLOSED:
            return Closed()
        if self._state == ENV:
            env = self._whole_environment()
            if env is not None:
                return env
        while True:
            line = self._next_line()
            if line is None:
                if self._eof:
                    self._state = CLOSED
                    self._buffer.clear()
                    return Closed()
                return NEED_DATA
            event = self._handle_line(line)
            if event is not None:
                return event

    def _whole_environment(self) -> Environment | None:
        """The environment in one pass when all of it has arrived (the usual case: Asterisk
        writes it at once), else None and it is read line by line. Same limits, same errors."""
        buf = self._buffer
        if buf[:1] in (b"\n", b"\r"):
            return None  # an empty environment: the line-by-line path says so
        ends = [i for i in (buf.find(b"\n\n"), buf.find(b"\n\r\n")) if i >= 0]
        if not ends:
            return None
        end = min(ends)
        blank = 1 if buf[end + 1 : end + 2] == b"\n" else 2
        block = bytes(buf[:end])
        del buf[: end + 1 + blank]
        env = self._env
        raws = block.split(b"\n")
        if (self._env_lines + len(raws) < MAX_ENV_LINES and self._env_bytes + end + 1 + blank <= MAX_ENV_BYTES
                and max(map(len, raws)) <= MAX_LINE):
            # Within every limit: decode once and match each line (any mismatch: the loop below says which).
            pairs = _ENV_BLOCK.findall(block.decode("utf-8", "replace"))
            if len(pairs) == len(raws):
                env.update(pairs)
                self._env_lines += len(raws) + 1
                self._env_bytes += end + 1 + blank
                self._state = IDLE
                return Environment(MappingProxyType(dict(env)))
        for raw in raws:
            if len(raw) > MAX_LINE:
                self._fail(f"line longer than {MAX_LINE} bytes")
            self._env_lines += 1
            self._env_bytes += len(raw) + 1
            if self._env_lines >= MAX_ENV_LINES or self._env_bytes + blank > MAX_ENV_BYTES:
                self._fail(f"environment longer than {MAX_ENV_LINES} lines / {MAX_ENV_BYTES} bytes")
            line = (raw[:-1] if raw.endswith(b"\r") else raw).decode("utf-8", "replace")
            m = _ENV_LINE.match(line)
            if m is None:
                self._fail(f"environment line is not 'agi_name: value': {line[:60]!r}")
            assert m is not None
            env[m.group(1)] = m.group(2)
        self._env_lines += 1
        self._env_bytes += blank
        self._state = IDLE
        return Environment(MappingProxyType(dict(env)))

    def _handle_line(self, line: str) -> Event | None:
        state = self._state
        if state == ENV:
            if line == "":
                self._state = IDLE
                return Environment(MappingProxyType(dict(self._env)))
            m = _ENV_LINE.match(line)
            if m is None:
                self._fail(f"environment line is not 'agi_name: value': {line[:60]!r}")
            assert m is not None
            self._env[m.group(1)] = m.group(2)
            return None
        if line == "HANGUP":
            return Hangup()
        if state == USAGE:
            if line.startswith("520 "):
                self._usage.append(line[4:])
                lines = tuple(self._usage)
                self._usage = []
                self._state = IDLE
                return UsageError(lines)
            if len(self._usage) >= MAX_USAGE_LINES:
                self._fail(f"520 usage text longer than {MAX_USAGE_LINES} lines")
            self._usage.append(line)
            return None
        if state != AWAITING:
            if line == "":
                return None  # stray blank line between replies: harmless
            self._fail(f"reply with no command outstanding: {line[:60]!r}")
        code, sep, rest = line[:3], line[3:4], line[4:]
        if not code.isdigit() or sep not in (" ", "-", ""):
            self._fail(f"not an AGI reply line after {self._last_command!r}: {line[:60]!r}")
        if code == "200" and sep == " ":
            m = _RESULT.match(rest)
            if m is None:
                self._fail(f"200 reply without result=: {line[:60]!r}")
            assert m is not None
            self._state = IDLE
            endpos = int(m.group(3)) if m.group(3) is not None else None
            return Result(m.group(1), m.group(2), endpos)
        if code == "511":
            self._state = IDLE
            return DeadChannel(rest)
        if code == "510":
            self._state = IDLE
            return InvalidCommand(rest)
        if code == "520":
            if sep == "-":
                self._usage = [rest]
                self._state = USAGE
                return None
            self._state = IDLE
            return UsageError((rest,))
        self._fail(f"unexpected AGI reply code {code} after {self._last_command!r}")
        return None
