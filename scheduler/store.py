"""Loading the facts near ``now`` and storing alerts exactly once.

:func:`raise_alert` is the one way an alert row is written (the rules pass and the
no-reply call path both use it): ``INSERT … ON CONFLICT (dedupe_key) DO NOTHING`` in the
caller's transaction, so two processes racing for the same fact store one row and the
loser learns it from a ``None``.

:func:`run_pass` reads only the visits whose deadlines can fall in the look-back
window (range scans on the indexed ``planned_start`` / ``planned_end`` and on the
attendances' arrival and departure times), so its cost follows the day's activity,
not the size of the visits table. :func:`next_deadline` tells the scheduler when the
next pass is due; both solve the one list of deadlines, :data:`RULE_DEADLINES`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ivr.models import Attendance, CallRecord, Resident, Visit, VisitStatus, VisitWorker, Worker
from scheduler.models import SEVERITY, Alert, AlertAction, AlertKind, AlertStatus
from scheduler.rules import (
    MINUTE,
    AttendanceFacts,
    CallFacts,
    Due,
    OpenAlert,
    Rules,
    Snapshot,
    VisitFacts,
    dedupe_key,
    due_alerts,
    settlements,
)

SYSTEM = "system"
CHUNK = 500


def raise_alert(session: Session, *, kind: str, visit_id: int | None = None, worker_id: int | None = None,
                resident_id: int | None = None, attendance_id: int | None = None, call_record_id: int | None = None,
                at: dt.datetime, due_at: dt.datetime | None = None, detail: str = "",
                key: str | None = None) -> int | None:
    """Insert an alert in the caller's transaction; the new id, or ``None`` if this fact was already raised.

    Does not commit. ``detail`` must not hold a resident's name (it goes into e-mails).
    """
    if kind not in AlertKind.ALL:
        raise ValueError(f"unknown alert kind {kind!r}")
    due = due_at or at
    key = key or dedupe_key(kind, visit_id=visit_id, worker_id=worker_id, attendance_id=attendance_id,
                                    call_record_id=call_record_id, due_at=due)
    values = dict(kind=kind, dedupe_key=key, visit_id=visit_id, worker_id=worker_id, resident_id=resident_id,
                  attendance_id=attendance_id, call_record_id=call_record_id, due_at=due, raised_at=at,
                  status=AlertStatus.OPEN, severity=SEVERITY[kind], detail=detail, resolution_note="",
                  resolved_by_system=False)
    dialect = session.get_bind().dialect.name
    ins: Any
    if dialect == "postgresql":
        ins = postgresql.insert(Alert).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    elif dialect == "sqlite":
        ins = sqlite.insert(Alert).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    else:  # pragma: no cover - only the two engines are supported
        raise RuntimeError(f"unsupported database {dialect}")
    new_id = session.execute(ins.returning(Alert.id)).scalar_one_or_none()
    if new_id is None:
        return None
    session.add(AlertAction(alert_id=new_id, at=at, actor=SYSTEM, action="raised", note=detail[:500]))
    session.flush()
    return int(new_id)


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    items = sorted(ids)
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


def _attendance_query() -> Any:
    return select(Attendance.id, Attendance.visit_id, Attendance.resident_id, Resident.reference,
                  Attendance.worker_id, Worker.worker_number, Attendance.kind, Attendance.arrival_at,
                  Attendance.departure_at) \
        .join(Resident, Resident.id == Attendance.resident_id).join(Worker, Worker.id == Attendance.worker_id)


UNRESOLVED = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
SETTLEABLE = (AlertKind.LATE, AlertKind.MISSED, AlertKind.NO_DEPARTURE)


def _open_alerts(session: Session) -> list[OpenAlert]:
    """The unresolved alerts a pass may settle (late, missed, no departure)."""
    return [
        OpenAlert(r.id, r.kind, r.visit_id, r.worker_id, r.due_at)
        for r in session.execute(select(Alert.id, Alert.kind, Alert.visit_id, Alert.worker_id, Alert.due_at)
                                 .where(Alert.status.in_(UNRESOLVED), Alert.kind.in_(SETTLEABLE)))
    ]


@dataclasses.dataclass(frozen=True)
class Deadline:
    """One rule's deadline as a stored, indexed column plus a fixed offset: ``column + offset``.

    The one definition the pass's narrow read (:func:`load_snapshot`: which rows can have
    a deadline in the look-back window) and the scheduler's wake-up
    (:func:`next_deadline`: when is the next one) both solve, so the two cannot disagree.
    ``where`` narrows the rows the deadline applies to (time-critical visits, informational
    attendances, the calls a rule counts).
    """

    name: str
    column: Any
    offset: Callable[[Rules], dt.timedelta]
    where: Callable[[Rules], list[Any]] = lambda rules: []

    def passed(self, since: dt.datetime, now: dt.datetime, rules: Rules) -> Any:
        """Rows whose deadline is in ``[since, now]`` (the rules then keep ``(since, now]``)."""
        off = self.offset(rules)
        return and_(self.column >= since - off, self.column <= now - off, *self.where(rules))


_NONE = dt.timedelta(0)
# Failed logins and no-reply calls: the calls a rule counts (started_at is their deadline).
CALL_COUNTED = or_(CallRecord.failed_pin_attempts > 0, CallRecord.outcome.in_(("failed_login", "no_reply", "no_visit")))

VISIT_DEADLINES = (
    Deadline("late", Visit.planned_start, lambda r: r.late_after(False), lambda r: [Visit.time_critical.is_(False)]),
    Deadline("late (time-critical)", Visit.planned_start, lambda r: r.late_after(True),
             lambda r: [Visit.time_critical.is_(True)]),
    Deadline("missed", Visit.planned_end, lambda r: _NONE),
    Deadline("no departure", Visit.planned_end, lambda r: r.no_departure_minutes * MINUTE),
)
ATTENDANCE_DEADLINES = (
    Deadline("double-up apart", Attendance.arrival_at, lambda r: r.double_up_minutes * MINUTE),
    Deadline("substitute / unscheduled", Attendance.arrival_at, lambda r: _NONE,
             lambda r: [Attendance.kind.in_(AlertKind.INFORMATIONAL)]),
    Deadline("short visit / departure", Attendance.departure_at, lambda r: _NONE),
)
CALL_DEADLINES = (
    Deadline("no reply / failed login", CallRecord.started_at, lambda r: _NONE, lambda r: [CALL_COUNTED]),
)
RULE_DEADLINES = VISIT_DEADLINES + ATTENDANCE_DEADLINES + CALL_DEADLINES


def next_deadline(session: Session, now: dt.datetime, rules: Rules, horizon: dt.timedelta) -> dt.datetime | None:
    """The earliest rule deadline in ``(now, now + horizon]``, or ``None``.

    One ``ORDER BY column LIMIT 1`` per :data:`RULE_DEADLINES` entry, on the column's index,
    bounded by the horizon (the scheduler looks an hour ahead; a deadline further out is
    found by a later pass), so it costs the same with a million visits as with ten.

    It is the deadline of a *fact*, not of an alert: a visit whose worker has already
    arrived still has its "late" instant here, and the pass then finds nothing to write.
    So the answer is never later than the first alert the rules raise, and equal to it
    when that fact's condition holds.
    """
    best: dt.datetime | None = None
    for d in RULE_DEADLINES:
        off = d.offset(rules)
        at = session.scalar(select(d.column).where(d.column > now - off, d.column <= now + horizon - off,
                                                   *d.where(rules)).order_by(d.column).limit(1))
        if at is not None and (best is None or at + off < best):
            best = at + off
    return best


def load_snapshot(session: Session, now: dt.datetime, rules: Rules) -> tuple[Snapshot, list[OpenAlert]]:
    """The visits, attendances and calls whose deadlines can fall in ``(now - lookback, now]``.

    Each range is one rule's deadline (:data:`VISIT_DEADLINES`, :data:`ATTENDANCE_DEADLINES`)
    solved for the stored column, so a visit is read only once one of its deadlines has
    passed (not while its worker is merely on the way or on site): during a morning rush
    the pass stays as cheap as the alerts it can raise. ``tests/test_alert_snapshot.py``
    checks that this gives the same alerts as reading everything.
    """
    since = now - rules.lookback
    visit_ids: set[int] = set()
    for d in VISIT_DEADLINES:
        visit_ids.update(session.scalars(select(Visit.id).where(d.passed(since, now, rules))))

    open_alerts = _open_alerts(session)
    visit_ids.update(a.visit_id for a in open_alerts if a.visit_id is not None)

    windowed = session.execute(_attendance_query().where(
        or_(*(d.passed(since, now, rules) for d in ATTENDANCE_DEADLINES)))).all()
    visit_ids.update(r.visit_id for r in windowed if r.visit_id is not None)
    return _snapshot(session, visit_ids, windowed, calls=_calls(session, since, now, rules)), open_alerts


def _calls(session: Session, since: dt.datetime, now: dt.datetime, rules: Rules) -> list[CallFacts]:
    """Failed logins (their window reaches further back) and no-reply calls."""
    call_since = since - rules.failed_login_window_minutes * MINUTE
    return [
        CallFacts(r.id, r.started_at, r.script, r.outcome, r.caller_e164, r.worker_number_entered, r.worker_id,
                  r.resident_id, r.visit_id, r.failed_pin_attempts)
        for r in session.execute(
            select(CallRecord.id, CallRecord.started_at, CallRecord.script, CallRecord.outcome, CallRecord.caller_e164,
                   CallRecord.worker_number_entered, CallRecord.worker_id, CallRecord.resident_id,
                   CallRecord.visit_id, CallRecord.failed_pin_attempts)
            .where(CallRecord.started_at >= call_since, CallRecord.started_at <= now, CALL_COUNTED))
    ]


def _snapshot(session: Session, visit_ids: set[int], windowed: Sequence[Any], calls: list[CallFacts]) -> Snapshot:
    """The facts of these visits (every attendance of each) plus the windowed attendances and calls."""
    visit_ids = visit_ids | {c.visit_id for c in calls if c.visit_id is not None}
    att_base = _attendance_query()
    snap = Snapshot(calls=calls)
    assigned: dict[int, list[tuple[int, str]]] = {}
    rows_by_id: dict[int, Any] = {r.id: r for r in windowed}
    for chunk in _chunks(visit_ids):
        for r in session.execute(select(VisitWorker.visit_id, VisitWorker.worker_id, Worker.worker_number)
                                 .join(Worker, Worker.id == VisitWorker.worker_id)
                                 .where(VisitWorker.visit_id.in_(chunk)).order_by(VisitWorker.position)):
            assigned.setdefault(r.visit_id, []).append((r.worker_id, r.worker_number))
        for r in session.execute(select(Visit.id, Visit.visit_ref, Visit.resident_id, Resident.reference,
                                        Visit.planned_start, Visit.planned_end, Visit.time_critical, Visit.status,
                                        Visit.workers_required)
                                 .join(Resident, Resident.id == Visit.resident_id).where(Visit.id.in_(chunk))):
            workers = assigned.get(r.id, [])
            snap.visits[r.id] = VisitFacts(
                r.id, r.visit_ref, r.resident_id, r.reference, r.planned_start, r.planned_end, r.time_critical,
                r.status == VisitStatus.CANCELLED, r.workers_required,
                tuple(w for w, _ in workers), tuple(n for _, n in workers))
        for r in session.execute(att_base.where(Attendance.visit_id.in_(chunk))):
            rows_by_id[r.id] = r
    snap.attendances = [
        AttendanceFacts(r.id, r.visit_id, r.resident_id, r.reference, r.worker_id, r.worker_number, r.kind,
                        r.arrival_at, r.departure_at)
        for r in sorted(rows_by_id.values(), key=lambda r: r.id)
    ]
    return snap


def alert_data(alert: Alert | Any, event: str = "raised", note: str = "") -> dict[str, Any]:
    """Plain data for the event hub and the CLI (no ORM objects leave the thread)."""
    return {
        "event": event,
        "id": alert.id,
        "kind": alert.kind,
        "severity": alert.severity,
        "status": alert.status,
        "dedupe_key": alert.dedupe_key,
        "visit_id": alert.visit_id,
        "worker_id": alert.worker_id,
        "resident_id": alert.resident_id,
        "due_at": alert.due_at.isoformat(),
        "raised_at": alert.raised_at.isoformat(),
        "detail": alert.detail,
        "note": note,
    }


@dataclasses.dataclass
class PassResult:
    raised: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    settled: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    visits_read: int = 0


def settle(session: Session, alert_id: int, note: str, now: dt.datetime) -> bool:
    """Resolve an alert on the system's behalf; False if someone (or another server) already did."""
    result = session.execute(
        update(Alert).where(Alert.id == alert_id, Alert.status.in_(UNRESOLVED))
        .values(status=AlertStatus.RESOLVED, resolved_by=SYSTEM, resolved_at=now, resolution_note=note,
                resolved_by_system=True))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(AlertAction(alert_id=alert_id, at=now, actor=SYSTEM, action="resolved", note=note))
    return True


