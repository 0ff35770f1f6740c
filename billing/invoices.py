"""Invoices: preview a period, issue (freeze) it, find later corrections, and load what was issued.

Public functions (what the office web calls):

- :func:`preview` – the documents a period would produce now, nothing stored (or the
  frozen ones, if the period is already issued for that funder).
- :func:`issue` – close the period for one funder (or all): invoices and their lines are
  written once and never changed. Re-issuing returns the same stored documents.
- :func:`load` / :func:`issued` – stored documents by number / by period.
- :func:`approve_extra_minutes` – record minutes agreed above the commissioned hours.
- :func:`csv_rows`, :func:`write_csv` and :mod:`billing.render` for the outputs.

A correction made after a period was issued (an attendance edited, a visit linked, an
approval recorded) is found by the next issue run: the affected package-periods are
recomputed and compared with what the ledger of issued lines says was billed; every
difference becomes a *reversal* of the old line plus an *adjustment* with the new one,
on the next invoice of the same purchase order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from billing import line_store, parallel, rawio, stored_csv
from billing.accounts import CreditNote
from billing.funders import BillTo, load_config
from billing.models import BillingRun, ExtraMinutesApproval, Invoice, InvoiceLine, LineKind
from billing.queries import (
    BATCH,
    FunderPeriod,
    Unassigned,
    funders,
    package_bills,
    period_bills,
    resident_batches,
    residents_in,
)
from billing.rules import (
    BillingConfig,
    Line,
    PackageBill,
    PackageInfo,
    Period,
    from_pence,
    issue_dates,
    period_containing,
    period_starting,
    to_pence,
)
from carecall.config import Settings
from ivr.db import unit_of_work
from ivr.models import Attendance, CarePackage, Resident, Visit, utcnow

CSV_COLUMNS = stored_csv.CSV_COLUMNS


class BillingError(ValueError):
    """A request billing cannot carry out (bad period, unknown resident …); the message says why."""


# --- documents ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DocLine:
    """An invoice line as printed and stored; ``service_period_start`` differs from the invoice's for corrections."""

    kind: str
    attendance_id: int | None
    package_id: int | None
    service_period_start: dt.date
    resident_reference: str
    visit_ref: str
    worker_number: str
    planned_start: dt.datetime | None
    planned_end: dt.datetime | None
    arrival_at: dt.datetime | None
    departure_at: dt.datetime | None
    method: str
    billable_minutes: int = 0
    over_cap_minutes: int = 0
    rate_kind: str = ""
    rate: Decimal = Decimal("0.00")
    amount: Decimal = Decimal("0.00")
    reason: str = ""

    @classmethod
    def from_rule_line(cls, line: Line, period: Period, kind: str | None = None) -> DocLine:
        return cls(kind or line.kind, line.attendance_id, line.package_id, period.start, line.resident_reference,
                   line.visit_ref, line.worker_number, line.planned_start, line.planned_end, line.arrival_at,
                   line.departure_at, line.method, line.billable_minutes, line.over_cap_minutes, line.rate_kind,
                   line.rate, line.amount, line.reason)

    @classmethod
    def from_row(cls, r: InvoiceLine) -> DocLine:
        return cls(r.kind, r.attendance_id, r.package_id, r.service_period_start, r.resident_reference, r.visit_ref,
                   r.worker_number, r.planned_start, r.planned_end, r.arrival_at, r.departure_at, r.method,
                   r.billable_minutes, r.over_cap_minutes, r.rate_kind, from_pence(r.rate_pence),
                   from_pence(r.amount_pence), r.reason)

    def as_row(self, invoice_id: int) -> dict[str, Any]:
        return dict(invoice_id=invoice_id, kind=self.kind, attendance_id=self.attendance_id,
                    package_id=self.package_id, service_period_start=self.service_period_start,
                    resident_reference=self.resident_reference, visit_ref=self.visit_ref,
                    worker_number=self.worker_number, planned_start=self.planned_start,
                    planned_end=self.planned_end, arrival_at=self.arrival_at, departure_at=self.departure_at,
                    method=self.method, billable_minutes=self.billable_minutes,
                    over_cap_minutes=self.over_cap_minutes, rate_kind=self.rate_kind,
                    rate_pence=to_pence(self.rate), amount_pence=to_pence(self.amount), reason=self.reason)

    def ledger_key(self) -> tuple[Any, ...]:
        return (self.billable_minutes, self.amount, self.rate, self.arrival_at, self.departure_at, self.method)

    @property
    def counts_in_total(self) -> bool:
        return self.kind in LineKind.LEDGER


