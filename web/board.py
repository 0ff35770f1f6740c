"""The day's visits as the office board shows them: one row per visit, its state in words.

The state is a pure function of the visit, its attendances and ``now`` (so tests pass
time in). Thresholds come from ``[web]`` in the config; they only colour the board —
alerts and their deadlines are the scheduler's business.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from carecall.config import Settings
from ivr.clock import local_day_bounds
from ivr.models import Attendance, CallRecord, Resident, Visit, VisitStatus, Worker


class State:
    DUE = "due"
    ON_SITE = "on site"
    DONE = "done"
    LATE = "late"
    MISSED = "missed"
    NO_DEPARTURE = "no departure"
    CANCELLED = "cancelled"
    ALL = (DUE, ON_SITE, DONE, LATE, MISSED, NO_DEPARTURE, CANCELLED)


def css_class(state: str) -> str:
    return "st-" + state.replace(" ", "-")


@dataclasses.dataclass(frozen=True)
class Thresholds:
    late_after: dt.timedelta = dt.timedelta(minutes=15)
    missed_after: dt.timedelta = dt.timedelta(minutes=30)
    no_departure_after: dt.timedelta = dt.timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        web = settings.section("web")
        return cls(
            late_after=dt.timedelta(minutes=float(web.get("late_after_minutes", 15))),
            missed_after=dt.timedelta(minutes=float(web.get("missed_after_minutes", 30))),
            no_departure_after=dt.timedelta(minutes=float(web.get("no_departure_after_minutes", 15))),
        )


def visit_state(status: str, planned_start: dt.datetime, planned_end: dt.datetime,
                ends: list[tuple[dt.datetime | None, dt.datetime | None]], now: dt.datetime,
                limits: Thresholds) -> str:
    """``ends`` holds (arrival_at, departure_at) of each attendance of the visit."""
    if status == VisitStatus.CANCELLED:
        return State.CANCELLED
    arrived = [(a, d) for a, d in ends if a is not None]
    if not arrived:
        if now < planned_start + limits.late_after:
            return State.DUE
        if now < planned_start + limits.missed_after:
            return State.LATE
        return State.MISSED
    if any(d is None for _, d in arrived):
        return State.NO_DEPARTURE if now >= planned_end + limits.no_departure_after else State.ON_SITE
    return State.DONE


def _worker_view(att: Attendance | None, number: str, name: str) -> dict[str, Any]:
    return {
        "number": number,
        "name": name,
        "arrival_at": att.arrival_at if att else None,
        "arrival_method": att.arrival_method if att else None,
        "arrival_verified": att.arrival_verified if att else False,
        "departure_at": att.departure_at if att else None,
        "departure_method": att.departure_method if att else None,
        "departure_verified": att.departure_verified if att else False,
        "kind": att.kind if att else "scheduled",
    }


def board_rows(session: Session, day: dt.date, team: str, now: dt.datetime, settings: Settings) -> list[dict[str, Any]]:
    """Every visit starting on ``day`` (local), optionally only one team's residents."""
    start, end = local_day_bounds(day, settings.tz)
    limits = Thresholds.from_settings(settings)
    q = (select(Visit).join(Resident, Visit.resident_id == Resident.id)
         .where(Visit.planned_start >= start, Visit.planned_start < end)
         .options(selectinload(Visit.resident), selectinload(Visit.assignments))
         .order_by(Visit.planned_start, Visit.id))
    if team:
        q = q.where(Resident.team == team)
    visits = session.scalars(q).all()
    ids = [v.id for v in visits]
    atts: dict[int, list[Attendance]] = {}
    if ids:
        for a in session.scalars(select(Attendance).where(Attendance.visit_id.in_(ids))
                                 .options(selectinload(Attendance.worker))):
            atts.setdefault(a.visit_id or 0, []).append(a)
    assigned_ids = {vw.worker_id for v in visits for vw in v.assignments}
    workers = {w.id: w for w in session.scalars(select(Worker).where(Worker.id.in_(assigned_ids)))}
    rows = []
    for v in visits:
        by_worker = {a.worker_id: a for a in atts.get(v.id, [])}
        people = []
        for vw in v.assignments:
            w = workers[vw.worker_id]
            people.append(_worker_view(by_worker.pop(vw.worker_id, None), w.worker_number, w.name))
        for a in by_worker.values():  # came without being assigned (substitutes)
            people.append(_worker_view(a, a.worker.worker_number, a.worker.name))
        state = visit_state(v.status, v.planned_start, v.planned_end,
                            [(a.arrival_at, a.departure_at) for a in atts.get(v.id, [])], now, limits)
        rows.append({
            "id": v.id, "visit_ref": v.visit_ref, "planned_start": v.planned_start, "planned_end": v.planned_end,
            "resident_name": v.resident.name, "resident_ref": v.resident.reference, "team": v.resident.team,
            "time_critical": v.time_critical, "workers": people, "state": state, "css": css_class(state),
        })
    return rows


def teams(session: Session) -> list[str]:
    return [t for t in session.scalars(select(Resident.team).distinct().order_by(Resident.team)) if t]


def change_token(session: Session) -> tuple[Any, ...]:
    """Changes whenever a visit, attendance or call is written, by any server on this database."""
    return (
        session.scalar(select(func.max(Visit.updated_at))),
        session.scalar(select(func.max(Attendance.updated_at))),
        session.scalar(select(func.count(Attendance.id))),
        session.scalar(select(func.max(CallRecord.id))),
    )
