"""Peer-supplied text made safe for one log line: the single rule every log line uses.

An Asterisk peer (or anyone who can reach the AGI port) chooses ``agi_uniqueid``, the
script name and every other environment value. Written raw, a carriage return or line
feed starts what looks like a new log line ("forged" entries an operator or a log
shipper believes), and an ESC sequence can rewrite a terminal. :func:`printable` keeps
printable text as it is and writes every control character (C0, DEL, C1, and the
Unicode line/paragraph separators) as a visible ``\\xNN`` / ``\\uNNNN`` escape, and caps
the length, so a field is always one short, visible run of text.
"""

from __future__ import annotations

import re

MAX_FIELD = 120  # characters of one peer-supplied field in a log line

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u0085]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u0085]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(text: object, limit: int = MAX_FIELD) -> str:
    """``text`` as one visible run: control characters escaped, at most ``limit`` characters (then …)."""
    s = text if isinstance(text, str) else str(text)
    if _CONTROL.search(s):
        s = _CONTROL.sub(_escape, s)
    return s if len(s) <= limit else s[:limit] + "…"


def printable_lines(text: str) -> str:
    """A whole formatted log entry: control characters escaped except ``\\n`` and ``\\t``.

    Line feeds are left for the log writer, which indents continuation lines (a
    traceback) with a tab so they can never pass for a new entry.
    """
    return _CONTROL_BUT_LINES.sub(_escape, text) if _CONTROL_BUT_LINES.search(text) else text