@dataclasses.dataclass(frozen=True)
class Group:
    """Who one invoice is addressed to: a funder's purchase order, or one private resident."""

    key: str
    funder: str
    purchase_order: str
    resident_id: int | None
    resident_reference: str


def group_of(bill: PackageBill, config: BillingConfig) -> Group:
    return group_for(bill.package, config)


def group_for(p: PackageInfo, config: BillingConfig) -> Group:
    if config.for_funder(p.funder).private:
        return Group(f"private:{p.resident_reference}", p.funder, p.purchase_order, p.resident_id,
                     p.resident_reference)
    return Group(f"po:{p.funder}:{p.purchase_order}", p.funder, p.purchase_order, None, "")


@dataclasses.dataclass
class InvoiceDoc:
    """Everything one printed invoice shows; built from a preview or loaded from the frozen tables."""

    number: str
    funder: str
    purchase_order: str
    resident_reference: str
    period: Period
    issue_date: dt.date
    due_date: dt.date
    cap_minutes: int = 0
    billed_minutes: int = 0
    over_cap_minutes: int = 0
    visits: int = 0
    total: Decimal = Decimal("0.00")
    lines: list[DocLine] = dataclasses.field(default_factory=list)
    issued: bool = False
    # When the lines are not loaded (big runs): how many exceptions/rejections, and charged lines.
    exception_count: int | None = None
    charged_count: int | None = None
    bill_to: str = ""  # name, then address lines (newline-separated)
    bill_to_email: str = ""
    resident_name: str = ""  # private clients: whose care this is
    credited_by: str = ""  # the credit note number, once credited

    @property
    def bill_to_lines(self) -> list[str]:
        return [ln for ln in self.bill_to.splitlines() if ln.strip()]

    @property
    def is_nil(self) -> bool:
        """Nothing to bill: no ledger line with minutes or money (a nil return, issued only on request)."""
        if self.charged_count is not None and not self.lines:
            return self.charged_count == 0
        return not any(ln.counts_in_total and (ln.billable_minutes or ln.amount) for ln in self.lines)

    @property
    def exceptions_total(self) -> int:
        return len(self.exceptions) if self.lines or self.exception_count is None else self.exception_count

    @property
    def charged(self) -> list[DocLine]:
        return [ln for ln in self.lines if ln.kind == LineKind.BILLED]

    @property
    def corrections(self) -> list[DocLine]:
        return [ln for ln in self.lines if ln.kind in (LineKind.REVERSAL, LineKind.ADJUSTMENT)]

    @property
    def exceptions(self) -> list[DocLine]:
        return [ln for ln in self.lines if ln.kind in (LineKind.EXCEPTION, LineKind.REJECTED)]

    @property
    def residents(self) -> list[str]:
        return sorted({ln.resident_reference for ln in self.lines})

    def rate_summary(self) -> list[tuple[str, Decimal, int, Decimal]]:
        """(rate kind, unit rate, minutes, amount) of this period's charged lines: the "unit charge" table."""
        acc: dict[tuple[str, Decimal], list[Any]] = {}
        for ln in self.charged:
            if ln.billable_minutes:
                slot = acc.setdefault((ln.rate_kind, ln.rate), [0, Decimal("0.00")])
                slot[0] += ln.billable_minutes
                slot[1] += ln.amount
        return [(k, r, m, a) for (k, r), (m, a) in sorted(acc.items(), key=lambda kv: (-kv[0][1], kv[0][0]))]

    @property
    def visits_per_week(self) -> Decimal:
        return (Decimal(self.visits) * 7 / self.period.days).quantize(Decimal("0.1"))


# --- writing: the same run feeds a preview (memory) or an issue (database) ----------------


class _Sink(Protocol):
    def add(self, group: Group, line: DocLine) -> None: ...

    def add_bill(self, group: Group, bill: PackageBill) -> None: ...


@dataclasses.dataclass
class _Totals:
    cap: int = 0
    billed: int = 0
    over: int = 0
    visits: int = 0
    pence: int = 0
    charged: int = 0  # ledger lines with minutes or money: none means a nil return
    ledger: int = 0  # ledger lines, with or without minutes (InvoiceDoc.charged_count)
    exceptions: int = 0  # exception and rejected lines (InvoiceDoc.exception_count)


