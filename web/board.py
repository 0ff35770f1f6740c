"""The day's visits as the office board shows them: one row per visit, its state in words.

The state is a pure function of the visit, its attendances and ``now`` (so tests pass
time in). Its thresholds are the alert rules' own (``scheduler.rules.Rules`` from
``[alerts]``): a visit turns "late", "missed" or "no departure" on the board at the
deadline its alert is raised for, and there is no second copy of them in ``[web]``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from carecall.config import Settings
from ivr.clock import local_day_bounds
from ivr.models import Attendance, CallRecord, Resident, Visit, VisitStatus, Worker
from scheduler.models import AlertKind
from scheduler.rules import Rules, VisitFacts, deadlines


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


def alert_rules(settings: Settings) -> Rules:
    return Rules.from_section(settings.section("alerts"), settings.timezone)


def visit_deadlines(v: Visit, resident_ref: str, rules: Rules) -> dict[str, dt.datetime]:
    """The alert rules' own deadlines for this visit (``scheduler.rules.deadlines``)."""
    facts = VisitFacts(v.id, v.visit_ref, v.resident_id, resident_ref, v.planned_start, v.planned_end,
                       v.time_critical, v.status == VisitStatus.CANCELLED, v.workers_required)
    return deadlines(facts, rules)


def visit_state(status: str, ends: list[tuple[dt.datetime | None, dt.datetime | None]], now: dt.datetime,
                due: dict[str, dt.datetime]) -> str:
    """``ends`` holds (arrival_at, departure_at) of each attendance; ``due`` the alert deadlines by kind.

    Late, missed and no departure start exactly when their alerts are due: no arrival by
    the late deadline (time-critical visits have their own), none by the planned end, not
    left by the no-departure deadline.
    """
    if status == VisitStatus.CANCELLED:
        return State.CANCELLED
    arrived = [(a, d) for a, d in ends if a is not None]
    if not arrived:
        if now >= due[AlertKind.MISSED]:
            return State.MISSED
        if now >= due[AlertKind.LATE]:
            return State.LATE
        return State.DUE
    if any(d is None for _, d in arrived):
        return State.NO_DEPARTURE if now >= due[AlertKind.NO_DEPARTURE] else State.ON_SITE
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
        "arrival_unanswered": att.arrival_unanswered if att else False,
        "departure_unanswered": att.departure_unanswered if att else False,
        "kind": att.kind if att else "scheduled",
    }


def board_rows(session: Session, day: dt.date, team: str, now: dt.datetime, settings: Settings) -> list[dict[str, Any]]:
    """Every visit starting on ``day`` (local), optionally only one team's residents."""
    start, end = local_day_bounds(day, settings.tz)
    rules = alert_rules(settings)
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
        state = visit_state(v.status, [(a.arrival_at, a.departure_at) for a in atts.get(v.id, [])], now,
                            visit_deadlines(v, v.resident.reference, rules))
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
