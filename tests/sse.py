"""A browser's reading of a server-sent-events stream (WHATWG HTML §9.2.6), for tests.

A line ends at CRLF, LF or CR; ``event:`` sets the type, each ``data:`` line adds to
the data, a blank line dispatches (nothing when no data came), ``:`` starts a comment.
"""

from __future__ import annotations

import re

_LINE = re.compile(r"\r\n|\r|\n")


def parse_event_stream(text: str) -> list[tuple[str, str]]:
    """(event type, data) for every event a browser's EventSource would dispatch."""
    events: list[tuple[str, str]] = []
    kind, data = "", ""
    lines = _LINE.split(text)
    if lines and lines[-1] == "":
        lines.pop()  # the text ends with a line break: no unfinished last line
    for line in lines:
        if line == "":
            if data:
                events.append((kind or "message", data[:-1] if data.endswith("\n") else data))
            kind, data = "", ""
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            kind = value
        elif field == "data":
            data += value + "\n"
    return events