class _MemorySink:
    def __init__(self, config: BillingConfig, period: Period, issue: dt.date, due: dt.date, bill_to: BillTo) -> None:
        self.config, self.period, self.issue, self.due = config, period, issue, due
        self.bill_to = bill_to
        self.docs: dict[str, InvoiceDoc] = {}

    def _doc(self, g: Group) -> InvoiceDoc:
        doc = self.docs.get(g.key)
        if doc is None:
            address, email = self.bill_to(g.funder, g.resident_id)
            doc = self.docs[g.key] = InvoiceDoc("DRAFT", g.funder, g.purchase_order, g.resident_reference,
                                                self.period, self.issue, self.due, bill_to=address,
                                                bill_to_email=email, resident_name=self.bill_to.name(g.resident_id))
        return doc

    def add(self, group: Group, line: DocLine) -> None:
        doc = self._doc(group)
        doc.lines.append(line)
        if line.counts_in_total:
            doc.total += line.amount
            if line.kind == LineKind.BILLED:
                doc.billed_minutes += line.billable_minutes

    def add_bill(self, group: Group, bill: PackageBill) -> None:
        doc = self._doc(group)
        doc.cap_minutes += bill.cap_minutes
        doc.over_cap_minutes += bill.over_cap_minutes
        doc.visits += bill.visits
        for line in bill.lines:
            self.add(group, DocLine.from_rule_line(line, self.period))


class _DatabaseSink:
    """Writes lines in batches with executemany; keeps only per-invoice running totals."""

    def __init__(self, session: Session, run: BillingRun, period: Period, issue: dt.date, due: dt.date,
                 bill_to: BillTo) -> None:
        self.s, self.run, self.period, self.issue, self.due = session, run, period, issue, due
        self.bill_to = bill_to
        self.ids: dict[str, int] = {}
        self.totals: dict[int, _Totals] = defaultdict(_Totals)
        self.buffer: list[tuple[Any, ...]] = []
        conn = session.connection()
        dialect = conn.dialect.name
        self.write_utc = rawio.utc_writer(dialect)
        day = rawio.date_writer(dialect)
        self.period_text = day(period.start)
        # Every header of the run has these in common; one raw INSERT … RETURNING per invoice.
        self.header = dict(run_id=run.id, period_start=self.period_text, period_end=day(period.last_day),
                           issue_date=day(issue), due_date=day(due), issued_at=self.write_utc(run.issued_at),
                           cap_minutes=0, billed_minutes=0, over_cap_minutes=0, visits=0, total_pence=0)
        table = Invoice.__table__
        names = (*self.header, "bill_to", "bill_to_email", "group_key", "funder", "purchase_order", "resident_id")
        self.insert_header = rawio.Query(conn, insert(table).values({n: bindparam(n, None) for n in names})
                                         .returning(table.c.id))
        self.stage = line_store.LineStage(conn, period.start)

    def _invoice_id(self, g: Group, bill_to: tuple[str, str] | None = None) -> int:
        iid = self.ids.get(g.key)
        if iid is None:
            address, email = bill_to or self.bill_to(g.funder, g.resident_id)
            iid = self.insert_header.first(**self.header, bill_to=address, bill_to_email=email, group_key=g.key,
                                           funder=g.funder, purchase_order=g.purchase_order,
                                           resident_id=g.resident_id)[0]
            self.ids[g.key] = iid
        return iid

    def add(self, group: Group, line: DocLine) -> None:
        iid = self._invoice_id(group)
        amount = to_pence(line.amount)
        t = self.totals[iid]
        if line.counts_in_total:
            t.pence += amount
            t.ledger += 1
            if line.billable_minutes or amount:
                t.charged += 1
            if line.kind == LineKind.BILLED:
                t.billed += line.billable_minutes
        else:
            t.exceptions += 1
        self.stage.flush()
        w = self.write_utc
        # A whole line, in line_store.LINE_COLUMNS order.
        self.buffer.append((iid, line.kind, line.attendance_id, line.package_id, line.service_period_start,
                            line.resident_reference, line.visit_ref, line.worker_number, w(line.planned_start),
                            w(line.planned_end), w(line.arrival_at), w(line.departure_at), line.method,
                            line.billable_minutes, line.over_cap_minutes, line.rate_kind, to_pence(line.rate),
                            amount, line.reason))
        if len(self.buffer) >= 5000:
            self.flush()

    def add_bill(self, group: Group, bill: PackageBill) -> None:
        self.add_staged(group, line_store.staged(bill))

    def add_staged(self, group: Group, bill: line_store.StagedBill) -> None:
        """A bill's lines staged as they came (:mod:`billing.line_store`), its totals added to its invoice's."""
        iid = self._invoice_id(group, bill.bill_to)
        t = self.totals[iid]
        t.cap += bill.cap_minutes
        t.over += bill.over_cap_minutes
        t.visits += bill.visits
        t.pence += bill.pence
        t.billed += bill.billed_minutes
        t.charged += bill.charged
        t.ledger += len(bill.lines) - bill.exceptions
        t.exceptions += bill.exceptions
        self.stage.add(bill, iid)

    def flush(self) -> None:
        self.stage.flush()  # staged lines first: line ids keep the order the lines were added in
        if self.buffer:
            rawio.insert_many(self.s.connection(), InvoiceLine.__table__, line_store.LINE_COLUMNS, self.buffer)
            self.buffer = []



