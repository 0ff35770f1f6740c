"""What a name or other single-line field may contain: the one rule the CSV import and the web forms share.

Why: a carriage return in an imported name split the live board's server-sent events
(browsers end a line at CR as well as LF) and an ESC can forge terminal and log output.
A name, reference, address line or search term is one line of printable text; only a
free-text note may span lines (LF, CR and tab, nothing else).
"""

from __future__ import annotations

import unicodedata

# Line and paragraph separators a renderer may break on, besides the C0/C1 controls.
_BREAKS = {"\u2028", "\u2029"}


def control_problem(text: str, *, multiline: bool = False) -> str | None:
    """Why ``text`` may not be stored as a field, or None when it may.

    Refused: every control character (C0 including CR, LF, tab and ESC; DEL; C1
    including NEL), U+2028/U+2029 and the bidirectional overrides (they reorder what a
    reader sees). A multiline note may hold LF, CR and tab.
    """
    for ch in text:
        if multiline and ch in "\n\r\t":
            continue
        if ch in "\r\n":
            return "must be on one line (it contains a line break)"
        cat = unicodedata.category(ch)
        if cat == "Cc" or ch in _BREAKS:
            return f"contains a control character (U+{ord(ch):04X})"
        if ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
            return f"contains a text-direction control character (U+{ord(ch):04X})"
    return None
