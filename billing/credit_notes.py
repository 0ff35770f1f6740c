"""Credit notes: the full reversal of one issued invoice, numbered in their own sequence.

An issued invoice is never changed or deleted. When it is wrong (sent to the wrong
funder, a duplicate, disputed), finance issues a credit note for it with a reason; the
credit note carries the same bill-to, purchase order and period, and the amount credited.
From then on the ledger leaves the credited invoice's lines out (see ``billing.accounts``),
so the next issue run for that funder re-bills what the records then say about those
visits, as adjustments on its invoice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing.accounts import CreditNote
from billing.invoices import BillingError, InvoiceDoc, load
from billing.models import Invoice
from billing.rules import BillingConfig, from_pence
from carecall.config import Settings
from ivr.db import unit_of_work
from ivr.models import AuditEntry, utcnow

MAX_REASON = 500


@dataclasses.dataclass
class CreditNoteDoc:
    """What a printed credit note shows: its own number and date, the reason, and the invoice it reverses."""

    number: str
    issue_date: dt.date
    reason: str
    invoice: InvoiceDoc

    @property
    def total(self):  # type: ignore[no-untyped-def]
        return self.invoice.total


def parse_invoice_number(text: str, config: BillingConfig) -> int:
    """``INV-000002``, ``000002`` or ``2`` → 2."""
    digits = text.strip().upper().removeprefix(config.invoice_prefix.upper())
    if not re.fullmatch(r"\d{1,9}", digits):
        raise BillingError(f"{text!r} is not an invoice number such as {config.invoice_number(1)}")
    return int(digits)


def issue_credit_note(factory: sessionmaker[Session], settings: Settings, invoice_number: int, reason: str,
                      actor: str, *, now: dt.datetime | None = None) -> CreditNoteDoc:
    """Credit invoice ``invoice_number`` in full; refuses an unknown or already credited invoice."""
    reason = reason.strip()
    if not reason:
        raise BillingError("a credit note needs a reason (it is printed on it)")
    if len(reason) > MAX_REASON:
        raise BillingError(f"the reason is longer than {MAX_REASON} characters")
    config = BillingConfig.from_settings(settings)
    now = now or utcnow()
    with unit_of_work(factory) as session:
        inv = session.scalar(select(Invoice).where(Invoice.number == invoice_number))
        if inv is None:
            raise BillingError(f"no invoice {config.invoice_number(invoice_number)}")
        done = session.scalar(select(CreditNote.number).where(CreditNote.invoice_id == inv.id))
        if done is not None:
            raise BillingError(f"{config.invoice_number(invoice_number)} was already credited by "
                               f"{config.credit_note_number(done)}")
        number = (session.scalar(select(func.max(CreditNote.number))) or 0) + 1
        session.add(CreditNote(number=number, invoice_id=inv.id, reason=reason,
                               issue_date=now.astimezone(config.tz).date(), issued_at=now, issued_by=actor,
                               total_pence=inv.total_pence))
        session.add(AuditEntry(at=now, actor=actor, action="credit_note", entity="invoice",
                               entity_id=config.invoice_number(invoice_number), reason_code="credit_note",
                               note=f"{config.credit_note_number(number)}: £{from_pence(inv.total_pence)}"))
    return load_credit_note(factory, settings, number)


def load_credit_note(factory: sessionmaker[Session], settings: Settings, number: int) -> CreditNoteDoc:
    config = BillingConfig.from_settings(settings)
    with factory() as session:
        row = session.execute(select(CreditNote, Invoice.number).join(Invoice, CreditNote.invoice_id == Invoice.id)
                              .where(CreditNote.number == number)).first()
        if row is None:
            raise BillingError(f"no credit note {config.credit_note_number(number)}")
        note, invoice_number = row
    invoice = load(factory, settings, invoice_number)
    return CreditNoteDoc(config.credit_note_number(note.number), note.issue_date, note.reason, invoice)
