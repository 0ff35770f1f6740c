"""Reading a period's attendances a batch of residents at a time, so memory stays flat.

The invoice run never loads every row: residents with a package of the funder are
walked in keyset order (``resident_id > last``), and for each batch only their packages,
their visits' attendances in the period and their approved extra minutes are read. One
package's period is what :func:`billing.rules.bill_package` needs, and no more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from billing import rawio
from billing.models import ExtraMinutesApproval
from billing.rules import (
    AttendanceRow,
    BillingConfig,
    FunderRules,
    PackageBill,
    PackageInfo,
    Period,
    bill_package,
    local_clock,
)
from ivr.models import Attendance, CarePackage, Resident, Visit, Worker

BATCH = 100


@dataclasses.dataclass(frozen=True)
class FunderPeriod:
    funder: str
    rules: FunderRules
    period: Period


def _overlaps(period: Period):  # type: ignore[no-untyped-def]
    return (CarePackage.start_date <= period.last_day) & or_(
        CarePackage.end_date.is_(None), CarePackage.end_date >= period.start)


def funders(session: Session) -> list[str]:
    return list(session.scalars(select(CarePackage.funder).distinct().order_by(CarePackage.funder)))


def resident_batches(session: Session, funder: str, period: Period, batch: int = BATCH) -> Iterator[list[int]]:
    """Ids of residents with a package of ``funder`` active in the period, ``batch`` at a time."""
    last = 0
    while True:
        ids = list(session.scalars(
            select(CarePackage.resident_id)
            .where(CarePackage.funder == funder, _overlaps(period), CarePackage.resident_id > last)
            .distinct().order_by(CarePackage.resident_id).limit(batch)))
        if not ids:
            return
        yield ids
        last = ids[-1]


def residents_in(session: Session, funder: str, period: Period) -> int:
    """How many residents have a package of ``funder`` active in the period (the size of its run)."""
    return session.scalar(select(func.count(CarePackage.resident_id.distinct()))
                          .where(CarePackage.funder == funder, _overlaps(period))) or 0


def packages_for(session: Session, resident_ids: Iterable[int], period: Period) -> dict[int, list[PackageInfo]]:
    rows = session.execute(
        select(CarePackage, Resident.reference).join(Resident, CarePackage.resident_id == Resident.id)
        .where(CarePackage.resident_id.in_(list(resident_ids)), _overlaps(period))
        .order_by(CarePackage.resident_id, CarePackage.start_date.desc(), CarePackage.id))
    out: dict[int, list[PackageInfo]] = defaultdict(list)
    for p, ref in rows:
        out[p.resident_id].append(PackageInfo(
            p.id, p.resident_id, ref, p.purchase_order, p.funder, p.weekly_hours, p.hourly_rate,
            p.weekend_rate, p.bank_holiday_rate, p.start_date, p.end_date))
    return out


def attendances_for(session: Session, resident_ids: Iterable[int], period: Period) -> Iterator[AttendanceRow]:
    """Linked attendances whose visit starts in the period (unlinked, unscheduled ones wait for the office).

    Read raw (:mod:`billing.rawio`): this is the run's one big read, a row per attendance.
    """
    conn = session.connection()
    read, write = rawio.utc_reader(conn.dialect.name), rawio.utc_writer(conn.dialect.name)
    stmt = (select(Attendance.id, Visit.visit_ref, Visit.resident_id, Worker.worker_number, Visit.planned_start,
                   Visit.planned_end, Attendance.arrival_at, Attendance.arrival_method,
                   Attendance.arrival_entered_at, Attendance.departure_at, Attendance.departure_method,
                   Attendance.departure_entered_at, Attendance.arrival_unanswered, Attendance.departure_unanswered)
            .join(Visit, Attendance.visit_id == Visit.id)
            .join(Worker, Attendance.worker_id == Worker.id)
            .where(Visit.resident_id.in_(list(resident_ids)), Visit.planned_start >= write(period.start_utc),
                   Visit.planned_start < write(period.end_utc)))
    new, row = tuple.__new__, AttendanceRow  # tuple.__new__: no Python-level __new__ per row
    # A rota repeats its times (07:00, 07:30 …): each planned time is parsed once a batch.
    planned: dict[Any, dt.datetime] = {}
    for (aid, ref, rid, number, ps, pe, arr, arr_m, arr_e, dep, dep_m, dep_e, arr_u, dep_u) in rawio.stream(conn, stmt):
        start = planned.get(ps)
        if start is None:
            start = planned[ps] = read(ps)
        end = planned.get(pe)
        if end is None:
            end = planned[pe] = read(pe)
        yield new(row, (aid, ref, rid, number, start, end, read(arr), arr_m,
                        None if arr_e is None else read(arr_e), read(dep), dep_m,
                        None if dep_e is None else read(dep_e), bool(arr_u), bool(dep_u)))


def approved_minutes(session: Session, package_ids: Iterable[int], period: Period) -> dict[int, int]:
    rows = session.execute(
        select(ExtraMinutesApproval.package_id, func.sum(ExtraMinutesApproval.minutes))
        .where(ExtraMinutesApproval.package_id.in_(list(package_ids)),
               ExtraMinutesApproval.period_start == period.start)
        .group_by(ExtraMinutesApproval.package_id))
    return {pid: int(total) for pid, total in rows}


@dataclasses.dataclass
class Unassigned:
    """Attendances that no package covers (the visit date is outside every package): for the office."""

    attendance_ids: set[int] = dataclasses.field(default_factory=set)


def package_bills(session: Session, config: BillingConfig, fp: FunderPeriod, resident_ids: list[int],
                  unassigned: Unassigned | None = None) -> Iterator[PackageBill]:
    """Bills for ``fp.funder``'s packages of these residents: each attendance goes to the package active on
    its visit's local date (the newest, if two overlap)."""
    packages = packages_for(session, resident_ids, fp.period)
    per_package: dict[int, list[AttendanceRow]] = defaultdict(list)
    day_of = local_clock(config.tz).day
    period = fp.period
    # A resident whose one package runs the whole period needs no date per visit: every
    # visit read (planned start inside the period) is that package's.
    whole = {rid: ps[0] for rid, ps in packages.items() if len(ps) == 1 and ps[0].start_date <= period.start
             and (ps[0].end_date is None or ps[0].end_date >= period.last_day)}
    for row in attendances_for(session, resident_ids, period):
        match = whole.get(row.resident_id)
        if match is None:
            day = day_of(row.planned_start)
            for p in packages.get(row.resident_id, ()):
                if p.active_on(day):
                    match = p
                    break
        if match is None:
            if unassigned is not None:
                unassigned.attendance_ids.add(row.attendance_id)
            continue
        if match.funder == fp.funder:
            per_package[match.package_id].append(row)
    ours = [p for ps in packages.values() for p in ps if p.funder == fp.funder]
    extra = approved_minutes(session, [p.package_id for p in ours], fp.period)
    for package in ours:
        rows = per_package.get(package.package_id)
        if rows:
            yield bill_package(package, fp.period, rows, fp.rules, config.tz, extra.get(package.package_id, 0))


def period_bills(session: Session, config: BillingConfig, fp: FunderPeriod,
                 unassigned: Unassigned | None = None, batch: int = BATCH) -> Iterator[PackageBill]:
    for ids in resident_batches(session, fp.funder, fp.period, batch):
        yield from package_bills(session, config, fp, ids, unassigned)


def local_date(instant: dt.datetime, config: BillingConfig) -> dt.date:
    return instant.astimezone(config.tz).date()
