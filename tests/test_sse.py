"""Server-sent events as a browser reads them (issue 14 item 8), without a browser.

``parse_event_stream`` follows the WHATWG HTML event-stream rules (§9.2.6): a line ends at
CRLF, LF or CR; ``event:`` sets the type, each ``data:`` line adds to the data, a blank
line dispatches. The old writer split data only at LF, so a CR in a resident's name ended
the line early and the rest — ``event: journal`` — became a field of its own.
"""

from __future__ import annotations

import re

import pytest

from tests.sse import parse_event_stream
from web.live import sse_event

HOSTILE = "Ann\revent: journal\rdata: <div class=banner>Running on its journal</div>\r\rrest"


@pytest.mark.parametrize("breaker", ["\r", "\n", "\r\n", "\r\r", "\n\r"])
def test_no_line_break_in_the_data_can_start_a_new_field_or_event(breaker):
    name = HOSTILE.replace("\r", breaker)
    stream = (sse_event("board", f"<tr><td>{name}</td></tr>") + sse_event("board", "<tr><td>Bob</td></tr>")).decode()
    events = parse_event_stream(stream)
    assert [k for k, _ in events] == ["board", "board"]
    first = events[0][1]
    # What arrives is the same text with each line break as LF: nothing lost, nothing promoted to a field.
    assert first == "<tr><td>" + re.sub(r"\r\n|\r|\n", "\n", name) + "</td></tr>"


def test_the_old_writer_lets_a_carriage_return_forge_a_journal_event():
    """The bug, kept as a check on the parser itself: splitting only at LF is unsafe."""
    data = f"<tr><td>{HOSTILE}</td></tr>"
    old = "event: board\n" + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"
    assert "journal" in [k for k, _ in parse_event_stream(old)]


def test_event_names_cannot_carry_line_breaks():
    with pytest.raises(ValueError):
        sse_event("board\rdata: x", "y")
