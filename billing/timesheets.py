"""Timesheets: every planned visit of a resident's period, as delivered, for the resident to sign.

They accompany the invoices as proof of service ("client signed timesheets for
verification"): planned against actual times, who came, how the times were logged,
and flags the resident or their representative can query before signing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing.rules import AttendanceRow as _Row
from billing.rules import BillingConfig, FunderRules, Period, billable_minutes, method_of, period_starting
from carecall.config import Settings
from ivr.models import Attendance, CarePackage, Resident, Visit, VisitStatus, VisitWorker, Worker

CSV_COLUMNS = ("visit_ref", "planned_start", "planned_end", "worker_number", "arrival", "departure", "method",
               "minutes", "flags")


class TimesheetError(ValueError):
    """A timesheet that cannot be built (unknown resident, bad period); the message says why."""


@dataclasses.dataclass(frozen=True)
class TimesheetRow:
    visit_ref: str
    planned_start: dt.datetime
    planned_end: dt.datetime
    worker_number: str
    arrival_at: dt.datetime | None
    departure_at: dt.datetime | None
    method: str
    minutes: int
    flags: tuple[str, ...]


@dataclasses.dataclass
class Timesheet:
    resident_reference: str
    resident_name: str
    period: Period
    rows: list[TimesheetRow]
    funder: str = ""
    purchase_orders: list[str] = dataclasses.field(default_factory=list)

    @property
    def total_minutes(self) -> int:
        return sum(r.minutes for r in self.rows)

    @property
    def visits(self) -> int:
        return len({r.visit_ref for r in self.rows})


def flags_for(row: _Row, verified: bool, minutes: int, rules: FunderRules) -> tuple[str, ...]:
    """Late, short, no departure, location not verified: what a resident should look at before signing."""
    out = []
    if row.arrival_at and row.arrival_at - row.planned_start > dt.timedelta(minutes=rules.late_minutes):
        out.append("late")
    planned = (row.planned_end - row.planned_start) // dt.timedelta(minutes=1)
    if row.arrival_at and row.departure_at and minutes < planned - rules.short_minutes:
        out.append("short")
    if row.arrival_at is None:
        out.append("no arrival")
    if row.departure_at is None:
        out.append("no departure")
    if not verified:
        out.append("location not verified")
    if row.arrival_unanswered or row.departure_unanswered:
        out.append("unanswered mode (no PIN)")
    return tuple(out)


def _rows(session: Session, resident_id: int, period: Period, rules: FunderRules) -> Iterator[TimesheetRow]:
    visits = session.execute(
        select(Visit.id, Visit.visit_ref, Visit.planned_start, Visit.planned_end, Visit.workers_required)
        .where(Visit.resident_id == resident_id, Visit.status == VisitStatus.SCHEDULED,
               Visit.planned_start >= period.start_utc, Visit.planned_start < period.end_utc)
        .order_by(Visit.planned_start, Visit.id)).all()
    ids = [v.id for v in visits]
    attended: dict[int, list[tuple[Attendance, str]]] = defaultdict(list)
    assigned: dict[int, list[str]] = defaultdict(list)
    if ids:
        for a, number in session.execute(
                select(Attendance, Worker.worker_number).join(Worker, Attendance.worker_id == Worker.id)
                .where(Attendance.visit_id.in_(ids)).order_by(Attendance.arrival_at, Attendance.id)).tuples():
            attended[a.visit_id or 0].append((a, number))
        for vid, number in session.execute(
                select(VisitWorker.visit_id, Worker.worker_number).join(Worker, VisitWorker.worker_id == Worker.id)
                .where(VisitWorker.visit_id.in_(ids)).order_by(VisitWorker.position)):
            assigned[vid].append(number)
    for v in visits:
        came = attended.get(v.id, [])
        for a, number in came:
            row = _Row(a.id, v.visit_ref, resident_id, number, v.planned_start, v.planned_end, a.arrival_at,
                       a.arrival_method, a.arrival_entered_at, a.departure_at, a.departure_method,
                       a.departure_entered_at, a.arrival_unanswered, a.departure_unanswered)
            minutes = (billable_minutes(a.arrival_at, a.departure_at, v.planned_start, v.planned_end, rules)
                       if a.arrival_at and a.departure_at else 0)
            verified = a.arrival_verified and a.departure_verified
            yield TimesheetRow(v.visit_ref, v.planned_start, v.planned_end, number, a.arrival_at, a.departure_at,
                               method_of(row), minutes, flags_for(row, verified, minutes, rules))
        present = {n for _, n in came}
        absent = [n for n in assigned.get(v.id, []) if n not in present]
        for i in range(max(0, v.workers_required - len(came))):
            number = absent[i] if i < len(absent) else ""
            yield TimesheetRow(v.visit_ref, v.planned_start, v.planned_end, number, None, None, "", 0, ("missed",))


def build(factory: sessionmaker[Session], settings: Settings, resident_reference: str,
          period_start: dt.date) -> Timesheet:
    """The resident's timesheet for the period starting ``period_start`` (their funder's periods)."""
    config = BillingConfig.from_settings(settings)
    with factory() as session:
        resident = session.scalar(select(Resident).where(Resident.reference == resident_reference))
        if resident is None:
            raise TimesheetError(f"no resident {resident_reference!r}")
        rules = config.for_funder(resident.funder)
        try:
            period = period_starting(period_start, rules, config.tz)
        except ValueError as exc:
            raise TimesheetError(str(exc)) from exc
        rows = list(_rows(session, resident.id, period, rules))
        pos = sorted(set(session.scalars(select(CarePackage.purchase_order).where(
            CarePackage.resident_id == resident.id, CarePackage.purchase_order != "",
            CarePackage.start_date <= period.last_day,
            (CarePackage.end_date.is_(None)) | (CarePackage.end_date >= period.start)))))
        return Timesheet(resident.reference, resident.name, period, rows, resident.funder, pos)


def csv_rows(sheet: Timesheet, config: BillingConfig) -> Iterator[list[str]]:
    fmt = "%Y-%m-%d %H:%M"

    def local(t: dt.datetime | None) -> str:
        return t.astimezone(config.tz).strftime(fmt) if t else ""

    for r in sheet.rows:
        yield [r.visit_ref, local(r.planned_start), local(r.planned_end), r.worker_number, local(r.arrival_at),
               local(r.departure_at), r.method, str(r.minutes), "; ".join(r.flags)]
