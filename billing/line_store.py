"""Storing an issue run's billed lines: the figures from Python, the frozen copies from the database.

Why: an invoice line keeps its own copy of what it billed (resident, visit, worker and the
four times), so an issued invoice never changes when a visit is corrected later. Sending
those copies back from Python cost more than working the bill out: nineteen values bound
per line, 350,000 lines. Here a billed line is *staged* with only the figures the rules
produced (kind, attendance, package, method, minutes, rate, amount, reason; the invoice
comes from its package) and one ``INSERT … SELECT`` per chunk copies it into
``billing_invoice_lines`` together with
the attendance's times, its visit's reference and planned times, the worker's number and
the resident's reference, joined by primary key inside the database. Lines keep
the order they were staged in (``ORDER BY seq``), so line ids still follow each invoice.

The copies are what the figures were computed from only if nothing changes them between
the read and the copy. The issue run makes sure of it: on SQLite its transaction holds the
write lock from ``BEGIN IMMEDIATE`` to commit, so no other connection can change a row;
on PostgreSQL it runs at REPEATABLE READ, so every statement sees the run's one snapshot
(:func:`billing.invoices.issue`).

Correction lines (reversals, adjustments) carry figures and copies of their own (a
reversal repeats an earlier line as it was) and are not staged: the caller inserts them
whole.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    insert,
    select,
)
from sqlalchemy.schema import CreateTable

from billing import rawio
from billing.models import InvoiceLine
from billing.rules import PackageBill, PackageInfo
from ivr.models import Attendance, Resident, Visit, Worker

# Not part of the migrated schema: a connection's own scratch tables, emptied as they are used.
_stage_metadata = MetaData()
STAGE = Table(
    "billing_line_stage", _stage_metadata,
    Column("seq", Integer, primary_key=True),  # SQLite's rowid; PostgreSQL's serial
    Column("kind", String(12), nullable=False),
    Column("attendance_id", Integer, nullable=False),
    Column("package_id", Integer, nullable=False),
    Column("method", String(8), nullable=False),
    Column("billable_minutes", Integer, nullable=False),
    Column("over_cap_minutes", Integer, nullable=False),
    Column("rate_kind", String(16), nullable=False),
    Column("rate_pence", BigInteger, nullable=False),
    Column("amount_pence", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    prefixes=["TEMPORARY"],
)
# Which invoice each package's lines go on (one package is on one invoice: billing.invoices.group_for).
STAGE_INVOICES = Table(
    "billing_line_stage_invoices", _stage_metadata,
    Column("package_id", Integer, primary_key=True, autoincrement=False),
    Column("invoice_id", Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
# The order of a staged line's tuple.
STAGE_COLUMNS = tuple(c.name for c in STAGE.c if c.name != "seq")
# A stored line's columns, in the order the copy selects them (and billing.invoices writes a whole line).
LINE_COLUMNS = ("invoice_id", "kind", "attendance_id", "package_id", "service_period_start", "resident_reference",
                "visit_ref", "worker_number", "planned_start", "planned_end", "arrival_at", "departure_at", "method",
                "billable_minutes", "over_cap_minutes", "rate_kind", "rate_pence", "amount_pence", "reason")
CHUNK = 5000


class StagedBill(NamedTuple):
    """A bill as the invoice sink stores it and a worker sends it: its figures, not its attendance rows.

    ``lines`` are staged as they are (:data:`STAGE_COLUMNS`), and the totals the invoice
    header needs come summed, so the run's own process touches no line one by one.
    """

    package: PackageInfo
    cap_minutes: int
    over_cap_minutes: int
    visits: int
    lines: list[tuple[Any, ...]]
    pence: int  # the billed lines' amounts
    billed_minutes: int
    charged: int  # ledger lines with minutes or money: an invoice with none is a nil return
    exceptions: int  # lines not billed (times missing, a rule refused them)
    bill_to: tuple[str, str] | None = None  # a private client's (address, e-mail), if looked up already


def staged(bill: PackageBill, bill_to: tuple[str, str] | None = None) -> StagedBill:
    pid = bill.package.package_id
    lines: list[tuple[Any, ...]] = []
    append = lines.append
    pence = billed = charged = exceptions = 0
    for kind, row, method, minutes, over, rate_kind, rate, amount, reason in bill.raw_lines:
        if kind == "billed":  # the one ledger kind a bill has (LineKind.LEDGER)
            pence += amount
            billed += minutes
            if minutes or amount:
                charged += 1
        else:
            exceptions += 1
        append((kind, row.attendance_id, pid, method, minutes, over, rate_kind, rate, amount, reason))
    return StagedBill(bill.package, bill.cap_minutes, bill.over_cap_minutes, bill.visits, lines, pence, billed,
                      charged, exceptions, bill_to)


class LineStage:
    """Staged billed lines of one period, copied into the invoice lines ``CHUNK`` at a time."""

    def __init__(self, conn: Connection, service_period_start: dt.date) -> None:
        self.conn = conn
        for table in (STAGE, STAGE_INVOICES):
            conn.execute(CreateTable(table, if_not_exists=True))
            conn.execute(table.delete())  # a connection reused after a failed run starts empty
        self.rows: list[tuple[Any, ...]] = []
        self.mapped: set[int] = set()  # packages whose invoice is in the stage's map
        self.new_invoices: list[tuple[int, int]] = []  # (package, invoice) not yet in it
        self.period = service_period_start
        s, m, a, v, w, r = (STAGE.c, STAGE_INVOICES.c, Attendance.__table__.c, Visit.__table__.c,
                            Worker.__table__.c, Resident.__table__.c)
        copied = select(
            m.invoice_id, s.kind, s.attendance_id, s.package_id, bindparam("sps", type_=Date), r.reference,
            v.visit_ref, w.worker_number, v.planned_start, v.planned_end, a.arrival_at, a.departure_at, s.method,
            s.billable_minutes, s.over_cap_minutes, s.rate_kind, s.rate_pence, s.amount_pence, s.reason,
        ).select_from(
            STAGE.join(STAGE_INVOICES, m.package_id == s.package_id)
            .join(Attendance.__table__, a.id == s.attendance_id).join(Visit.__table__, v.id == a.visit_id)
            .join(Worker.__table__, w.id == a.worker_id)
            # The package was chosen among the visit's resident's (billing.queries.package_bills),
            # so the visit's resident is the package's: one lookup fewer per line.
            .join(Resident.__table__, r.id == v.resident_id)
        ).order_by(s.seq)
        # preserve_rowcount: psycopg's cursor forgets the count once SQLAlchemy closes it.
        self.copy = (insert(InvoiceLine.__table__).from_select(LINE_COLUMNS, copied)
                     .execution_options(preserve_rowcount=True))

    def add(self, bill: StagedBill, invoice_id: int) -> None:
        pid = bill.package.package_id
        if pid not in self.mapped:
            self.mapped.add(pid)
            self.new_invoices.append((pid, invoice_id))
        self.rows.extend(bill.lines)
        if len(self.rows) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Stage the buffered lines, copy them into the invoice lines in staging order, empty the stage.

        A chunk at a time, not once at the end: the copy of one chunk overlaps the workers
        computing the next (billing.parallel), and memory holds one chunk.
        """
        if self.new_invoices:
            rawio.insert_many(self.conn, STAGE_INVOICES, ("package_id", "invoice_id"), self.new_invoices)
            self.new_invoices = []
        if not self.rows:
            return
        rawio.insert_many(self.conn, STAGE, STAGE_COLUMNS, self.rows)
        result = self.conn.execute(self.copy, {"sps": self.period})
        if result.rowcount != len(self.rows):
            # Every staged line names an attendance, visit, worker and package that exist
            # (foreign keys): a line the join dropped would be a line lost from an invoice.
            raise RuntimeError(f"{len(self.rows)} invoice lines staged, {result.rowcount} stored")
        self.conn.execute(STAGE.delete())
        self.rows = []
