"""Credit notes: a full reversal in its own sequence; the invoice stays frozen; the next run re-bills."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from billing import invoices
from billing.credit_notes import issue_credit_note, parse_invoice_number
from billing.models import Invoice
from billing.render import render_html
from billing.rules import BillingConfig
from tests.billing_world import World, utc
from tests.helpers import factory_for, import_world

P0, P1 = dt.date(2026, 1, 5), dt.date(2026, 2, 2)


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    w = World(factory)
    # R001 PO-1001: 45 min on Tue 6 Jan = 45 × 21.50 / 60 = £16.13. R002 PO-1002: 60 min Wed 7 Jan = £21.50.
    w.attend(w.visit("R001", utc(2026, 1, 6, 9), 45), "1001", utc(2026, 1, 6, 9), utc(2026, 1, 6, 9, 45))
    w.attend(w.visit("R002", utc(2026, 1, 7, 9), 60, workers=("1002",)), "1002", utc(2026, 1, 7, 9),
             utc(2026, 1, 7, 10))
    invoices.issue(w.factory, settings, P0)
    return w


def test_a_credit_note_has_its_own_number_and_leaves_the_invoice_frozen(world, settings):
    with world.factory() as s:
        before = s.execute(select(Invoice.number, Invoice.total_pence)).all()
    note = issue_credit_note(world.factory, settings, 2, "Sent to the wrong funder", "finance")
    assert (note.number, note.invoice.number, str(note.total)) == ("CN-000001", "INV-000002", "21.50")
    with world.factory() as s:
        assert s.execute(select(Invoice.number, Invoice.total_pence)).all() == before
    assert invoices.load(world.factory, settings, 2).credited_by == "CN-000001"
    html = render_html(note, BillingConfig.from_settings(settings), "credit_note.html")
    assert "Credits invoice" in html and "INV-000002" in html and "Sent to the wrong funder" in html
    assert "−£21.50" in html
    second = issue_credit_note(world.factory, settings, 1, "Duplicate", "finance")
    assert second.number == "CN-000002"


def test_an_invoice_is_credited_once_and_a_reason_is_required(world, settings):
    issue_credit_note(world.factory, settings, 1, "Duplicate", "finance")
    with pytest.raises(invoices.BillingError, match="INV-000001 was already credited by CN-000001"):
        issue_credit_note(world.factory, settings, 1, "again", "finance")
    with pytest.raises(invoices.BillingError, match="needs a reason"):
        issue_credit_note(world.factory, settings, 2, "  ", "finance")
    with pytest.raises(invoices.BillingError, match="no invoice INV-000009"):
        issue_credit_note(world.factory, settings, 9, "x", "finance")
    config = BillingConfig.from_settings(settings)
    assert parse_invoice_number("INV-000002", config) == parse_invoice_number("2", config) == 2
    with pytest.raises(invoices.BillingError, match="not an invoice number"):
        parse_invoice_number("CN-1", config)


def test_the_next_period_re_bills_a_credited_invoice_as_adjustments(world, settings):
    issue_credit_note(world.factory, settings, 2, "Disputed: re-invoiced with the corrected time", "finance")
    [doc] = invoices.issue(world.factory, settings, P1).invoices
    # PO-1002's visit is billed again (£21.50) on the next invoice; PO-1001's (not credited) is not.
    assert (doc.number, doc.purchase_order) == ("INV-000003", "PO-1002")
    assert [(ln.kind, ln.billable_minutes, str(ln.amount), ln.service_period_start) for ln in doc.lines] == [
        ("adjustment", 60, "21.50", P0)]
