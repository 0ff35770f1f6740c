"""A small world for the alert tests: four residents, four workers, visits on one morning.

10 March 2026 is in GMT, so local time equals UTC and the deadlines below read as
written. Helpers here add attendances and calls directly, the way the call path stores
them, and run one rules pass at an injected ``now``.
"""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from carecall.config import Settings
from ivr.db import unit_of_work
from ivr.importer import import_csv
from ivr.models import Attendance, CallRecord, Visit, VisitStatus, Worker
from scheduler.models import Alert
from scheduler.rules import Rules
from scheduler.store import PassResult, run_pass
from tests.helpers import VISITS_HEADER, context_for, factory_for, import_world, visit_row

DAY = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
_uid = itertools.count(1)


def at(hhmm: str, seconds: int = 0) -> dt.datetime:
    h, m = hhmm.split(":")
    return DAY.replace(hour=int(h), minute=int(m), second=seconds)


def visits_csv(settings: Settings, *rows: tuple[str, str, str, int, str, str]) -> str:
    lines = [VISITS_HEADER] + [visit_row(ref, res, at(start), minutes, workers, crit, settings=settings)
                               for ref, res, start, minutes, workers, crit in rows]
    return "\n".join(lines) + "\n"


STANDARD = (
    ("V1", "R001", "10:00", 45, "1001", "no"),  # late 10:30, missed 10:45, no departure 11:15
    ("V2", "R002", "10:00", 60, "1002", "yes"),  # time-critical: late 10:15
    ("V3", "R003", "10:00", 60, "1003;1004", "no"),  # double-up
)


Row = tuple[str, str, str, int, str, str]


def world(settings: Settings, rows: tuple[Row, ...] = STANDARD) -> sessionmaker[Session]:
    factory = factory_for(settings)
    import_world(settings, factory, visits_csv(settings, *rows))
    return factory


def reimport(settings: Settings, factory: sessionmaker[Session], *rows: tuple[str, str, str, int, str, str]) -> None:
    report = import_csv(factory, "visits", visits_csv(settings, *rows), context_for(settings))
    assert report.ok, report.errors


def visit_id(factory: sessionmaker[Session], ref: str) -> int:
    with factory() as s:
        return int(s.scalar(select(Visit.id).where(Visit.visit_ref == ref)))


def worker_id(factory: sessionmaker[Session], number: str) -> int:
    with factory() as s:
        return int(s.scalar(select(Worker.id).where(Worker.worker_number == number)))


def cancel(factory: sessionmaker[Session], ref: str) -> None:
    with unit_of_work(factory) as s:
        s.execute(update(Visit).where(Visit.visit_ref == ref)
                  .values(status=VisitStatus.CANCELLED, cancel_reason="resident in hospital"))


def attend(factory: sessionmaker[Session], ref: str | None, worker: str, arrival: dt.datetime | None,
           departure: dt.datetime | None = None, kind: str = "scheduled", resident_ref: str | None = None) -> int:
    w = worker_id(factory, worker)  # before the write transaction: SQLite takes its lock at BEGIN
    with unit_of_work(factory) as s:
        if ref is not None:
            v = s.scalar(select(Visit).where(Visit.visit_ref == ref))
            resident = v.resident_id
            vid: int | None = v.id
        else:
            from ivr.models import Resident
            resident = s.scalar(select(Resident.id).where(Resident.reference == resident_ref))
            vid = None
        a = s.scalar(select(Attendance).where(Attendance.visit_id == vid, Attendance.worker_id == w)) \
            if vid is not None else None
        if a is None:
            a = Attendance(visit_id=vid, resident_id=resident, worker_id=w, kind=kind)
            s.add(a)
        if arrival is not None:
            a.arrival_at, a.arrival_method, a.arrival_uniqueid = arrival, "phone", f"arr-{next(_uid)}"
        if departure is not None:
            a.departure_at, a.departure_method, a.departure_uniqueid = departure, "phone", f"dep-{next(_uid)}"
        s.flush()
        return int(a.id)


def call(factory: sessionmaker[Session], started: dt.datetime, *, outcome: str, failed: int = 0,
         caller: str | None = None, number: str | None = None, script: str = "checkin",
         visit_ref: str | None = None, worker: str | None = None) -> int:
    vid = visit_id(factory, visit_ref) if visit_ref else None
    wid = worker_id(factory, worker) if worker else None
    with unit_of_work(factory) as s:
        rec = CallRecord(uniqueid=f"call-{next(_uid)}", script=script, started_at=started,
                         ended_at=started + dt.timedelta(seconds=40), caller_e164=caller,
                         worker_number_entered=number, outcome=outcome, failed_pin_attempts=failed,
                         visit_id=vid, worker_id=wid)
        s.add(rec)
        s.flush()
        return int(rec.id)


def run(factory: sessionmaker[Session], now: dt.datetime, rules: Rules | None = None) -> PassResult:
    with unit_of_work(factory) as s:
        return run_pass(s, now, rules or Rules())


def kinds(result: PassResult) -> list[tuple[str, int | None]]:
    return sorted((r["kind"], r["visit_id"]) for r in result.raised)


def stored(factory: sessionmaker[Session]) -> list[Alert]:
    with factory() as s:
        return list(s.scalars(select(Alert).order_by(Alert.id)))


def test_world_has_the_three_standard_visits(settings):
    factory = world(settings)
    with factory() as s:
        assert s.scalars(select(Visit.visit_ref).order_by(Visit.visit_ref)).all() == ["V1", "V2", "V3"]