def _finish_run(session: Session, run: BillingRun, totals: dict[int, _Totals], nil_returns: bool = False) -> None:
    """Header totals, then numbers in sequence in a stable order (funder, purchase order, resident), no gaps.

    A purchase order with nothing to bill (only exceptions, or nothing at all) gets no
    invoice unless ``nil_returns``: its draft rows are dropped in the same transaction,
    before numbering, so no £0.00 invoice is ever numbered by accident. Its attendances
    are not lost: a later correction (a departure entered) is found by :func:`corrections`
    as for any closed period.
    """
    if not nil_returns:
        nil = [i for i, t in totals.items() if t.charged == 0]
        for i in range(0, len(nil), 500):
            chunk = nil[i:i + 500]
            session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id.in_(chunk)))
            session.execute(delete(Invoice).where(Invoice.id.in_(chunk)))
        totals = {i: t for i, t in totals.items() if t.charged}
    if not totals:
        return
    table = Invoice.__table__
    stmt = update(table).where(table.c.id == bindparam("iid"))
    session.execute(stmt, [dict(iid=i, cap_minutes=t.cap, billed_minutes=t.billed, over_cap_minutes=t.over,
                                visits=t.visits, total_pence=t.pence) for i, t in totals.items()])
    start = (session.scalar(select(func.max(Invoice.number))) or 0) + 1
    ordered = session.scalars(select(Invoice.id).where(Invoice.run_id == run.id)
                              .order_by(Invoice.funder, Invoice.purchase_order, Invoice.group_key)).all()
    session.execute(stmt, [dict(iid=i, number=start + n) for n, i in enumerate(ordered)])


# --- the run ---------------------------------------------------------------------------------


def _scope(session: Session, config: BillingConfig, period_start: dt.date, funder: str | None) -> list[FunderPeriod]:
    names = [funder] if funder else funders(session)
    out = []
    for name in names:
        rules = config.for_funder(name)
        try:
            period = period_starting(period_start, rules, config.tz)
        except ValueError as exc:
            if funder:
                raise BillingError(f"{name}: {exc}") from exc
            continue  # this funder's periods start on other days
        out.append(FunderPeriod(name, rules, period))
    if funder and funder not in funders(session):
        raise BillingError(f"no care package is funded by {funder!r}")
    if not out and names:
        # No funder's periods start that day: say where the default grid's period starts.
        _period_for_run(config, period_start, None)
        raise BillingError(f"no funder has a billing period starting {period_start}")
    return out


def _closed_funders(session: Session, period_start: dt.date) -> set[str]:
    return set(session.scalars(select(BillingRun.funder).where(BillingRun.period_start == period_start)))


def _is_closed(closed: set[str], funder: str) -> bool:
    return "" in closed or funder in closed


def _run(session: Session, config: BillingConfig, fp: FunderPeriod, sink: _Sink, unassigned: Unassigned,
         now: dt.datetime, workers: parallel.BillWorkers | None = None) -> None:
    if workers is not None and isinstance(sink, _DatabaseSink):
        for bill in workers.bills(fp, unassigned):
            sink.add_staged(group_for(bill.package, config), bill)
    else:
        for b in period_bills(session, config, fp, unassigned):
            sink.add_bill(group_of(b, config), b)
    for group, line in corrections(session, config, fp, now):
        sink.add(group, line)


