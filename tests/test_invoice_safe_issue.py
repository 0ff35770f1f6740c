"""Safe issuing: the CLI previews by default, `--issue` (confirmed) freezes, and no £0 invoice by accident."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from billing import invoices
from billing.models import Invoice, InvoiceLine
from tests.billing_world import World, utc
from tests.helpers import factory_for, import_world

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P0 = dt.date(2026, 1, 5)


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    w = World(factory)
    # R001 (PO-1001): 45 min phone-logged on Tue 6 Jan: 45 × 21.50 / 60 = £16.13.
    v1 = w.visit("R001", utc(2026, 1, 6, 9), 45)
    w.attend(v1, "1001", utc(2026, 1, 6, 9), utc(2026, 1, 6, 9, 45))
    # R002 (PO-1002): the only visit has no departure: an exception, nothing to bill.
    v2 = w.visit("R002", utc(2026, 1, 7, 9), 30, workers=("1002",))
    w.attend(v2, "1002", utc(2026, 1, 7, 9), None)
    return w


def run_cli(settings, *args, stdin: str | None = None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "carecall", "--db", settings.db_url, "invoice", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
                          input=stdin if stdin is not None else "")


def count(settings, model) -> int:
    with factory_for(settings)() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_invoice_without_issue_previews_prints_a_summary_and_stores_nothing(world, settings, tmp_path):
    proc = run_cli(settings, "--period", "2026-01-05", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "preview: nothing is issued; add --issue to issue" in proc.stdout
    # One invoice (PO-1001 £16.13); PO-1002 has only its exception; 0 minutes over the cap.
    assert "1 invoice(s) to issue, total £16.13; 1 exception(s) not charged; 0 minute(s) over" in proc.stdout
    assert "1 purchase order(s) with nothing to bill get no invoice" in proc.stdout
    assert count(settings, Invoice) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["DRAFT-Lewisham-PO-1001.pdf"]


def test_issue_without_a_terminal_needs_yes_and_then_issues_no_nil_invoice(world, settings):
    proc = run_cli(settings, "--period", "2026-01-05", "--issue")
    assert proc.returncode == 2
    assert "--issue without a terminal needs --yes" in proc.stderr
    assert count(settings, Invoice) == 0
    proc = run_cli(settings, "--period", "2026-01-05", "--issue", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "1 invoice(s) issued, total £16.13" in proc.stdout
    with factory_for(settings)() as s:
        assert s.execute(select(Invoice.number, Invoice.purchase_order, Invoice.total_pence)).all() == [
            (1, "PO-1001", 1613)]
        assert s.scalar(select(func.count()).select_from(InvoiceLine)) == 1  # the exception's draft went too


def test_nil_returns_are_issued_only_when_asked(world, settings):
    result = invoices.issue(world.factory, settings, P0, nil_returns=True)
    got = [(d.number, d.purchase_order, str(d.total), d.is_nil) for d in result.invoices]
    assert got == [("INV-000001", "PO-1001", "16.13", False), ("INV-000002", "PO-1002", "0.00", True)]


def test_an_exception_dropped_with_its_nil_invoice_is_billed_once_corrected(world, settings):
    invoices.issue(world.factory, settings, P0)
    # The departure is entered (a correction) after the period closed: billed on the next invoice.
    from ivr.models import Attendance

    with world.factory.begin() as s:
        a = s.scalar(select(Attendance).where(Attendance.departure_at.is_(None)))
        a.departure_at = utc(2026, 1, 7, 9, 30)
    [doc] = invoices.issue(world.factory, settings, dt.date(2026, 2, 2)).invoices
    assert doc.purchase_order == "PO-1002"
    assert [(ln.kind, ln.billable_minutes, str(ln.amount)) for ln in doc.lines] == [("adjustment", 30, "10.75")]
