"""The Asterisk Manager Interface, sans-IO: bytes in, messages out; actions in, bytes out.

AMI is a line protocol: after a one-line banner (``Asterisk Call Manager/9.0.0``) every
message is a block of ``Key: Value`` lines ended by an empty line. A message is a
*response* (``Response: Success|Error|Goodbye``, carrying the ``ActionID`` of the action
it answers) or an *event* (``Event: OriginateResponse`` …; events caused by an action
also carry its ``ActionID``). Keys may repeat (``Variable``, ``ChanVariable``), so a
message keeps every header in order and :meth:`Message.get` returns the first.

:class:`AmiConnection` only turns bytes into :class:`Message` objects and actions into
bytes; it does not know sockets, threads or Twisted (:mod:`agi.amiclient` moves the
bytes). That keeps the parser testable with any chunking and shared by every outbound
call (alerts, notices, surveys).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Mapping

MAX_LINE = 8192  # an AMI line longer than this is a broken peer, not data
MAX_HEADERS = 512


class AmiProtocolError(ValueError):
    """The peer sent something that is not AMI."""


@dataclasses.dataclass(frozen=True)
class Message:
    """One AMI block: every ``(key, value)`` in order (keys compared case-insensitively)."""

    headers: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str = "") -> str:
        k = key.lower()
        for name, value in self.headers:
            if name.lower() == k:
                return value
        return default

    def get_all(self, key: str) -> list[str]:
        k = key.lower()
        return [value for name, value in self.headers if name.lower() == k]

    @property
    def event(self) -> str:
        return self.get("Event")

    @property
    def response(self) -> str:
        return self.get("Response")

    @property
    def action_id(self) -> str:
        return self.get("ActionID")

    def as_dict(self) -> dict[str, str]:
        """First value of each key (for logging and tests)."""
        out: dict[str, str] = {}
        for name, value in self.headers:
            out.setdefault(name, value)
        return out


def _clean(value: str) -> str:
    # A CR or LF inside a value would end the header early and let the rest be read as
    # another header (or another action): refuse it instead of "escaping" it.
    if "\r" in value or "\n" in value:
        raise ValueError("AMI header values cannot contain line breaks")
    return value


def encode_action(action: str, headers: Mapping[str, str | Iterable[str]] | None = None,
                  action_id: str = "") -> bytes:
    """``Action: NAME`` plus headers (a list value repeats the key, e.g. ``Variable``), then a blank line."""
    lines = [f"Action: {_clean(action)}"]
    if action_id:
        lines.append(f"ActionID: {_clean(action_id)}")
    for key, value in (headers or {}).items():
        values = [value] if isinstance(value, str) else list(value)
        lines.extend(f"{_clean(key)}: {_clean(str(v))}" for v in values)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class AmiConnection:
    """Client side of one AMI session: feed it bytes, take messages; ask it for action bytes.

    ``banner`` is set once the first line arrived. ActionIDs are ``prefix-N``, unique in
    this connection, so responses and events can be matched to the action that caused them.
    """

    def __init__(self, id_prefix: str = "carecall") -> None:
        self.banner: str | None = None
        self._buffer = b""
        self._headers: list[tuple[str, str]] = []
        self._messages: list[Message] = []
        self._ids = itertools.count(1)
        self._prefix = id_prefix

    def next_action_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def send(self, action: str, headers: Mapping[str, str | Iterable[str]] | None = None) -> tuple[str, bytes]:
        """The bytes of a new action and the ActionID its response and events will carry."""
        action_id = self.next_action_id()
        return action_id, encode_action(action, headers, action_id)

    def receive_data(self, data: bytes) -> None:
        self._buffer += data
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                if len(self._buffer) > MAX_LINE:
                    raise AmiProtocolError(f"line longer than {MAX_LINE} bytes")
                return
            raw, self._buffer = self._buffer[:cut], self._buffer[cut + 1:]
            if len(raw) > MAX_LINE:
                raise AmiProtocolError(f"line longer than {MAX_LINE} bytes")
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            self._line(line)

    def _line(self, line: str) -> None:
        if self.banner is None:
            if not line.startswith("Asterisk Call Manager"):
                raise AmiProtocolError(f"not an Asterisk Manager banner: {line[:60]!r}")
            self.banner = line
            return
        if not line:
            if self._headers:
                self._messages.append(Message(tuple(self._headers)))
                self._headers = []
            return
        key, sep, value = line.partition(":")
        if not sep:
            # Output of old "Command" actions comes as bare lines; keep it under a name.
            key, value = "Output", line
        if len(self._headers) >= MAX_HEADERS:
            raise AmiProtocolError(f"message with more than {MAX_HEADERS} headers")
        self._headers.append((key.strip(), value.strip()))

    def messages(self) -> Iterator[Message]:
        """The complete messages received so far, in order (each once)."""
        while self._messages:
            yield self._messages.pop(0)


# Reason codes of an OriginateResponse (Asterisk's AST_CONTROL_* values, main/manager.c
# and include/asterisk/frame.h): what happened to the call we asked for.
REASON_FAILED = 0  # no such channel type / extension, or the channel could not be created
REASON_HANGUP = 1  # the far end hung up before answering
REASON_RINGING = 3  # still ringing when the Originate timeout ran out: nobody answered
REASON_ANSWERED = 4
REASON_BUSY = 5
REASON_CONGESTION = 8

REASON_WORDS: dict[int, str] = {
    REASON_FAILED: "failed",
    REASON_HANGUP: "hung up",
    REASON_RINGING: "no answer",
    REASON_ANSWERED: "answered",
    REASON_BUSY: "busy",
    REASON_CONGESTION: "congestion",
}


def reason_word(reason: int | None) -> str:
    if reason is None:
        return "unknown"
    return REASON_WORDS.get(reason, f"reason {reason}")