def corrections(session: Session, config: BillingConfig, fp: FunderPeriod,
                now: dt.datetime) -> Iterator[tuple[Group, DocLine]]:
    """Reversal + adjustment lines for earlier issued periods of this funder whose billing has changed."""
    runs = session.execute(select(BillingRun.period_start, BillingRun.issued_at).where(
        BillingRun.period_start < fp.period.start, or_(BillingRun.funder == fp.funder, BillingRun.funder == "")
    )).all()
    if not runs:
        return
    closed_starts = {start for start, _ in runs}
    watermark = max(at for _, at in runs)
    earliest = min(closed_starts)
    window_start = period_containing(earliest, fp.rules, config.tz).start_utc
    touched: set[tuple[dt.date, int]] = set()

    def note(resident_id: int, day: dt.date) -> None:
        q = period_containing(day, fp.rules, config.tz)
        if q.start in closed_starts:
            touched.add((q.start, resident_id))

    for rid, start in session.execute(
            select(Visit.resident_id, Visit.planned_start).join(Attendance, Attendance.visit_id == Visit.id)
            .where(Attendance.updated_at > watermark, Visit.planned_start >= window_start,
                   Visit.planned_start < fp.period.start_utc)):
        note(rid, start.astimezone(config.tz).date())
    for rid, sps in session.execute(
            select(CarePackage.resident_id, InvoiceLine.service_period_start)
            .join(CarePackage, InvoiceLine.package_id == CarePackage.id)
            .join(Attendance, InvoiceLine.attendance_id == Attendance.id)
            .where(Attendance.updated_at > watermark, CarePackage.funder == fp.funder,
                   InvoiceLine.service_period_start < fp.period.start)):
        note(rid, sps)
    for rid, sps in session.execute(
            select(CarePackage.resident_id, InvoiceLine.service_period_start)
            .join(CarePackage, InvoiceLine.package_id == CarePackage.id)
            .join(CreditNote, CreditNote.invoice_id == InvoiceLine.invoice_id)
            .where(CreditNote.issued_at > watermark, CarePackage.funder == fp.funder,
                   InvoiceLine.service_period_start < fp.period.start).distinct()):
        note(rid, sps)
    for rid, sps in session.execute(
            select(CarePackage.resident_id, ExtraMinutesApproval.period_start)
            .join(CarePackage, ExtraMinutesApproval.package_id == CarePackage.id)
            .where(ExtraMinutesApproval.approved_at > watermark, CarePackage.funder == fp.funder,
                   ExtraMinutesApproval.period_start < fp.period.start)):
        note(rid, sps)

    by_period: dict[dt.date, list[int]] = defaultdict(list)
    for start, rid in sorted(touched):
        by_period[start].append(rid)
    for start, rids in by_period.items():
        q = FunderPeriod(fp.funder, fp.rules, period_starting(start, fp.rules, config.tz))
        for i in range(0, len(rids), BATCH):
            batch = rids[i:i + BATCH]
            recomputed = {b.package.package_id: b for b in package_bills(session, config, q, batch)}
            yield from _diff(session, config, q, batch, recomputed, now)


def _diff(session: Session, config: BillingConfig, q: FunderPeriod, resident_ids: list[int],
          recomputed: dict[int, PackageBill], now: dt.datetime) -> Iterator[tuple[Group, DocLine]]:
    """Compare recomputed billing with the ledger (billed, less reversals, plus adjustments) per attendance."""
    ledger: dict[int, DocLine | None] = {}
    groups: dict[int, Group] = {}
    # A credited invoice's lines no longer count: the ledger is as if it had never been issued.
    credited = select(CreditNote.invoice_id)
    rows = session.execute(
        select(InvoiceLine, CarePackage).join(CarePackage, InvoiceLine.package_id == CarePackage.id)
        .where(CarePackage.resident_id.in_(resident_ids), CarePackage.funder == q.funder,
               InvoiceLine.service_period_start == q.period.start, InvoiceLine.kind.in_(LineKind.LEDGER),
               InvoiceLine.invoice_id.not_in(credited))
        .order_by(InvoiceLine.id))
    refs = dict(session.execute(select(Resident.id, Resident.reference).where(Resident.id.in_(resident_ids))).all())
    for line, pkg in rows.tuples():
        assert line.attendance_id is not None
        ledger[line.attendance_id] = None if line.kind == LineKind.REVERSAL else DocLine.from_row(line)
        if config.for_funder(pkg.funder).private:
            groups[line.attendance_id] = Group(f"private:{refs[pkg.resident_id]}", pkg.funder, pkg.purchase_order,
                                               pkg.resident_id, refs[pkg.resident_id])
        else:
            groups[line.attendance_id] = Group(f"po:{pkg.funder}:{pkg.purchase_order}", pkg.funder,
                                               pkg.purchase_order, None, "")
    when = f"period starting {q.period.start:%d %b %Y}"
    seen: set[int] = set()
    for bill in recomputed.values():
        group = group_of(bill, config)
        for line in bill.lines:
            seen.add(line.attendance_id)
            old = ledger.get(line.attendance_id)
            new = DocLine.from_rule_line(line, q.period) if line.kind == LineKind.BILLED else None
            if new is not None and new.billable_minutes == 0 and old is None:
                continue
            if (old.ledger_key() if old else None) == (new.ledger_key() if new else None):
                continue
            if old is not None:
                yield groups[line.attendance_id], _reversal(old, f"reverses the line billed for the {when}")
            if new is not None:
                reason = f"correction for the {when}" + (f"; {new.reason}" if new.reason else "")
                yield group, dataclasses.replace(new, kind=LineKind.ADJUSTMENT, reason=reason)
    for attendance_id, old in ledger.items():
        if old is not None and attendance_id not in seen:
            yield groups[attendance_id], _reversal(old, f"no longer billable for the {when}")


