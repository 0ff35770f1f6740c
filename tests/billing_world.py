"""Builders for billing tests: visits and attendances straight through the ORM.

The phone path that normally records attendances belongs to another package; billing
only reads the rows, so tests write exactly the rows a scenario needs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carecall.config import Settings
from ivr.models import Attendance, AttendanceKind, CarePackage, Resident, Visit, VisitWorker, Worker

UTC = dt.UTC


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def with_billing(settings: Settings, **table: object) -> Settings:
    raw = dict(settings.raw)
    raw["billing"] = table
    return dataclasses.replace(settings, raw=raw)


class World:
    """A session-backed helper: ``visit`` then ``attend``; ids are looked up by reference."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self._n = 0

    def _resident(self, s: Session, ref: str) -> Resident:
        r = s.scalar(select(Resident).where(Resident.reference == ref))
        assert r is not None, ref
        return r

    def _worker(self, s: Session, number: str) -> Worker:
        w = s.scalar(select(Worker).where(Worker.worker_number == number))
        assert w is not None, number
        return w

    def resident(self, ref: str, funder: str = "Lewisham", name: str = "Test Person") -> None:
        with self.factory.begin() as s:
            s.add(Resident(reference=ref, name=name, funder=funder))

    def package(self, ref: str, po: str, funder: str, weekly_hours: str, start: dt.date,
                end: dt.date | None = None, rates: tuple[str, str, str] = ("21.50", "23.00", "32.25")) -> None:
        with self.factory.begin() as s:
            s.add(CarePackage(resident_id=self._resident(s, ref).id, purchase_order=po, funder=funder,
                              weekly_hours=Decimal(weekly_hours), hourly_rate=Decimal(rates[0]),
                              weekend_rate=Decimal(rates[1]), bank_holiday_rate=Decimal(rates[2]),
                              start_date=start, end_date=end))

    def visit(self, resident: str, start: dt.datetime, minutes: int, workers: tuple[str, ...] = ("1001",),
              ref: str | None = None) -> str:
        self._n += 1
        ref = ref or f"V{self._n:03d}"
        with self.factory.begin() as s:
            v = Visit(visit_ref=ref, resident_id=self._resident(s, resident).id, planned_start=start,
                      planned_end=start + dt.timedelta(minutes=minutes), workers_required=len(workers))
            v.assignments = [VisitWorker(worker_id=self._worker(s, w).id, position=i + 1)
                             for i, w in enumerate(workers)]
            s.add(v)
        return ref

    def attend(self, visit_ref: str | None, worker: str, arrival: dt.datetime | None,
               departure: dt.datetime | None, *, method: str = "phone", entered: dt.datetime | None = None,
               resident: str | None = None, verified: bool = True) -> int:
        with self.factory.begin() as s:
            v = s.scalar(select(Visit).where(Visit.visit_ref == visit_ref)) if visit_ref else None
            rid = v.resident_id if v else self._resident(s, resident or "").id
            a = Attendance(
                visit_id=v.id if v else None, resident_id=rid, worker_id=self._worker(s, worker).id,
                kind=AttendanceKind.SCHEDULED if v else AttendanceKind.UNSCHEDULED,
                arrival_at=arrival, arrival_method=method if arrival else None,
                arrival_verified=verified and method == "phone" and arrival is not None,
                arrival_entered_at=entered if method == "manual" and arrival else None,
                departure_at=departure, departure_method=method if departure else None,
                departure_verified=verified and method == "phone" and departure is not None,
                departure_entered_at=entered if method == "manual" and departure else None)
            s.add(a)
            s.flush()
            return a.id
