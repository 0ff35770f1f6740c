"""The payroll run: every worker's paid time for a pay period, streamed from the attendances.

One query walks the period's attendances in (worker, arrival) order with a server-side
cursor, so memory holds one worker's day at a time however many rows there are; the
rules are :mod:`billing.pay`. Outputs:

- :data:`CSV_COLUMNS` — one row per worker, for import into payroll software (documented
  in ``docs/billing.md``);
- :func:`worker_detail` — one worker's lines (contact, travel, waiting, breaks) for the PDF.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

from sqlalchemy import String, literal, select
from sqlalchemy.orm import Session, sessionmaker

from billing import rawio
from billing.pay import (
    PayConfig,
    PayLine,
    PayPeriod,
    PayVisit,
    WorkerPay,
    load_distances,
    source_of,
    worker_lines,
)
from billing.rules import local_clock
from carecall.config import Settings
from ivr.models import Attendance, Resident, Visit, Worker

CSV_COLUMNS = (
    "worker_number", "worker_name", "period_start", "period_end", "visits",
    "contact_minutes", "weekday_minutes", "weekend_minutes", "bank_holiday_minutes", "travel_minutes",
    "waiting_minutes", "paid_minutes", "contact_pay", "travel_pay", "waiting_pay", "gross_pay",
    "effective_hourly_rate", "minimum_hourly_rate", "below_minimum", "shortfall",
    "miles", "mileage_pay", "manual_visits", "corrected_visits", "open_attendances",
)


class PayrollError(ValueError):
    """A payroll request that cannot be carried out (unknown worker, bad period); the message says why."""


def _rows(session: Session, period: PayPeriod, worker_id: int | None = None,
          visit_refs: bool = False) -> Iterator[tuple]:  # type: ignore[type-arg]
    """The period's attendances in (worker, arrival) order, raw (:mod:`billing.rawio`), times made aware.

    The visit reference is only read for one worker's detail (``visit_refs``): the payroll
    CSV never shows it, and joining every attendance to its visit was a third of the export.
    """
    conn = session.connection()
    read, write = rawio.utc_reader(conn.dialect.name), rawio.utc_writer(conn.dialect.name)
    visit_ref = Visit.visit_ref if visit_refs else literal(None, String()).label("visit_ref")
    q = (select(Attendance.worker_id, Worker.worker_number, Worker.name, Attendance.id, visit_ref,
                Resident.reference, Attendance.arrival_at, Attendance.departure_at, Attendance.arrival_method,
                Attendance.departure_method, Attendance.arrival_uniqueid.is_not(None),
                Attendance.departure_uniqueid.is_not(None))
         .join(Worker, Attendance.worker_id == Worker.id)
         .join(Resident, Attendance.resident_id == Resident.id)
         .where(Attendance.arrival_at >= write(period.start_utc), Attendance.arrival_at < write(period.end_utc))
         .order_by(Attendance.worker_id, Attendance.arrival_at, Attendance.id))
    if visit_refs:
        q = q.outerjoin(Visit, Attendance.visit_id == Visit.id)
    if worker_id is not None:
        q = q.where(Attendance.worker_id == worker_id)
    for (wid, number, name, aid, ref, resident, arrival, departure, a_method, d_method, a_called,
         d_called) in rawio.stream(conn, q):
        yield (wid, number, name, aid, ref, resident, read(arrival), None if departure is None else read(departure),
               a_method, d_method, a_called, d_called)


@dataclasses.dataclass
class WorkerPeriod:
    pay: WorkerPay
    lines: list[PayLine]


def _by_worker(session: Session, settings: Settings, config: PayConfig, period: PayPeriod,
               worker_id: int | None = None, keep_lines: bool = False) -> Iterator[WorkerPeriod]:
    tz = settings.tz
    day_of = local_clock(tz).day
    distances = load_distances(config.distances_file)
    current: WorkerPay | None = None
    current_id: int | None = None
    visits: list[PayVisit] = []
    lines: list[PayLine] = []

    def flush_day() -> None:
        assert current is not None
        for line in worker_lines(visits, config, tz, distances):
            current.add(line)
            if keep_lines:
                lines.append(line)
        visits.clear()

    day: dt.date | None = None
    for (wid, number, name, aid, visit_ref, resident_ref, arrival, departure, a_method, d_method, a_called,
         d_called) in _rows(session, period, worker_id, visit_refs=keep_lines):
        if wid != current_id:
            if current is not None:
                flush_day()
                yield WorkerPeriod(current, lines)
                lines = []
            current, current_id, day = WorkerPay(number, name), wid, None
        assert current is not None
        if departure is None:
            current.open_attendances += 1
            continue
        local_day = day_of(arrival)
        if day is not None and local_day != day:
            flush_day()
        day = local_day
        visits.append(PayVisit(aid, visit_ref or "unscheduled", resident_ref, arrival, departure,
                               source_of(a_method, d_method, bool(a_called), bool(d_called))))
    if current is not None:
        flush_day()
        yield WorkerPeriod(current, lines)


def workers_pay(factory: sessionmaker[Session], settings: Settings, period: PayPeriod) -> Iterator[WorkerPay]:
    """Every worker with attendances in the period, in worker order; one worker in memory at a time."""
    config = PayConfig.from_settings(settings)
    with factory() as session:
        for wp in _by_worker(session, settings, config, period):
            yield wp.pay


def worker_detail(factory: sessionmaker[Session], settings: Settings, period: PayPeriod,
                  worker_number: str) -> WorkerPeriod:
    config = PayConfig.from_settings(settings)
    with factory() as session:
        wid = session.scalar(select(Worker.id).where(Worker.worker_number == worker_number))
        if wid is None:
            raise PayrollError(f"no worker number {worker_number!r}")
        name = session.scalar(select(Worker.name).where(Worker.id == wid)) or ""
        for wp in _by_worker(session, settings, config, period, wid, keep_lines=True):
            return wp
        return WorkerPeriod(WorkerPay(worker_number, name), [])


def csv_row(wp: WorkerPay, period: PayPeriod, config: PayConfig) -> list[str]:
    m = wp.minutes
    contact_pay = sum((wp.pay(k, config) for k in ("hourly", "weekend", "bank holiday")), Decimal("0.00"))
    return [wp.worker_number, wp.worker_name, period.start.isoformat(), period.last_day.isoformat(),
            str(wp.visits), str(wp.contact_minutes), str(m.get("hourly", 0)), str(m.get("weekend", 0)),
            str(m.get("bank holiday", 0)), str(m.get("travel", 0)), str(m.get("waiting", 0)),
            str(wp.paid_minutes), f"{contact_pay:.2f}", f"{wp.pay('travel', config):.2f}",
            f"{wp.pay('waiting', config):.2f}", f"{wp.gross(config):.2f}", f"{wp.effective_rate(config):.2f}",
            f"{config.minimum_hourly_rate:.2f}", "yes" if wp.below_minimum(config) else "no",
            f"{wp.shortfall(config):.2f}", f"{wp.miles:.1f}", f"{wp.mileage_pay(config):.2f}", str(wp.manual),
            str(wp.corrected), str(wp.open_attendances)]


def csv_rows(factory: sessionmaker[Session], settings: Settings, period: PayPeriod) -> Iterator[list[str]]:
    config = PayConfig.from_settings(settings)
    for wp in workers_pay(factory, settings, period):
        yield csv_row(wp, period, config)


@dataclasses.dataclass
class PayReport:
    """What the PDF shows: the period, every worker's totals, and (for one worker) the lines."""

    period: PayPeriod
    config: PayConfig
    workers: list[WorkerPay]
    detail: WorkerPeriod | None = None

    @property
    def below(self) -> list[WorkerPay]:
        return [w for w in self.workers if w.below_minimum(self.config)]