def _reversal(old: DocLine, reason: str) -> DocLine:
    return dataclasses.replace(old, kind=LineKind.REVERSAL, billable_minutes=-old.billable_minutes,
                               over_cap_minutes=0, amount=-old.amount, reason=reason)


# --- public API --------------------------------------------------------------------------------


def _period_for_run(config: BillingConfig, period_start: dt.date, funder: str | None) -> Period:
    rules = config.for_funder(funder) if funder else config.default
    try:
        return period_starting(period_start, rules, config.tz)
    except ValueError as exc:
        raise BillingError(str(exc)) from exc


def preview(factory: sessionmaker[Session], settings: Settings, period_start: dt.date,
            funder: str | None = None, *, now: dt.datetime | None = None) -> list[InvoiceDoc]:
    """The invoices for a period as they stand; nothing is stored. An issued funder's are the frozen ones."""
    now = now or utcnow()
    with factory() as session:
        config = load_config(settings, session)
        scope = _scope(session, config, period_start, funder)
        closed = _closed_funders(session, period_start)
        frozen = [fp.funder for fp in scope if _is_closed(closed, fp.funder)]
        docs = _load_docs(session, config, period_start, frozen) if frozen else []
        bill_to = BillTo(session)
        for fp in scope:
            if fp.funder in frozen:
                continue
            issue_date, due = issue_dates(fp.period, fp.rules)
            sink = _MemorySink(config, fp.period, issue_date, due, bill_to)
            _run(session, config, fp, sink, Unassigned(), now)
            docs.extend(sorted(sink.docs.values(), key=lambda d: (d.funder, d.purchase_order, d.resident_reference)))
    return docs


@dataclasses.dataclass
class IssueResult:
    invoices: list[InvoiceDoc]
    newly_issued: bool
    unassigned_attendances: int = 0


def issue(factory: sessionmaker[Session], settings: Settings, period_start: dt.date, funder: str | None = None,
          *, now: dt.datetime | None = None, actor: str = "billing", with_lines: bool = True,
          nil_returns: bool = False, workers: int | None = None) -> IssueResult:
    """Close the period for ``funder`` (default: every funder) and store its invoices, once.

    Re-issuing a closed period writes nothing and returns the stored documents, so a
    re-run prints the same invoices. ``with_lines=False`` returns headers only (for big runs).
    A purchase order with nothing to bill gets no invoice unless ``nil_returns``.

    A run of :data:`PARALLEL_FROM` residents or more works its bills out in worker
    processes (:mod:`billing.parallel`; ``[billing] workers``); ``workers`` given here
    forces that many (0: none) whatever the size. The result is the same either way.
    """
    try:
        return _issue(factory, settings, period_start, funder, now=now or utcnow(), actor=actor,
                      with_lines=with_lines, nil_returns=nil_returns, workers=workers)
    except BrokenProcessPool as exc:
        # A worker process died (killed, out of memory): the run's transaction is rolled back.
        raise BillingError("a billing worker process stopped before the run was done; nothing was issued: "
                           "issue the period again (or set [billing] workers = 0)") from exc
    except OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) != "40001":
            raise
        # PostgreSQL: a visit of the period was changed while the run read it (REPEATABLE READ).
        raise BillingError("a visit of this period was changed while the invoices were being issued; "
                           "nothing was issued: issue the period again") from exc


# A run this big (residents) is worth worker processes: below it, starting them costs
# about as much as they save.
PARALLEL_FROM = 4 * BATCH


