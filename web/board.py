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
from scheduler.models import Alert, AlertKind
from scheduler.rules import Rules, VisitFacts, deadlines, is_short_visit


class State:
    DUE = "due"
    ON_SITE = "on site"
    DONE = "done"
    LATE = "late"
    SHORT_VISIT = "short visit"
    NO_REPLY = "no reply"
    MISSED = "missed"
    NO_DEPARTURE = "no departure"
    CANCELLED = "cancelled"
    ALL = (DUE, ON_SITE, DONE, LATE, SHORT_VISIT, NO_REPLY, MISSED, NO_DEPARTURE, CANCELLED)
    # Shown in red: somebody has to act now.
    TROUBLE = (NO_REPLY, MISSED, NO_DEPARTURE)


def css_class(state: str) -> str:
    return "st-" + state.replace(" ", "-")


def alert_rules(settings: Settings) -> Rules:
    return Rules.from_section(settings.section("alerts"), settings.timezone)


def visit_deadlines(v: Visit, resident_ref: str, rules: Rules) -> dict[str, dt.datetime]:
    """The alert rules' own deadlines for this visit (``scheduler.rules.deadlines``)."""
    facts = VisitFacts(v.id, v.visit_ref, v.resident_id, resident_ref, v.planned_start, v.planned_end,
                       v.time_critical, v.status == VisitStatus.CANCELLED, v.workers_required)
    return deadlines(facts, rules)


def _minutes(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() // 60)


def decide_state(status: str, ends: list[tuple[dt.datetime | None, dt.datetime | None]], now: dt.datetime,
                 due: dict[str, dt.datetime], *, planned: tuple[dt.datetime, dt.datetime] | None = None,
                 rules: Rules | None = None, alert_kinds: frozenset[str] = frozenset()) -> tuple[str, str]:
    """The visit's state word and a note, as the board and the visit page both show it.

    ``ends`` holds (arrival_at, departure_at) of each attendance; ``due`` the alert deadlines
    by kind; ``alert_kinds`` the kinds of alert stored for the visit (the alerts table:
    a no-reply call raises its alert at once). Late, missed and no departure start exactly
    when their alerts are due; "short visit" is the alert rule's own test
    (``scheduler.rules.is_short_visit``); a late arrival stays "late" after the fact, with
    how late in the note. Most urgent first: no reply, missed, no departure, then the rest.
    """
    if status == VisitStatus.CANCELLED:
        return State.CANCELLED, ""
    # Only what has happened by `now` counts (a test or a replay may store the future).
    seen = [(a, d if d is not None and d <= now else None) for a, d in ends if a is not None and a <= now]
    notes: list[str] = []
    if AlertKind.DOUBLE_UP_APART in alert_kinds:
        notes.append("double-up: second worker not there in time")
    if not seen:
        if AlertKind.NO_REPLY in alert_kinds:
            return State.NO_REPLY, "worker reported no reply at the door"
        if now >= due[AlertKind.MISSED]:
            return State.MISSED, "no arrival by the planned end"
        if now >= due[AlertKind.LATE]:
            return State.LATE, f"not arrived, {_minutes(now - planned[0])} min after the start" if planned else ""
        return State.DUE, ""
    if AlertKind.NO_REPLY in alert_kinds:
        notes.append("no reply reported earlier")
    first = min(a for a, _ in seen)
    late_by = _minutes(first - planned[0]) if planned else 0
    arrived_late = first > due[AlertKind.LATE]
    if arrived_late:
        notes.insert(0, f"arrived {late_by} min late")
    if any(d is None for _, d in seen):
        if now >= due[AlertKind.NO_DEPARTURE]:
            return State.NO_DEPARTURE, "; ".join([f"no departure logged, {_minutes(now - planned[1])} min after "
                                                  "the planned end" if planned else "no departure logged", *notes])
        return (State.LATE if arrived_late else State.ON_SITE), "; ".join(
            [*notes, "on site"] if arrived_late else notes)
    if planned is not None and rules is not None:
        for a, d in seen:
            assert d is not None
            if is_short_visit(d - a, planned[1] - planned[0], rules):
                return State.SHORT_VISIT, "; ".join(
                    [f"stayed {_minutes(d - a)} of {_minutes(planned[1] - planned[0])} min", *notes])
    return (State.LATE if arrived_late else State.DONE), "; ".join(notes)


def visit_state(status: str, ends: list[tuple[dt.datetime | None, dt.datetime | None]], now: dt.datetime,
                due: dict[str, dt.datetime]) -> str:
    """Just the word, from arrivals and departures alone (see :func:`decide_state`)."""
    return decide_state(status, ends, now, due)[0]


def alert_kinds_by_visit(session: Session, visit_ids: list[int]) -> dict[int, frozenset[str]]:
    out: dict[int, set[str]] = {}
    for chunk in range(0, len(visit_ids), 1000):
        for vid, kind in session.execute(select(Alert.visit_id, Alert.kind)
                                         .where(Alert.visit_id.in_(visit_ids[chunk:chunk + 1000]))):
            out.setdefault(vid, set()).add(kind)
    return {k: frozenset(v) for k, v in out.items()}


def state_of(v: Visit, atts: list[Attendance], kinds: frozenset[str], now: dt.datetime,
             rules: Rules) -> tuple[str, str]:
    """The one call the board and the visit page make: the state and note of one visit."""
    return decide_state(v.status, [(a.arrival_at, a.departure_at) for a in atts], now,
                        visit_deadlines(v, v.resident.reference, rules), planned=(v.planned_start, v.planned_end),
                        rules=rules, alert_kinds=kinds)


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
    kinds = alert_kinds_by_visit(session, ids)
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
        state, note = state_of(v, atts.get(v.id, []), kinds.get(v.id, frozenset()), now, rules)
        rows.append({
            "id": v.id, "visit_ref": v.visit_ref, "planned_start": v.planned_start, "planned_end": v.planned_end,
            "resident_name": v.resident.name, "resident_ref": v.resident.reference, "team": v.resident.team,
            "time_critical": v.time_critical, "workers": people, "state": state, "note": note, "css": css_class(state),
        })
    return rows


def count_states(rows: list[dict[str, Any]]) -> dict[str, int]:
    """The board's counts at the top: the rows' own states, so they always add up."""
    return {s: sum(1 for r in rows if r["state"] == s) for s in State.ALL}


def teams(session: Session) -> list[str]:
    return [t for t in session.scalars(select(Resident.team).distinct().order_by(Resident.team)) if t]


def change_token(session: Session) -> tuple[Any, ...]:
    """Changes whenever a visit, attendance, call or alert is written, by any server on this database."""
    return (
        session.scalar(select(func.max(Alert.id))),
        session.scalar(select(func.max(Visit.updated_at))),
        session.scalar(select(func.max(Attendance.updated_at))),
        session.scalar(select(func.count(Attendance.id))),
        session.scalar(select(func.max(CallRecord.id))),
    )
