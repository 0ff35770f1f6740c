"""Billing's own tables: approved extra hours, issue runs, frozen invoices and their lines.

Money is stored as whole pence (integers): SQLite has no exact decimal type, and an
integer survives both engines and ``SUM()`` exactly. Python works in ``Decimal`` and
converts at the edge (:func:`billing.rules.to_pence` / :func:`billing.rules.from_pence`).

An issued invoice is never updated: later corrections are new lines (a reversal of what
was billed and the corrected line) on a later invoice, so each line here is an
append-only ledger entry for its attendance.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ivr.models import Base, UTCDateTime, Visit, utcnow


class ExtraMinutesApproval(Base):
    """Minutes agreed with the funder above the commissioned hours for one package and period (spec 11.3)."""

    __tablename__ = "billing_approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("care_packages.id"), index=True)
    period_start: Mapped[dt.date] = mapped_column(Date)
    minutes: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    approved_by: Mapped[str] = mapped_column(String(80))
    approved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (
        CheckConstraint("minutes > 0", name="minutes_pos"),
        Index("ix_billing_approvals_pkg_period", "package_id", "period_start"),
    )


class BillingRun(Base):
    """A period closed for one funder ("" = every funder): its invoices are frozen from then on."""

    __tablename__ = "billing_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    period_start: Mapped[dt.date] = mapped_column(Date)
    funder: Mapped[str] = mapped_column(String(80), default="")
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    issued_by: Mapped[str] = mapped_column(String(80), default="")

    __table_args__ = (UniqueConstraint("period_start", "funder"),)


class Invoice(Base):
    """An issued invoice header: one per funder and purchase order (private clients: per resident)."""

    __tablename__ = "billing_invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int | None] = mapped_column(Integer, unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("billing_runs.id"), index=True)
    group_key: Mapped[str] = mapped_column(String(200))
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)  # last day, inclusive
    funder: Mapped[str] = mapped_column(String(80))
    purchase_order: Mapped[str] = mapped_column(String(60))
    # Set for private clients (one invoice each); NULL for a funder's purchase order.
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    issue_date: Mapped[dt.date] = mapped_column(Date)
    due_date: Mapped[dt.date] = mapped_column(Date)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    cap_minutes: Mapped[int] = mapped_column(Integer, default=0)  # commissioned + approved, all packages
    billed_minutes: Mapped[int] = mapped_column(Integer, default=0)
    over_cap_minutes: Mapped[int] = mapped_column(Integer, default=0)
    visits: Mapped[int] = mapped_column(Integer, default=0)
    total_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    # Who it was addressed to, frozen with the invoice (funder's invoicing address, or the
    # private client's / representative's billing address): first line the name.
    bill_to: Mapped[str] = mapped_column(Text, default="")
    bill_to_email: Mapped[str] = mapped_column(String(254), default="")

    lines: Mapped[list[InvoiceLine]] = relationship(back_populates="invoice", order_by="InvoiceLine.id")

    __table_args__ = (UniqueConstraint("period_start", "group_key"),)


class LineKind:
    BILLED = "billed"
    REVERSAL = "reversal"  # cancels a line billed on an earlier invoice
    ADJUSTMENT = "adjustment"  # the corrected line for an earlier period
    EXCEPTION = "exception"  # not billed: times missing
    REJECTED = "rejected"  # not billed: a rule refused it (manual entry too late)
    LEDGER = (BILLED, REVERSAL, ADJUSTMENT)
    ALL = (BILLED, REVERSAL, ADJUSTMENT, EXCEPTION, REJECTED)


class InvoiceLine(Base):
    __tablename__ = "billing_invoice_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("billing_invoices.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(12))
    attendance_id: Mapped[int | None] = mapped_column(ForeignKey("attendances.id"), index=True)
    package_id: Mapped[int | None] = mapped_column(ForeignKey("care_packages.id"))
    # The period whose service this line is for (earlier than the invoice's for adjustments).
    service_period_start: Mapped[dt.date] = mapped_column(Date)
    resident_reference: Mapped[str] = mapped_column(String(40))
    visit_ref: Mapped[str] = mapped_column(String(60))
    worker_number: Mapped[str] = mapped_column(String(8))
    planned_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    planned_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    arrival_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    departure_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    method: Mapped[str] = mapped_column(String(8))  # phone | manual
    billable_minutes: Mapped[int] = mapped_column(Integer, default=0)
    over_cap_minutes: Mapped[int] = mapped_column(Integer, default=0)
    rate_kind: Mapped[str] = mapped_column(String(16), default="")
    rate_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    reason: Mapped[str] = mapped_column(Text, default="")

    invoice: Mapped[Invoice] = relationship(back_populates="lines")

    __table_args__ = (
        CheckConstraint(
            "kind IN ('billed', 'reversal', 'adjustment', 'exception', 'rejected')", name="kind_known"
        ),
        Index("ix_billing_invoice_lines_invoice", "invoice_id", "id"),
    )


# The invoice run reads one batch of residents' visits in a period at a time.
Index("ix_billing_visits_resident_start", Visit.resident_id, Visit.planned_start)