def _issue(factory: sessionmaker[Session], settings: Settings, period_start: dt.date, funder: str | None, *,
           now: dt.datetime, actor: str, with_lines: bool, nil_returns: bool, workers: int | None) -> IssueResult:
    unassigned = Unassigned()
    with unit_of_work(factory) as session:
        if factory.kw["bind"].dialect.name == "postgresql":
            # One snapshot for the whole run: the lines' copies (billing.line_store) and the
            # workers' reads (billing.parallel) see exactly what the figures came from.
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        config = load_config(settings, session)
        bill_to = BillTo(session)
        scope = _scope(session, config, period_start, funder)
        today = now.astimezone(config.tz).date()
        running = [fp for fp in scope if fp.period.end > today]
        if running:
            # Invoices are issued in arrears (spec 11): a period still running would freeze
            # an invoice that later visits of the same period could never join.
            fp = running[0]
            raise BillingError(f"the period {fp.period.start} to {fp.period.end - dt.timedelta(days=1)} "
                               "has not ended yet: invoices are issued in arrears")
        closed = _closed_funders(session, period_start)
        todo = [fp for fp in scope if not _is_closed(closed, fp.funder)]
        known: dict[int, _Totals] = {}  # this run's invoices: their line counts need no query
        if todo:
            # One run closes the period for "" (every funder) unless some were closed one by one:
            # then each remaining funder is closed by name, so no funder is ever issued twice.
            label = funder or ("" if not closed else None)
            runs = ([(label, todo)] if label is not None else [(fp.funder, [fp]) for fp in todo])
            count = parallel.worker_count(workers, config, lambda: sum(
                residents_in(session, fp.funder, fp.period) for fp in todo) >= PARALLEL_FROM)
            plan = ((fp, ids) for _, fps in runs for fp in fps
                    for ids in resident_batches(session, fp.funder, fp.period))
            pool = parallel.BillWorkers(session, config, count, todo, plan) if count else contextlib.nullcontext()
            with pool as workers_or_none:
                for name, fps in runs:
                    run = BillingRun(period_start=period_start, funder=name, issued_at=now, issued_by=actor)
                    session.add(run)
                    session.flush()
                    totals: dict[int, _Totals] = {}
                    for fp in fps:
                        issue_date, due = issue_dates(fp.period, fp.rules)
                        sink = _DatabaseSink(session, run, fp.period, issue_date, due, bill_to)
                        _run(session, config, fp, sink, unassigned, now, workers_or_none)
                        sink.flush()
                        totals.update(sink.totals)
                    _finish_run(session, run, totals, nil_returns)
                    known.update(totals)
        names = [fp.funder for fp in scope]
        docs = _load_docs(session, config, period_start, names, with_lines=with_lines, known=known)
    return IssueResult(docs, bool(todo), len(unassigned.attendance_ids))


def _doc_from_header(inv: Any, config: BillingConfig, ref: str, name: str = "",
                     credit: int | None = None) -> InvoiceDoc:
    rules = config.for_funder(inv.funder)
    period = period_starting(inv.period_start, rules, config.tz)
    return InvoiceDoc(config.invoice_number(inv.number), inv.funder, inv.purchase_order, ref, period,
                      inv.issue_date, inv.due_date, inv.cap_minutes, inv.billed_minutes, inv.over_cap_minutes,
                      inv.visits, from_pence(inv.total_pence), [], issued=True, bill_to=inv.bill_to,
                      bill_to_email=inv.bill_to_email, resident_name=name,
                      credited_by=config.credit_note_number(credit) if credit is not None else "")


def _load_docs(session: Session, config: BillingConfig, period_start: dt.date, funder_names: Iterable[str],
               with_lines: bool = True, known: dict[int, _Totals] | None = None) -> list[InvoiceDoc]:
    names = list(funder_names)
    # Header rows, not ORM objects: a big run loads thousands, and nothing here is changed.
    rows = session.execute(
        select(Invoice.__table__, Resident.reference.label("care_for_ref"), Resident.name.label("care_for_name"),
               CreditNote.number.label("credit_number"))
        .outerjoin(Resident, Invoice.resident_id == Resident.id)
        .outerjoin(CreditNote, CreditNote.invoice_id == Invoice.id)
        .where(Invoice.period_start == period_start, Invoice.funder.in_(names)).order_by(Invoice.number)).all()
    docs = []
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    known = known or {}
    for iid, t in known.items():
        counts[iid] = {LineKind.EXCEPTION: t.exceptions, LineKind.BILLED: t.ledger}
    if not with_lines and rows:
        ids = [row.id for row in rows if row.id not in known]
        for i in range(0, len(ids), 500):
            for iid, kind, n in session.execute(
                    select(InvoiceLine.invoice_id, InvoiceLine.kind, func.count())
                    .where(InvoiceLine.invoice_id.in_(ids[i:i + 500]))
                    .group_by(InvoiceLine.invoice_id, InvoiceLine.kind)):
                counts[iid][kind] = n
    for inv in rows:
        doc = _doc_from_header(inv, config, inv.care_for_ref or "", inv.care_for_name or "", inv.credit_number)
        if with_lines:
            doc.lines = [DocLine.from_row(r) for r in session.scalars(
                select(InvoiceLine).where(InvoiceLine.invoice_id == inv.id).order_by(InvoiceLine.id))]
        else:
            c = counts.get(inv.id, {})
            doc.exception_count = c.get(LineKind.EXCEPTION, 0) + c.get(LineKind.REJECTED, 0)
            doc.charged_count = sum(c.get(k, 0) for k in LineKind.LEDGER)
        docs.append(doc)
    return docs


