"""Finance's own tables: the funders invoices are addressed to, and credit notes.

A **funder** row says where a funder's invoices go (invoicing address, e-mail), whether
its packages need a purchase order, whether it is *private* (one invoice per resident,
addressed to the resident or their representative), its payment terms, and the
brokerage e-mail other features send missed-visit notices to. The private flag is a
column, so a private funder may be called anything.

A **credit note** reverses one issued invoice in full, numbered in its own sequence.
The invoice itself is never changed; the ledger (``billing.invoices._diff``) ignores a
credited invoice's lines, so the next issue run bills what the records then say about
those visits as adjustments (the "credit and re-invoice" finance teams expect).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ivr.models import Base, UTCDateTime, utcnow


class Funder(Base):
    """A council, an NHS body or the private-pay funder: who an invoice is addressed to."""

    __tablename__ = "billing_funders"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)  # as spelt in the packages' funder column
    invoice_address: Mapped[str] = mapped_column(Text, default="")  # lines separated by newlines
    email: Mapped[str] = mapped_column(String(254), default="")  # where invoices are sent
    po_required: Mapped[bool] = mapped_column(Boolean, default=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    payment_days: Mapped[int] = mapped_column(Integer, default=28)
    brokerage_email: Mapped[str] = mapped_column(String(254), default="")  # missed-visit notices
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (CheckConstraint("payment_days >= 0 AND payment_days <= 365", name="payment_days_range"),)


class CreditNote(Base):
    """The full reversal of one issued invoice, with the reason finance gave."""

    __tablename__ = "billing_credit_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("billing_invoices.id"), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    issue_date: Mapped[dt.date] = mapped_column(Date)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    issued_by: Mapped[str] = mapped_column(String(80), default="")
    total_pence: Mapped[int] = mapped_column(BigInteger, default=0)  # positive: the amount credited


import billing.funders  # noqa: E402,F401 - registers ``carecall import funders`` with the importer
