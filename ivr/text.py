"""What a name or other single-line field may contain: the one rule the CSV import and the web forms share.

Why: a carriage return in an imported name split the live board's server-sent events
(browsers end a line at CR as well as LF) and an ESC can forge terminal and log output.
A name, reference, address line or search term is one line of printable text; only a
free-text note may span lines (LF, CR and tab, nothing else).
"""

from __future__ import annotations

import re

# Every character refused in a single-line field: C0 controls (CR, LF, tab, ESC …), DEL
# and C1 (NEL …), the line/paragraph separators and the bidirectional overrides (they
# reorder what a reader sees). A multiline note may also hold LF, CR and tab.
_SINGLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_MULTI = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def control_problem(text: str, *, multiline: bool = False) -> str | None:
    """Why ``text`` may not be stored as a field, or None when it may (one regex search:
    an import checks every field of tens of thousands of rows)."""
    m = (_MULTI if multiline else _SINGLE).search(text)
    if m is None:
        return None
    ch = m.group()
    if ch in "\r\n":
        return "must be on one line (it contains a line break)"
    if "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069":
        return f"contains a text-direction control character (U+{ord(ch):04X})"
    return f"contains a control character (U+{ord(ch):04X})"