def issued(factory: sessionmaker[Session], settings: Settings, period_start: dt.date,
           funder: str | None = None) -> list[InvoiceDoc]:
    with factory() as session:
        config = load_config(settings, session)
        names = [funder] if funder else funders(session)
        return _load_docs(session, config, period_start, names)


def load(factory: sessionmaker[Session], settings: Settings, number: int) -> InvoiceDoc:
    with factory() as session:
        config = load_config(settings, session)
        row = session.execute(
            select(Invoice, Resident.reference, Resident.name, CreditNote.number)
            .outerjoin(Resident, Invoice.resident_id == Resident.id)
            .outerjoin(CreditNote, CreditNote.invoice_id == Invoice.id).where(Invoice.number == number)).first()
        if row is None:
            raise BillingError(f"no invoice number {number}")
        doc = _doc_from_header(row[0], config, row[1] or "", row[2] or "", row[3])
        doc.lines = [DocLine.from_row(r) for r in session.scalars(
            select(InvoiceLine).where(InvoiceLine.invoice_id == row[0].id).order_by(InvoiceLine.id))]
        return doc


def approve_extra_minutes(factory: sessionmaker[Session], settings: Settings, resident_reference: str,
                          period_start: dt.date, minutes: int, reason: str, approved_by: str, *,
                          purchase_order: str | None = None, now: dt.datetime | None = None) -> int:
    """Record minutes the funder agreed above the commissioned hours (spec 11.3); returns the approval id."""
    if minutes <= 0:
        raise BillingError("approved minutes must be a positive whole number")
    if not reason.strip() or not approved_by.strip():
        raise BillingError("an approval needs a reason and the name of who agreed it")
    config = BillingConfig.from_settings(settings)
    with unit_of_work(factory) as session:
        resident_id = session.scalar(select(Resident.id).where(Resident.reference == resident_reference))
        if resident_id is None:
            raise BillingError(f"no resident {resident_reference!r}")
        q = select(CarePackage).where(CarePackage.resident_id == resident_id)
        if purchase_order:
            q = q.where(CarePackage.purchase_order == purchase_order)
        candidates = []
        for p in session.scalars(q):
            rules = config.for_funder(p.funder)
            try:
                period = period_starting(period_start, rules, config.tz)
            except ValueError as exc:
                raise BillingError(str(exc)) from exc
            if p.start_date <= period.last_day and (p.end_date is None or p.end_date >= period.start):
                candidates.append(p)
        if len(candidates) != 1:
            raise BillingError(f"{resident_reference}: {len(candidates)} packages active in the period; "
                               "name the purchase order")
        approval = ExtraMinutesApproval(package_id=candidates[0].id, period_start=period_start, minutes=minutes,
                                        reason=reason.strip(), approved_by=approved_by.strip(),
                                        approved_at=now or utcnow())
        session.add(approval)
        session.flush()
        return approval.id


# --- CSV -----------------------------------------------------------------------------------------


def csv_row(doc_number: str, funder: str, purchase_order: str, line: DocLine, config: BillingConfig) -> list[str]:
    fmt = "%Y-%m-%d %H:%M"

    def local(t: dt.datetime | None) -> str:
        return t.astimezone(config.tz).strftime(fmt) if t else ""

    return [doc_number, funder, purchase_order, line.resident_reference, line.visit_ref, line.worker_number,
            local(line.arrival_at), local(line.departure_at), line.method, str(line.billable_minutes),
            f"{line.rate:.2f}", f"{line.amount:.2f}"]


def csv_rows(docs: Iterable[InvoiceDoc], config: BillingConfig) -> Iterator[list[str]]:
    """One row per billed attendance (and per correction line); unbilled ones are on the HTML/PDF only."""
    for doc in docs:
        for line in doc.lines:
            if line.counts_in_total and (line.billable_minutes or line.amount):
                yield csv_row(doc.number, doc.funder, doc.purchase_order, line, config)
