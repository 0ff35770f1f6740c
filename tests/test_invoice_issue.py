"""Issuing: numbering, dates, exact CSV, freezing, and corrections on the next invoice."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
import sys
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing import invoices
from billing.models import Invoice, InvoiceLine
from billing.render import csv_text
from billing.rules import BillingConfig
from ivr.models import Attendance
from tests.billing_world import World, utc
from tests.helpers import factory_for, import_world

D = Decimal
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P0, P1 = dt.date(2026, 1, 5), dt.date(2026, 2, 2)
EXACT = ("invoice_number,funder,purchase_order,resident_reference,visit_ref,worker_number,arrival,departure,"
         "method,billable_minutes,rate,amount")


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    w = World(factory)
    # P0: R001 (Lewisham PO-1001) Tue 6 Jan 09:00–09:45 phone: 45 × 21.50 / 60 = 16.13.
    v1 = w.visit("R001", utc(2026, 1, 6, 9), 45, ref="V-R001-1")
    w.attend(v1, "1001", utc(2026, 1, 6, 9), utc(2026, 1, 6, 9, 45))
    # R002 (Lewisham PO-1002) Sat 10 Jan 60 min manual, entered 1 h after: 60 × 23.00 / 60 = 23.00.
    v2 = w.visit("R002", utc(2026, 1, 10, 9), 60, workers=("1002",), ref="V-R002-1")
    w.attend(v2, "1002", utc(2026, 1, 10, 9), utc(2026, 1, 10, 10), method="manual", entered=utc(2026, 1, 10, 11))
    # R003 (Private, rates 25.00/27.50/37.50) Wed 7 Jan 30 min: 30 × 25.00 / 60 = 12.50.
    v3 = w.visit("R003", utc(2026, 1, 7, 9), 30, workers=("1003",), ref="V-R003-1")
    w.attend(v3, "1003", utc(2026, 1, 7, 9), utc(2026, 1, 7, 9, 30))
    return w


def run_cli(settings, *args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "carecall", "--db", settings.db_url, *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_invoices_are_numbered_in_sequence_per_funder_and_po_and_private_per_resident(world, settings):
    result = invoices.issue(world.factory, settings, P0)
    got = [(d.number, d.funder, d.purchase_order, d.resident_reference, d.total) for d in result.invoices]
    assert got == [
        ("INV-000001", "Lewisham", "PO-1001", "", D("16.13")),
        ("INV-000002", "Lewisham", "PO-1002", "", D("23.00")),
        ("INV-000003", "Private", "PRIV-R003", "R003", D("12.50")),
    ]
    # Issued the day after the period ends (Sun 1 Feb), due 28 days later.
    assert {(d.issue_date, d.due_date) for d in result.invoices} == {(dt.date(2026, 2, 2), dt.date(2026, 3, 2))}
    # The next period continues the sequence.
    v = world.visit("R001", utc(2026, 2, 3, 9), 30)
    world.attend(v, "1001", utc(2026, 2, 3, 9), utc(2026, 2, 3, 9, 30))
    [nxt] = invoices.issue(world.factory, settings, P1).invoices
    assert nxt.number == "INV-000004"


def test_csv_has_exactly_the_agreed_columns_local_times_and_pence(world, settings, tmp_path):
    proc = run_cli(settings, "invoice", "--period", "2026-01-05", "--format", "csv", "--out", str(tmp_path),
                   "--issue", "--yes")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "invoices-2026-01-05.csv").read_text()
    assert text.splitlines()[0] == EXACT
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["invoice_number"] for r in rows] == ["INV-000001", "INV-000002", "INV-000003"]
    r2 = rows[1]
    assert (r2["resident_reference"], r2["visit_ref"], r2["worker_number"]) == ("R002", "V-R002-1", "1002")
    assert (r2["arrival"], r2["departure"], r2["method"]) == ("2026-01-10 09:00", "2026-01-10 10:00", "manual")
    assert (r2["billable_minutes"], r2["rate"], r2["amount"]) == ("60", "23.00", "23.00")
    assert rows[0]["method"] == "phone" and rows[0]["amount"] == "16.13"


def test_csv_shows_local_time_in_summer(world, settings):
    # 08:00 UTC on 1 Jul is 09:00 BST in the CSV. P6 starts 22 Jun.
    v = world.visit("R001", utc(2026, 7, 1, 8), 30)
    world.attend(v, "1001", utc(2026, 7, 1, 8), utc(2026, 7, 1, 8, 30))
    docs = invoices.preview(world.factory, settings, dt.date(2026, 6, 22), "Lewisham")
    rows = list(csv.reader(io.StringIO(csv_text(invoices.CSV_COLUMNS,
                                                invoices.csv_rows(docs, BillingConfig.from_settings(settings))))))
    assert rows[1][6:8] == ["2026-07-01 09:00", "2026-07-01 09:30"]


def test_period_not_on_the_grid_is_refused_with_a_clear_message(world, settings, tmp_path):
    proc = run_cli(settings, "invoice", "--period", "2026-01-06", "--format", "csv", "--out", str(tmp_path),
                   "--issue", "--yes")
    assert proc.returncode == 2
    assert ("2026-01-06 is not the start of a billing period: it falls in the period 2026-01-05 to 2026-02-01"
            in proc.stderr)
    assert "use --period 2026-01-05, or --period last" in proc.stderr
    with factory_for(settings)() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == 0


def test_reissuing_an_issued_period_returns_the_same_documents(world, settings):
    first = invoices.issue(world.factory, settings, P0)
    assert first.newly_issued
    # A late change to P0 must not alter the issued invoice.
    with world.factory.begin() as s:
        a = s.scalar(select(Attendance).where(Attendance.departure_at == utc(2026, 1, 6, 9, 45)))
        a.departure_at = utc(2026, 1, 6, 10)
    again = invoices.issue(world.factory, settings, P0)
    assert not again.newly_issued
    assert [(d.number, d.total, d.lines) for d in again.invoices] == [
        (d.number, d.total, d.lines) for d in first.invoices]
    assert invoices.preview(world.factory, settings, P0)[0].total == D("16.13")
    with world.factory() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == 3


def test_correction_after_issue_is_an_adjustment_on_the_next_periods_invoice(world, settings):
    invoices.issue(world.factory, settings, P0)
    # Office corrects R001's departure from 09:45 to 10:00 after P0 was issued: 60 min now.
    with world.factory.begin() as s:
        a = s.scalar(select(Attendance).where(Attendance.departure_at == utc(2026, 1, 6, 9, 45)))
        a.departure_at = utc(2026, 1, 6, 10)
    # P1 has its own visit: Tue 3 Feb 30 min = 10.75.
    v = world.visit("R001", utc(2026, 2, 3, 9), 30)
    world.attend(v, "1001", utc(2026, 2, 3, 9), utc(2026, 2, 3, 9, 30))
    [doc] = [d for d in invoices.issue(world.factory, settings, P1).invoices if d.purchase_order == "PO-1001"]
    corr = [(ln.kind, ln.service_period_start, ln.billable_minutes, ln.amount) for ln in doc.corrections]
    # Reverse 45 min (−16.13), re-bill 60 min (60 × 21.50 / 60 = 21.50): net +5.37.
    assert corr == [("reversal", P0, -45, D("-16.13")), ("adjustment", P0, 60, D("21.50"))]
    assert doc.total == D("16.12")  # 10.75 − 16.13 + 21.50
    # The issued P0 invoice is untouched and no further adjustment appears on the period after.
    [p0] = [d for d in invoices.issued(world.factory, settings, P0) if d.purchase_order == "PO-1001"]
    assert p0.total == D("16.13")
    p2 = invoices.preview(world.factory, settings, dt.date(2026, 3, 2), "Lewisham")
    assert all(not d.corrections for d in p2)


def test_attendance_linked_after_issue_is_billed_as_adjustment_next_period(world, settings):
    aid = world.attend(None, "1001", utc(2026, 1, 8, 9), utc(2026, 1, 8, 9, 30), resident="R001")
    invoices.issue(world.factory, settings, P0)
    v = world.visit("R001", utc(2026, 1, 8, 9), 30, ref="V-LATE")
    from ivr.models import Visit
    with world.factory.begin() as s:
        s.get(Attendance, aid).visit_id = s.scalar(select(Visit.id).where(Visit.visit_ref == v))
    [doc] = invoices.issue(world.factory, settings, P1, "Lewisham").invoices
    # 30 × 21.50 / 60 = 10.75 for P0, on P1's PO-1001 invoice.
    assert [(ln.kind, ln.visit_ref, ln.amount) for ln in doc.lines] == [("adjustment", "V-LATE", D("10.75"))]
    assert doc.total == D("10.75")


def test_csv_of_issued_period_includes_correction_rows_with_signed_amounts(world, settings, tmp_path):
    invoices.issue(world.factory, settings, P0)
    with world.factory.begin() as s:
        a = s.scalar(select(Attendance).where(Attendance.departure_at == utc(2026, 1, 6, 9, 45)))
        a.departure_at = utc(2026, 1, 6, 10)
    proc = run_cli(settings, "invoice", "--period", "2026-02-02", "--format", "csv", "--out", str(tmp_path),
                   "--issue", "--yes")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "invoices-2026-02-02.csv").read_text())))
    assert [(r["invoice_number"], r["billable_minutes"], r["amount"]) for r in rows] == [
        ("INV-000004", "-45", "-16.13"), ("INV-000004", "60", "21.50")]
    with factory_for(settings)() as s:
        assert s.scalar(select(func.count()).select_from(InvoiceLine)) == 5


def test_a_period_still_running_cannot_be_issued_and_nothing_is_stored(world, settings):
    # Invoices are issued in arrears: P0 runs 2026-01-05 … 2026-02-01; on 2026-02-01 it has not ended.
    with pytest.raises(invoices.BillingError, match="has not ended yet"):
        invoices.issue(world.factory, settings, P0, now=dt.datetime(2026, 2, 1, 23, 0, tzinfo=dt.UTC))
    assert invoices.issued(world.factory, settings, P0) == []
    # The next morning (local) it has.
    assert invoices.issue(world.factory, settings, P0, now=dt.datetime(2026, 2, 2, 0, 5, tzinfo=dt.UTC)).invoices
