"""Contract-monitoring figures: what the council judges a provider by, for any date range.

Every figure is computed by aggregate SQL (GROUP BY with CASE) that returns a handful of
rows per funder and team; only the exceptions behind a figure (the late visits, the
manually logged attendances, the packages with too many carers) come back as rows, so a
month of 300,000 attendances computes in seconds. The same statements run on SQLite and
PostgreSQL: time differences go through :mod:`reports.sqlfn` (whole seconds).

Boundary rules (docs/kpi.md says the same in words):

* The range is local dates ``date_from``..``date_to`` inclusive in the site's zone: from
  local midnight starting ``date_from`` to local midnight ending ``date_to`` (23 or 25 h
  days included). A visit belongs to the range by its planned start; an unscheduled
  attendance (no visit) by its arrival.
* Cancelled visits and their attendances are left out of every figure.
* Visit figures (punctuality, missed, late, short, double-up, compliance) count only
  visits that are *due*: planned end at or before ``now``. Visits still to come are
  counted in ``visits_not_yet_due`` and nowhere else. Hours and consistency use every
  non-cancelled visit in the range.
* Times are compared in whole seconds. Punctual means ``|first arrival − planned start|
  <= window`` (exactly 15 min late or early is punctual). A visit with no arrival logged
  is not punctual. Late means first arrival more than the window after planned start.
* Missed means a due visit with no attendance at all (neither arrival nor departure).
* A short visit lasted ``<= 15 min`` (exactly 15 is short): last departure − first arrival
  over the attendances with both times.
* A worker below the floor has ``phone * 100 < 85 * delivered`` (exactly 85% is not below).
* Shares are compared to targets in integer arithmetic, never in rounded percentages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Select, and_, case, exists, func, literal, not_, or_, select, union_all
from sqlalchemy.orm import Session, aliased, sessionmaker

from carecall.config import Settings
from ivr.clock import local_day_bounds
from ivr.models import Attendance, CarePackage, Method, Resident, Visit, VisitStatus, Worker, utcnow
from reports.alerts import alert_figures
from reports.config import KpiConfig
from reports.rows import AlertKindFigures, Alerts, Scope, VisitRow
from reports.sqlfn import day_number, drop, epoch_day, epoch_seconds, local_day, materialise, to_epoch

NO_FUNDER = "(none)"
NO_TEAM = "(none)"


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class Ratio:
    """``numerator`` of ``denominator`` against a target share; ``met`` is None with no data."""

    numerator: int
    denominator: int
    target_percent: int

    @property
    def percent(self) -> Decimal | None:
        if self.denominator == 0:
            return None
        return (Decimal(self.numerator) * 100 / Decimal(self.denominator)).quantize(
            Decimal("0.1"), rounding=ROUND_HALF_UP
        )

    @property
    def met(self) -> bool | None:
        if self.denominator == 0:
            return None
        return self.numerator * 100 >= self.target_percent * self.denominator

    def add(self, numerator: int, denominator: int) -> None:
        self.numerator += numerator
        self.denominator += denominator

    def as_dict(self) -> dict[str, Any]:
        return {"numerator": self.numerator, "denominator": self.denominator,
                "percent": self.percent, "target_percent": self.target_percent, "met": self.met}


@dataclasses.dataclass
class Scoped:
    """A ratio overall and broken down by funder and by team."""

    overall: Ratio
    by_funder: dict[str, Ratio]
    by_team: dict[str, Ratio]

    @classmethod
    def empty(cls, target: int) -> Scoped:
        return cls(Ratio(0, 0, target), {}, {})

    def add(self, funder: str, team: str, numerator: int, denominator: int) -> None:
        target = self.overall.target_percent
        self.overall.add(numerator, denominator)
        self.by_funder.setdefault(funder, Ratio(0, 0, target)).add(numerator, denominator)
        self.by_team.setdefault(team, Ratio(0, 0, target)).add(numerator, denominator)


@dataclasses.dataclass
class Count:
    """A count of exceptions overall and by funder / team, against a maximum (None: no target)."""

    count: int = 0
    target_max: int | None = None
    by_funder: dict[str, int] = dataclasses.field(default_factory=dict)
    by_team: dict[str, int] = dataclasses.field(default_factory=dict)
    rows: list[VisitRow] = dataclasses.field(default_factory=list)

    @property
    def met(self) -> bool | None:
        return None if self.target_max is None else self.count <= self.target_max

    def add(self, funder: str, team: str, n: int) -> None:
        self.count += n
        self.by_funder[funder] = self.by_funder.get(funder, 0) + n
        self.by_team[team] = self.by_team.get(team, 0) + n


@dataclasses.dataclass
class WorkerCompliance:
    worker_id: int
    worker_number: str
    team: str
    phone: int
    delivered: int
    floor_percent: int

    @property
    def percent(self) -> Decimal:
        return (Decimal(self.phone) * 100 / Decimal(self.delivered)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)

    @property
    def below_floor(self) -> bool:
        return self.phone * 100 < self.floor_percent * self.delivered


@dataclasses.dataclass
class Compliance:
    """§10.5: arrival and departure both logged by phone; §10.2: workers below 85%."""

    share: Scoped
    workers: list[WorkerCompliance]
    rows: list[VisitRow]  # attendances not logged by phone at both ends
    # Of the phone-logged ones, how many had an end logged by an unanswered call (no PIN):
    # compliant, but the funder should know how much rests on the weaker identity.
    unanswered: int = 0

    @property
    def workers_below_floor(self) -> list[WorkerCompliance]:
        return [w for w in self.workers if w.below_floor]


@dataclasses.dataclass
class Punctuality:
    """§8.13: time-critical visits within ±15 min; other visits within the agreed window."""

    time_critical: Scoped
    other: Scoped
    time_critical_window_minutes: int
    other_window_minutes: int
    rows: list[VisitRow]  # due visits not punctual: late, early or no arrival logged


@dataclasses.dataclass
class PackageHours:
    package_id: int
    purchase_order: str
    resident_ref: str
    funder: str
    team: str
    weekly_hours: Decimal
    active_days: int
    commissioned_hours: Decimal
    planned_hours: Decimal
    delivered_hours: Decimal

    @property
    def over_commissioned(self) -> bool:
        return self.delivered_hours > self.commissioned_hours


@dataclasses.dataclass
class HoursTotals:
    commissioned: Decimal = Decimal(0)
    planned: Decimal = Decimal(0)
    delivered: Decimal = Decimal(0)

    def add(self, p: PackageHours) -> None:
        self.commissioned += p.commissioned_hours
        self.planned += p.planned_hours
        self.delivered += p.delivered_hours


@dataclasses.dataclass
class Hours:
    """§8.2, §8.14, §5.25: commissioned vs planned vs delivered, per package."""

    packages: list[PackageHours]
    overall: HoursTotals
    by_funder: dict[str, HoursTotals]
    by_team: dict[str, HoursTotals]

    @property
    def over_commissioned(self) -> list[PackageHours]:
        return [p for p in self.packages if p.over_commissioned]

    @property
    def met(self) -> bool:
        return not self.over_commissioned


@dataclasses.dataclass(frozen=True)
class Band:
    """One row of the §5.27 table: weekly hours [low, high) and the two requirements."""

    label: str
    low: Decimal
    high: Decimal | None
    primary_max: int  # at most this many workers, for 95% of packages
    secondary_max: int  # at most this many workers, for 100% of packages

    def holds(self, hours: Decimal) -> bool:
        return hours >= self.low and (self.high is None or hours < self.high)


# §5.27. "<3hrs: 1 worker (95%), no more than 3 (100%)", and so on. Bands include their
# lower bound: exactly 3 h a week is in 3-10, exactly 10 in 10-25, exactly 36 in 36+.
BANDS: tuple[Band, ...] = (
    Band("<3 hrs", Decimal(0), Decimal(3), 1, 3),
    Band("3-10 hrs", Decimal(3), Decimal(10), 3, 5),
    Band("10-25 hrs", Decimal(10), Decimal(25), 5, 8),
    Band("25-36 hrs", Decimal(25), Decimal(36), 8, 12),
    Band("36+ hrs", Decimal(36), None, 12, 16),
)
PRIMARY_TARGET = 95
SECONDARY_TARGET = 100


def band_for(hours: Decimal) -> Band:
    for band in BANDS:
        if band.holds(hours):
            return band
    raise ValueError(f"negative weekly hours: {hours}")


@dataclasses.dataclass
class PackageConsistency:
    package_id: int
    purchase_order: str
    resident_ref: str
    funder: str
    team: str
    weekly_hours: Decimal
    band: str
    workers: int
    within_primary: bool
    within_secondary: bool


@dataclasses.dataclass
class BandResult:
    band: Band
    primary: Ratio  # packages with at most primary_max workers, target 95%
    secondary: Ratio  # packages with at most secondary_max workers, target 100%


@dataclasses.dataclass
class Consistency:
    """§5.27 / business-critical measure 10: distinct workers per package, by hours band."""

    bands: list[BandResult]
    by_funder: dict[str, list[BandResult]]
    by_team: dict[str, list[BandResult]]
    packages: list[PackageConsistency]  # packages with at least one attendance in the range
    unattended_packages: list[int]  # active in the range, no attendance: not measured

    @property
    def met(self) -> bool | None:
        verdicts = [r.primary.met for r in self.bands] + [r.secondary.met for r in self.bands]
        known = [v for v in verdicts if v is not None]
        return None if not known else all(known)

    @property
    def outside(self) -> list[PackageConsistency]:
        return [p for p in self.packages if not p.within_primary]


@dataclasses.dataclass
class KpiReport:
    date_from: dt.date
    date_to: dt.date
    timezone: str
    funder: str | None
    team: str | None
    generated_at: dt.datetime
    config: KpiConfig
    visits_due: int
    visits_not_yet_due: int
    compliance: Compliance
    punctuality: Punctuality
    missed: Count
    late: Count
    short_delivered: Count
    short_planned: Count
    double_up_apart: Count
    double_up_single: Count
    double_up_visits: int
    hours: Hours
    consistency: Consistency
    alerts: Alerts
    # Quality calls (spec 5.34, 5.40): outreach.survey.SatisfactionFigures.
    satisfaction: Any = None


# --------------------------------------------------------------------------- computing


class KpiRangeError(ValueError):
    """A date range that cannot be reported on; the message says why."""


def make_scope(settings: Settings, date_from: dt.date, date_to: dt.date, funder: str | None, team: str | None,
               now: dt.datetime | None) -> Scope:
    if date_to < date_from:
        raise KpiRangeError(f"--to {date_to} is before --from {date_from}")
    if (date_to - date_from).days > 366:
        raise KpiRangeError("a range longer than a year; report month by month")
    tz = settings.tz
    lo = local_day_bounds(date_from, tz)[0]
    hi = local_day_bounds(date_to, tz)[1]
    return Scope(date_from, date_to, lo, hi, now or utcnow(), tz, funder, team)


def _key(value: str | None, blank: str) -> str:
    return value if value else blank


def _visit_facts(scope: Scope) -> Any:
    """One row per due, non-cancelled visit in range: planned times and arrival facts (seconds)."""
    a = Attendance
    arr = epoch_seconds(a.arrival_at)
    dep = epoch_seconds(a.departure_at)
    complete = and_(a.arrival_at.is_not(None), a.departure_at.is_not(None))
    stmt = (
        select(
            Visit.id.label("visit_id"),
            Visit.visit_ref,
            Visit.time_critical,
            Visit.workers_required,
            Visit.planned_start,
            Resident.reference.label("resident_ref"),
            Resident.funder,
            Resident.team,
            epoch_seconds(Visit.planned_start).label("ps"),
            epoch_seconds(Visit.planned_end).label("pe"),
            func.min(arr).label("first_arr"),
            func.max(arr).label("last_arr"),
            func.count(a.arrival_at).label("n_arr"),
            func.count(case((or_(a.arrival_at.is_not(None), a.departure_at.is_not(None)), 1))).label("n_att"),
            func.min(case((complete, arr))).label("first_arr_c"),
            func.max(case((complete, dep))).label("last_dep_c"),
        )
        .join(Resident, Resident.id == Visit.resident_id)
        .outerjoin(a, a.visit_id == Visit.id)
        .where(
            Visit.status == VisitStatus.SCHEDULED,
            Visit.planned_start >= scope.lo,
            Visit.planned_start < scope.hi,
            Visit.planned_end <= scope.now,
            *scope.resident_filters(),
        )
        .group_by(Visit.id, Visit.visit_ref, Visit.time_critical, Visit.workers_required, Visit.planned_start,
                  Visit.planned_end, Resident.reference, Resident.funder, Resident.team)
    )
    return stmt


def _visit_figures(session: Session, scope: Scope, cfg: KpiConfig) -> dict[str, Any]:
    vf = materialise(session, "kpi_visit_facts", _visit_facts(scope))
    tol = case((vf.c.time_critical, literal(cfg.time_critical_window_minutes * 60)),
               else_=literal(cfg.punctuality_window_minutes * 60))
    has_arr = vf.c.first_arr.is_not(None)
    late = and_(has_arr, vf.c.first_arr - vf.c.ps > tol)
    early = and_(has_arr, vf.c.ps - vf.c.first_arr > tol)
    punctual = and_(has_arr, vf.c.first_arr - vf.c.ps <= tol, vf.c.ps - vf.c.first_arr <= tol)
    missed = vf.c.n_att == 0
    short_limit = cfg.short_visit_minutes * 60
    short = and_(vf.c.first_arr_c.is_not(None), vf.c.last_dep_c - vf.c.first_arr_c <= short_limit)
    planned_short = vf.c.pe - vf.c.ps <= short_limit
    double = and_(vf.c.workers_required == 2, vf.c.n_arr >= 2)
    apart = and_(double, vf.c.last_arr - vf.c.first_arr > cfg.double_up_apart_minutes * 60)
    single = and_(vf.c.workers_required == 2, vf.c.n_att == 1)

    def n(cond: Any) -> Any:
        return func.sum(case((cond, 1), else_=0))

    agg = select(
        vf.c.funder, vf.c.team,
        n(vf.c.time_critical).label("tc_total"),
        n(and_(vf.c.time_critical, punctual)).label("tc_punctual"),
        n(not_(vf.c.time_critical)).label("other_total"),
        n(and_(not_(vf.c.time_critical), punctual)).label("other_punctual"),
        n(missed).label("missed"),
        n(late).label("late"),
        n(short).label("short"),
        n(planned_short).label("planned_short"),
        n(double).label("double"),
        n(apart).label("apart"),
        n(single).label("single"),
    ).group_by(vf.c.funder, vf.c.team)

    tc = Scoped.empty(cfg.punctuality_target_percent)
    other = Scoped.empty(cfg.punctuality_target_percent)
    counts = {k: Count(target_max=t) for k, t in
              (("missed", 0), ("late", None), ("short", 0), ("planned_short", 0), ("apart", 0), ("single", 0))}
    double_total = 0
    for row in session.execute(agg):
        f, t = _key(row.funder, NO_FUNDER), _key(row.team, NO_TEAM)
        tc.add(f, t, int(row.tc_punctual), int(row.tc_total))
        other.add(f, t, int(row.other_punctual), int(row.other_total))
        for name, count in counts.items():
            count.add(f, t, int(getattr(row, name)))
        double_total += int(row.double)

    flags = select(
        vf.c.visit_id, vf.c.visit_ref, vf.c.resident_ref, vf.c.planned_start, vf.c.time_critical,
        vf.c.ps, vf.c.pe, vf.c.first_arr, vf.c.last_arr, vf.c.first_arr_c, vf.c.last_dep_c,
        late.label("late"), early.label("early"), missed.label("missed"), punctual.label("punctual"),
        short.label("short"), planned_short.label("planned_short"), apart.label("apart"),
        single.label("single"),
    ).where(or_(not_(punctual), short, planned_short, apart, single)).order_by(vf.c.ps, vf.c.visit_ref)

    not_punctual: list[VisitRow] = []
    for r in session.execute(flags):
        first = None if r.first_arr is None else dt.datetime.fromtimestamp(r.first_arr, dt.UTC)

        def row(detail: str, r: Any = r, first: dt.datetime | None = first) -> VisitRow:
            return VisitRow(r.visit_id, r.visit_ref, r.resident_ref, r.planned_start, first, detail=detail)

        offset = None if r.first_arr is None else int((r.first_arr - r.ps) / 60)  # whole minutes, toward 0
        if not r.punctual:
            kind = "time-critical" if r.time_critical else "other"
            if r.missed:
                why = "missed"
            elif r.first_arr is None:
                why = "no arrival logged"
            else:
                why = f"arrived {abs(offset)} min {'late' if offset > 0 else 'early'}"
            not_punctual.append(row(f"{kind}: {why}"))
        if r.missed:
            counts["missed"].rows.append(row("no attendance logged"))
        if r.late:
            counts["late"].rows.append(row(f"{offset} min late"))
        if r.short:
            counts["short"].rows.append(row(f"{(r.last_dep_c - r.first_arr_c) // 60} min delivered"))
        if r.planned_short:
            counts["planned_short"].rows.append(row(f"{(r.pe - r.ps) // 60} min planned"))
        if r.apart:
            counts["apart"].rows.append(row(f"arrivals {(r.last_arr - r.first_arr) // 60} min apart"))
        if r.single:
            counts["single"].rows.append(row("one of two workers attended"))

    drop(session, vf)
    pending = select(func.count()).select_from(Visit).where(
        Visit.status == VisitStatus.SCHEDULED, Visit.planned_start >= scope.lo, Visit.planned_start < scope.hi,
        Visit.planned_end > scope.now)
    if scope.resident_filters():
        pending = pending.join(Resident, Resident.id == Visit.resident_id).where(*scope.resident_filters())
    not_due = session.execute(pending).scalar_one()
    return {
        "punctuality": Punctuality(tc, other, cfg.time_critical_window_minutes, cfg.punctuality_window_minutes,
                                   not_punctual),
        "missed": counts["missed"], "late": counts["late"], "short_delivered": counts["short"],
        "short_planned": counts["planned_short"], "double_up_apart": counts["apart"],
        "double_up_single": counts["single"], "double_up_visits": double_total,
        "visits_due": tc.overall.denominator + other.overall.denominator, "visits_not_yet_due": int(not_due),
    }


def _delivered_attendances(scope: Scope) -> Any:
    """Attendances with something logged, of due non-cancelled visits or unscheduled in range."""
    a = Attendance
    ok = and_(a.arrival_method.in_(Method.ELECTRONIC), a.departure_method.in_(Method.ELECTRONIC))
    logged = or_(a.arrival_at.is_not(None), a.departure_at.is_not(None))
    cols = (a.id.label("attendance_id"), a.worker_id, Resident.funder, Resident.team,
            case((ok, 1), else_=0).label("ok"),
            case((or_(a.arrival_unanswered, a.departure_unanswered), 1), else_=0).label("unanswered"))
    on_visits = (
        select(*cols).join(Visit, Visit.id == a.visit_id).join(Resident, Resident.id == a.resident_id)
        .where(logged, Visit.status == VisitStatus.SCHEDULED, Visit.planned_start >= scope.lo,
               Visit.planned_start < scope.hi, Visit.planned_end <= scope.now, *scope.resident_filters())
    )
    unscheduled = (
        select(*cols).join(Resident, Resident.id == a.resident_id)
        .where(a.visit_id.is_(None), a.arrival_at >= scope.lo, a.arrival_at < scope.hi,
               a.arrival_at <= scope.now, *scope.resident_filters())
    )
    return union_all(on_visits, unscheduled).subquery("delivered")


def _compliance(session: Session, scope: Scope, cfg: KpiConfig) -> Compliance:
    d = materialise(session, "kpi_delivered", select(_delivered_attendances(scope)))
    agg = (
        select(d.c.worker_id, d.c.funder, d.c.team, func.sum(d.c.ok).label("ok"), func.count().label("n"),
               func.sum(d.c.unanswered).label("unanswered"))
        .group_by(d.c.worker_id, d.c.funder, d.c.team)
    )
    unanswered = 0
    share = Scoped.empty(cfg.compliance_target_percent)
    per_worker: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for row in session.execute(agg):
        share.add(_key(row.funder, NO_FUNDER), _key(row.team, NO_TEAM), int(row.ok), int(row.n))
        unanswered += int(row.unanswered or 0)
        per_worker[row.worker_id][0] += int(row.ok)
        per_worker[row.worker_id][1] += int(row.n)
    workers: list[WorkerCompliance] = []
    if per_worker:
        info = {w.id: (w.worker_number, w.team) for w in session.execute(
            select(Worker.id, Worker.worker_number, Worker.team).where(Worker.id.in_(list(per_worker))))}
        for wid, (ok, total) in per_worker.items():
            number, team = info[wid]
            workers.append(WorkerCompliance(wid, number, team or "", ok, total, cfg.worker_floor_percent))
        workers.sort(key=lambda w: (w.phone * 100 / w.delivered, w.worker_number))

    a = Attendance
    failing = (
        select(a.id.label("attendance_id"), a.visit_id, Visit.visit_ref, Resident.reference, Visit.planned_start,
               a.arrival_at, Worker.worker_number, a.arrival_method, a.departure_method)
        .join(Resident, Resident.id == a.resident_id).join(Worker, Worker.id == a.worker_id)
        .outerjoin(Visit, Visit.id == a.visit_id)
        .where(a.id.in_(select(d.c.attendance_id).where(d.c.ok == 0)))
        .order_by(func.coalesce(Visit.planned_start, a.arrival_at), a.id)
    )
    rows = [
        VisitRow(r.visit_id, r.visit_ref, r.reference, r.planned_start, r.arrival_at, r.attendance_id,
                 r.worker_number,
                 f"arrival {r.arrival_method or 'not logged'}, departure {r.departure_method or 'not logged'}")
        for r in session.execute(failing)
    ]
    drop(session, d)
    return Compliance(share, workers, rows, unanswered)


def _package_visits(scope: Scope) -> Any:
    """(visit, package): each non-cancelled visit in range with the package active on its local date.

    When two packages of a resident are active that day, the later-starting one (then the
    newer row) takes the visit, so no visit counts twice.
    """
    p2 = aliased(CarePackage)
    vday = local_day(Visit.planned_start, scope.tz, scope.lo, scope.hi)

    def active(p: Any) -> Any:
        return and_(vday >= epoch_day(p.start_date), or_(p.end_date.is_(None), vday <= epoch_day(p.end_date)))

    newer = exists().where(
        p2.resident_id == CarePackage.resident_id,
        or_(p2.start_date > CarePackage.start_date, and_(p2.start_date == CarePackage.start_date,
                                                         p2.id > CarePackage.id)),
        active(p2),
    )
    return (
        select(Visit.id.label("visit_id"), CarePackage.id.label("package_id"),
               ((epoch_seconds(Visit.planned_end) - epoch_seconds(Visit.planned_start))
                * Visit.workers_required).label("planned_s"))
        .join(CarePackage, CarePackage.resident_id == Visit.resident_id)
        .where(Visit.status == VisitStatus.SCHEDULED, Visit.planned_start >= scope.lo,
               Visit.planned_start < scope.hi, active(CarePackage), not_(newer))
    )


def _packages_in_range(session: Session, scope: Scope) -> list[Any]:
    stmt = (
        select(CarePackage.id, CarePackage.purchase_order, CarePackage.funder, CarePackage.weekly_hours,
               CarePackage.start_date, CarePackage.end_date, Resident.reference, Resident.team)
        .join(Resident, Resident.id == CarePackage.resident_id)
        .where(CarePackage.start_date <= scope.date_to,
               or_(CarePackage.end_date.is_(None), CarePackage.end_date >= scope.date_from))
        .order_by(Resident.reference, CarePackage.start_date, CarePackage.id)
    )
    if scope.funder is not None:
        stmt = stmt.where(CarePackage.funder == scope.funder)
    if scope.team is not None:
        stmt = stmt.where(Resident.team == scope.team)
    return list(session.execute(stmt))


HOURS_Q = Decimal("0.01")


def _hours(seconds: int | Decimal) -> Decimal:
    return (Decimal(seconds) / 3600).quantize(HOURS_Q, rounding=ROUND_HALF_UP)


def _package_figures(session: Session, scope: Scope) -> tuple[Hours, Consistency]:
    packages = _packages_in_range(session, scope)
    pv = materialise(session, "kpi_package_visits", _package_visits(scope))
    planned = dict(session.execute(select(pv.c.package_id, func.sum(pv.c.planned_s)).group_by(pv.c.package_id)).all())
    a = Attendance
    logged = or_(a.arrival_at.is_not(None), a.departure_at.is_not(None))
    complete = and_(a.arrival_at.is_not(None), a.departure_at.is_not(None))
    att_stmt: Select[Any] = (
        select(pv.c.package_id,
               func.sum(case((complete, epoch_seconds(a.departure_at) - epoch_seconds(a.arrival_at)), else_=0)),
               func.count(func.distinct(a.worker_id)))
        .join(a, and_(a.visit_id == pv.c.visit_id, logged))
        .group_by(pv.c.package_id)
    )
    delivered: dict[int, tuple[int, int]] = {r[0]: (int(r[1] or 0), int(r[2])) for r in session.execute(att_stmt)}
    drop(session, pv)

    hours_rows: list[PackageHours] = []
    cons_rows: list[PackageConsistency] = []
    unattended: list[int] = []
    for p in packages:
        first = max(p.start_date, scope.date_from)
        last = min(p.end_date or scope.date_to, scope.date_to)
        days = (last - first).days + 1
        weekly = Decimal(p.weekly_hours)
        funder, team = _key(p.funder, NO_FUNDER), _key(p.team, NO_TEAM)
        secs, n_workers = delivered.get(p.id, (0, 0))
        hours_rows.append(PackageHours(
            p.id, p.purchase_order, p.reference, funder, team, weekly, days,
            (weekly * days / 7).quantize(HOURS_Q, rounding=ROUND_HALF_UP),
            _hours(int(planned.get(p.id) or 0)), _hours(secs)))
        if n_workers == 0:
            unattended.append(p.id)
            continue
        band = band_for(weekly)
        cons_rows.append(PackageConsistency(p.id, p.purchase_order, p.reference, funder, team, weekly, band.label,
                                            n_workers, n_workers <= band.primary_max,
                                            n_workers <= band.secondary_max))

    overall = HoursTotals()
    by_funder: dict[str, HoursTotals] = {}
    by_team: dict[str, HoursTotals] = {}
    for h in hours_rows:
        overall.add(h)
        by_funder.setdefault(h.funder, HoursTotals()).add(h)
        by_team.setdefault(h.team, HoursTotals()).add(h)

    def bands_of(rows: Iterable[PackageConsistency]) -> list[BandResult]:
        results = {b.label: BandResult(b, Ratio(0, 0, PRIMARY_TARGET), Ratio(0, 0, SECONDARY_TARGET)) for b in BANDS}
        for r in rows:
            results[r.band].primary.add(int(r.within_primary), 1)
            results[r.band].secondary.add(int(r.within_secondary), 1)
        return list(results.values())

    funders = sorted({r.funder for r in cons_rows})
    teams = sorted({r.team for r in cons_rows})
    consistency = Consistency(
        bands_of(cons_rows),
        {f: bands_of(r for r in cons_rows if r.funder == f) for f in funders},
        {t: bands_of(r for r in cons_rows if r.team == t) for t in teams},
        cons_rows, unattended,
    )
    return Hours(hours_rows, overall, by_funder, by_team), consistency


def compute(factory: sessionmaker[Session], settings: Settings, date_from: dt.date, date_to: dt.date,
            funder: str | None = None, team: str | None = None, *, now: dt.datetime | None = None) -> KpiReport:
    """Every contract-monitoring figure for local dates ``date_from``..``date_to`` inclusive.

    ``funder`` / ``team`` restrict to residents (packages, for hours and consistency) of
    that funder / team. ``now`` (default: the clock) decides which visits are due.
    """
    cfg = KpiConfig.from_settings(settings)
    scope = make_scope(settings, date_from, date_to, funder, team, now)
    with factory() as session:
        visits = _visit_figures(session, scope, cfg)
        compliance = _compliance(session, scope, cfg)
        hours, consistency = _package_figures(session, scope)
        alerts = alert_figures(session, scope, cfg)
        from outreach.survey import figures as satisfaction_figures

        satisfaction = satisfaction_figures(session, date_from, date_to, scope.tz, funder, team)
    return KpiReport(
        date_from=date_from, date_to=date_to, timezone=settings.timezone, funder=funder, team=team,
        generated_at=scope.now, config=cfg, compliance=compliance, hours=hours, consistency=consistency,
        alerts=alerts, satisfaction=satisfaction, **visits,
    )


__all__ = ["BANDS", "AlertKindFigures", "Alerts", "KpiRangeError", "KpiReport", "Scope", "VisitRow", "band_for",
           "compute", "day_number", "to_epoch"]