def _stored_keys(session: Session, keys: Sequence[str]) -> set[str]:
    existing: set[str] = set()
    for i in range(0, len(keys), CHUNK):
        existing.update(session.scalars(select(Alert.dedupe_key).where(Alert.dedupe_key.in_(keys[i:i + CHUNK]))))
    return existing


def store_due(session: Session, due: Sequence[Due], now: dt.datetime) -> list[int]:
    existing = _stored_keys(session, [d.dedupe_key for d in due])
    ids = []
    for d in due:
        if d.dedupe_key in existing:
            continue
        new_id = raise_alert(session, kind=d.kind, visit_id=d.visit_id, worker_id=d.worker_id,
                             resident_id=d.resident_id, attendance_id=d.attendance_id,
                             call_record_id=d.call_record_id, at=now, due_at=d.due_at, detail=d.detail,
                             key=d.dedupe_key)
        if new_id is not None:
            ids.append(new_id)
    return ids


def pass_would_write(session: Session, now: dt.datetime, rules: Rules) -> tuple[bool, int]:
    """Whether a pass at ``now`` has an alert to raise or settle, and how many visits it read.

    Reads only, so the scheduler can ask this outside a write transaction: most passes
    find nothing new, and on SQLite a pass inside ``BEGIN IMMEDIATE`` would hold every
    check-in's write behind it for as long as it reads and evaluates. When this says
    yes, :func:`run_pass` does the pass again under the lock, so what it stores is
    decided on facts no writer can change meanwhile.
    """
    snap, open_alerts = load_snapshot(session, now, rules)
    due = due_alerts(snap, now, rules)
    if due and len(_stored_keys(session, [d.dedupe_key for d in due])) < len({d.dedupe_key for d in due}):
        return True, len(snap.visits)
    return bool(settlements(open_alerts, snap, now, rules)), len(snap.visits)


def run_pass(session: Session, now: dt.datetime, rules: Rules) -> PassResult:
    """One evaluation of the rules at ``now``: store what is due, settle what the facts overtook.

    Runs in the caller's transaction; the caller commits.
    """
    snap, _ = load_snapshot(session, now, rules)
    result = PassResult(visits_read=len(snap.visits))
    new_ids = store_due(session, due_alerts(snap, now, rules), now)
    # Settle after inserting, so an alert raised late in a catch-up (the worker has
    # since arrived) is stored and settled in the same transaction.
    open_alerts = _open_alerts(session)
    settled: list[tuple[int, str]] = []
    for s in settlements(open_alerts, snap, now, rules):
        if settle(session, s.alert_id, s.note, now):
            settled.append((s.alert_id, s.note))
    session.flush()
    for chunk in _chunks(new_ids):
        for alert in session.scalars(select(Alert).where(Alert.id.in_(chunk)).order_by(Alert.id)):
            result.raised.append(alert_data(alert))
    for alert_id, note in settled:
        alert = session.get(Alert, alert_id)
        if alert is not None:
            result.settled.append(alert_data(alert, "resolved", note))
    return result
