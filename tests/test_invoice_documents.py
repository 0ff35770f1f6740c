"""A sendable invoice: provider letterhead, bill-to from the funders table, private clients, repeated headers.

Every PDF is read back with ``pdftotext -layout`` page by page, as a reader would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from decimal import Decimal

import pytest
from sqlalchemy import select

from billing import invoices, timesheets
from billing.invoices import DocLine
from billing.models import Invoice
from billing.provider import Provider
from billing.render import render_pdf
from billing.rules import BillingConfig, period_starting
from carecall.config import ConfigError, load_settings, parse_table
from ivr.importer import import_csv
from ivr.models import ContactRelation, Resident, ResidentContact
from tests.billing_world import World, utc
from tests.helpers import context_for, factory_for, import_world

P2 = dt.date(2026, 3, 2)
PROVIDER = {
    "legal_name": "Riverside Home Care Ltd",
    "address": ["Unit 4, 12 Catford Broadway", "London", "SE6 4SP"],
    "company_number": "09876543",
    "account_name": "Riverside Home Care Ltd",
    "sort_code": "20-00-00",
    "account_number": "12345678",
    "remittance_email": "remittances@riverside.example",
    "footer": "Registered in England and Wales no. 09876543.",
}
FUNDERS = """name,invoice_address,email,po_required,private,payment_days,brokerage_email
Lewisham,"Accounts Payable; London Borough of Lewisham; PO Box 59953; London SE6 9GJ",ap@lewisham.example,yes,no,30,
Self-funded,,,no,yes,14,
"""


def pages(data: bytes, tmp_path) -> list[str]:
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return [" ".join(p.split()) for p in out.stdout.split("\f") if p.strip()]


def with_provider(settings):
    return dataclasses.replace(settings, raw={**settings.raw, "provider": PROVIDER})


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    report = import_csv(factory, "funders", FUNDERS, context_for(settings))
    assert report.ok, report.errors
    return World(factory)


def test_invoice_page_one_has_provider_bill_to_dates_po_totals_and_how_to_pay(world, settings, tmp_path):
    settings = with_provider(settings)
    # R004 (PO-1004, 3 h/week from 2 Mar: cap 720 min): 60 visits of 30 min, three a day from Mon 2 Mar.
    # Billed in time order up to the cap: the first 24 (2–9 Mar); 6 fall on Sat 7 / Sun 8 at £23.00
    # (3 h = £69.00), 18 on weekdays at £21.50 (9 h = £193.50): £262.50. Over: 36 × 30 = 1080 min = 18:00.
    for i in range(60):
        day = 2 + (i // 3) % 26
        start = utc(2026, 3, day, 8 + 4 * (i % 3))
        v = world.visit("R004", start, 30)
        world.attend(v, "1001", start, start + dt.timedelta(minutes=30))
    [doc] = invoices.issue(world.factory, settings, P2, "Lewisham").invoices
    text = pages(render_pdf(doc, BillingConfig.from_settings(settings)), tmp_path)
    first = text[0]
    for expected in ("Riverside Home Care Ltd", "Unit 4, 12 Catford Broadway", "Company no. 09876543",
                     "BILL TO", "London Borough of Lewisham", "PO Box 59953", "ap@lewisham.example",
                     "Invoice number INV-000001", "Invoice date 30 Mar 2026",
                     "Due date 29 Apr 2026 (30 days)",  # the funder's own payment terms
                     "Purchase order PO-1004", "Service period 02 Mar 2026 to 29 Mar 2026",
                     "Total due £262.50", "Sort code 20-00-00", "Account number 12345678",
                     "quoting INV-000001 and PO PO-1004", "Remittance advice remittances@riverside.example",
                     "exempt from VAT"):
        assert expected in first, expected
    assert "Frequency of service 24 visits (6.0 a week)" in first
    assert "weekend £23.00 3:00 £69.00 hourly £21.50 9:00 £193.50" in first
    assert "Over commissioned hours 18:00 over commissioned hours, not charged" in first
    assert len(text) >= 2
    header = "Resident Visit Worker Arrival Departure Logged Min Rate Amount Note"
    assert all(header in page for page in text[:2]), "the visits table repeats its header on page 2"


def _doc_lines(charged: int, exceptions: int, period) -> list[DocLine]:
    t0 = dt.datetime(2026, 3, 3, 9, tzinfo=dt.UTC)
    out = []
    for i in range(charged + exceptions):
        t = t0 + dt.timedelta(hours=i)
        billed = i < charged
        out.append(DocLine("billed" if billed else "exception", i, 1, period.start, "R001", f"V{i}", "1001", t,
                           t, t, t if billed else None, "phone", 30 if billed else 0, 0, "hourly",
                           Decimal("21.50"), Decimal("10.75") if billed else Decimal("0.00"),
                           "" if billed else "no departure recorded"))
    return out


def test_exceptions_heading_stays_with_its_rows_across_a_page_break(tmp_path):
    # With 13/14 and 58/59 charged visits the "Exceptions" section moves from one page to the next
    # (measured for this layout): whichever page the heading is on also shows its column headers and rows.
    config = BillingConfig.from_settings(load_settings(None, environ={}))
    period = period_starting(P2, config.default, config.tz)
    pages_of_heading = set()
    for charged in (12, 13, 14, 57, 58, 59):
        doc = invoices.InvoiceDoc("DRAFT", "Lewisham", "PO-1", "", period, period.end, period.end,
                                  lines=_doc_lines(charged, 5, period))
        text = pages(render_pdf(doc, config), tmp_path)
        [index] = [i for i, p in enumerate(text) if "Exceptions (not charged)" in p]
        pages_of_heading.add(index)
        after = text[index].split("Exceptions (not charged)", 1)[1]
        assert "Resident Visit Worker Planned" in after and "no departure recorded" in after, charged
    assert len(pages_of_heading) >= 2  # the heading did cross a page boundary


def test_private_client_without_po_imports_bills_and_is_addressed_to_the_representative(world, settings, tmp_path):
    settings = with_provider(settings)
    ctx = context_for(settings)
    report = import_csv(world.factory, "packages", (
        "resident_reference,purchase_order,funder,weekly_hours,hourly_rate,weekend_rate,bank_holiday_rate,"
        "start_date,end_date\nR001,,Self-funded,5,26.00,28.00,39.00,2026-03-02,\n"), ctx)
    assert report.ok, report.errors
    world.resident("R010", funder="Self-funded", name="Cara White")
    with world.factory.begin() as s:
        r = s.scalar(select(Resident).where(Resident.reference == "R010"))
        r.address, r.postcode = "3 Ash Close, London", "SE6 3CC"
        s.add(ResidentContact(resident_id=r.id, name="Jane White", relation=ContactRelation.REPRESENTATIVE,
                              email="jane@example.org", billing_address="12 High Street\nBromley\nBR1 1AA"))
    world.package("R010", "", "Self-funded", "5", P2, rates=("26.00", "28.00", "39.00"))
    # Each: Tue 3 Mar 09:00–10:00, 60 × 26.00 / 60 = £26.00.
    for ref in ("R001", "R010"):
        v = world.visit(ref, utc(2026, 3, 3, 9), 60)
        world.attend(v, "1001", utc(2026, 3, 3, 9), utc(2026, 3, 3, 10))
    docs = invoices.issue(world.factory, settings, P2, "Self-funded").invoices
    got = {d.resident_reference: (d.purchase_order, str(d.total), d.bill_to_lines, d.bill_to_email) for d in docs}
    assert got == {
        "R001": ("", "26.00", ["Alice Brown", "1 Elm Road", "London", "SE6 1AA"], ""),  # no representative: home
        "R010": ("", "26.00", ["Jane White", "12 High Street", "Bromley", "BR1 1AA"], "jane@example.org"),
    }
    with world.factory() as s:  # frozen with the invoice
        assert s.scalar(select(Invoice.bill_to).where(Invoice.resident_id.is_not(None), Invoice.number == 2)) == (
            "Jane White\n12 High Street\nBromley\nBR1 1AA")
    doc = invoices.load(world.factory, settings, 2)
    first = pages(render_pdf(doc, BillingConfig.from_settings(settings)), tmp_path)[0]
    assert all(part in first for part in ("BILL TO", "Jane White", "12 High Street", "Bromley", "BR1 1AA"))
    assert "Care for Cara White (R010)" in first and "Purchase order none (private client)" in first
    assert "Due date 13 Apr 2026 (14 days)" in first and "Total due £26.00" in first
    assert "Client R010" not in first


def test_an_empty_po_is_refused_for_a_funder_that_requires_one(world, settings):
    report = import_csv(world.factory, "packages", (
        "resident_reference,purchase_order,funder,weekly_hours,hourly_rate,weekend_rate,bank_holiday_rate,"
        "start_date,end_date\nR001,,Lewisham,5,21.50,23.00,32.25,2026-03-02,\n"), context_for(settings))
    assert [str(e) for e in report.errors] == [
        "line 2: purchase_order is empty, and funder 'Lewisham' requires one (a private funder, or one marked "
        "po_required = no in the funders list, does not)"]


def test_funders_csv_bad_rows_are_all_named_and_nothing_is_imported(world, settings):
    report = import_csv(world.factory, "funders", (
        "name,email,po_required,payment_days\nCamden,not-an-email,yes,28\nBarnet,,maybe,28\nHarrow,,,400\n"),
        context_for(settings))
    assert [str(e) for e in report.errors] == [
        "line 2: email must be an e-mail address, got 'not-an-email'",
        "line 3: po_required must be yes or no, got 'maybe'",
        "line 4: payment_days must be a whole number of days from 0 to 365, got '400'"]


def test_timesheet_pdf_page_one_and_repeated_header(world, settings, tmp_path):
    settings = with_provider(settings)
    for i in range(50):
        start = utc(2026, 3, 2 + i % 27, 7 + i // 27 * 5)
        v = world.visit("R001", start, 30)
        world.attend(v, "1001", start, start + dt.timedelta(minutes=30))
    sheet = timesheets.build(world.factory, settings, "R001", P2)
    text = pages(render_pdf(sheet, BillingConfig.from_settings(settings), "timesheet.html"), tmp_path)
    assert "Riverside Home Care Ltd" in text[0] and "Alice Brown (R001)" in text[0]
    assert "Purchase order: PO-1001" in text[0] and "Total time 1500 minutes (25:00)" in text[0]
    assert len(text) >= 2
    header = "Visit Planned Worker Arrival Departure Logged Minutes Flags"
    assert all(header in page for page in text[:2])
    assert "Signed (resident or representative)" in text[-1]


@pytest.mark.parametrize(("raw", "message"), [
    ({"sort_code": "200000"}, "[provider] sort_code must look like 12-34-56"),
    ({"account_number": "1234"}, "[provider] account_number must be 8 digits"),
    ({"vat_number": "123"}, "[provider] vat_number must be GB and 9 (or 12) digits"),
    ({"remittance_email": "accounts"}, "[provider] remittance_email must be an e-mail address"),
    ({"legal_nme": "x"}, "unknown setting [provider] legal_nme"),
])
def test_provider_settings_are_checked(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_table("provider", raw)
    assert message in str(err.value)


def test_provider_missing_lists_what_an_invoice_would_lack():
    assert Provider().missing == ["legal_name", "address", "company_number or charity_number",
                                  "bank details (account_name, sort_code, account_number)", "remittance_email"]
    assert parse_table("provider", PROVIDER).missing == []
