"""What the office may change about a visit after the fact, and the trail it leaves.

Every operation here needs a reason code from :data:`REASONS` (``other`` also needs a
note), writes one :class:`AuditEntry` with who, when, the state before and after, and
the reason, and marks any time it sets as ``manual`` with ``*_entered_at = now`` (billing
refuses manual times entered too late). Unmatched calls from the office's queue are
linked here too: a linked call keeps ``method = phone`` — it was a real call — and is
location verified only if it came from the visit's home.

Functions take an open ``Session`` and commit nothing: the caller's unit of work does.
They raise :class:`CorrectionError` with a message for the office, having changed nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.clock import format_local
from ivr.models import (
    Attendance,
    AttendanceKind,
    AuditEntry,
    CallRecord,
    Method,
    ReviewStatus,
    Visit,
    VisitStatus,
    VisitWorker,
    Worker,
)

# Reason codes for manual changes (the EVV practice: a code for every edit).
REASONS: dict[str, str] = {
    "line_down": "Resident's phone line down",
    "phone_in_use": "Phone in use",
    "resident_refused": "Resident refused use of the phone",
    "forgot_in": "Worker forgot to call in",
    "forgot_out": "Worker forgot to call out",
    "wrong_line": "Call from the wrong line",
    "system_failure": "System failure",
    "resident_cancelled": "Resident cancelled the visit",
    "resident_in_hospital": "Resident in hospital",
    "provider_cancelled": "Provider cancelled the visit",
    "duplicate_call": "Duplicate or test call",
    "other": "Other (explain in the note)",
}
MAX_NOTE = 1000
FUTURE_SLACK = dt.timedelta(minutes=5)
TIME_FMT = "%Y-%m-%d %H:%M %Z"


class CorrectionError(ValueError):
    """A correction that cannot be made as asked; nothing was changed."""


def check_reason(reason: str, note: str) -> tuple[str, str]:
    note = (note or "").strip()
    if reason not in REASONS:
        raise CorrectionError("choose a reason code")
    if len(note) > MAX_NOTE:
        raise CorrectionError(f"the note is longer than {MAX_NOTE} characters")
    if reason == "other" and not note:
        raise CorrectionError("reason 'other' needs a note saying what happened")
    return reason, note


def _visit(session: Session, visit_id: int, *, for_update: bool = True) -> Visit:
    q = select(Visit).where(Visit.id == visit_id)
    if for_update:
        q = q.with_for_update()
    visit = session.scalar(q)
    if visit is None:
        raise CorrectionError("no such visit")
    return visit


def _worker(session: Session, worker_id: int) -> Worker:
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise CorrectionError("no such worker")
    return worker


def attendance_state(att: Attendance | None, tz: ZoneInfo) -> dict[str, Any]:
    if att is None:
        return {}
    return {
        "worker": att.worker.worker_number if att.worker else att.worker_id,
        "kind": att.kind,
        "arrival_at": format_local(att.arrival_at, tz, TIME_FMT),
        "arrival_method": att.arrival_method,
        "arrival_verified": att.arrival_verified,
        "departure_at": format_local(att.departure_at, tz, TIME_FMT),
        "departure_method": att.departure_method,
        "departure_verified": att.departure_verified,
    }


def _audit(session: Session, *, actor: str, action: str, entity: str, entity_id: str, before: dict[str, Any],
           after: dict[str, Any], reason: str, note: str, now: dt.datetime) -> None:
    session.add(AuditEntry(at=now, actor=actor, action=action, entity=entity, entity_id=entity_id,
                           before=json.dumps(before, sort_keys=True), after=json.dumps(after, sort_keys=True),
                           reason_code=reason, note=note))


def _check_time(at: dt.datetime, visit: Visit, now: dt.datetime) -> None:
    if at.tzinfo is None:
        raise CorrectionError("time without a zone")
    if at > now + FUTURE_SLACK:
        raise CorrectionError("that time is in the future")
    if abs(at - visit.planned_start) > dt.timedelta(hours=24):
        raise CorrectionError("that time is more than 24 hours from the planned visit")


def _attendance_for(session: Session, visit: Visit, worker: Worker) -> Attendance | None:
    return session.scalar(select(Attendance).where(Attendance.visit_id == visit.id,
                                                   Attendance.worker_id == worker.id))


def _kind_for(visit: Visit, worker_id: int) -> str:
    assigned = {a.worker_id for a in visit.assignments}
    return AttendanceKind.SCHEDULED if worker_id in assigned else AttendanceKind.SUBSTITUTE


def manual_time(session: Session, *, visit_id: int, worker_id: int, end: str, at: dt.datetime, reason: str,
                note: str, actor: str, now: dt.datetime, tz: ZoneInfo) -> int:
    """Set a worker's arrival or departure by hand (``end`` is "arrival" or "departure")."""
    reason, note = check_reason(reason, note)
    if end not in ("arrival", "departure"):
        raise CorrectionError("choose arrival or departure")
    visit = _visit(session, visit_id)
    if visit.status == VisitStatus.CANCELLED:
        raise CorrectionError("the visit is cancelled; it cannot have attendance times")
    worker = _worker(session, worker_id)
    _check_time(at, visit, now)
    att = _attendance_for(session, visit, worker)
    before = attendance_state(att, tz)
    if att is None:
        if end == "departure":
            raise CorrectionError("record this worker's arrival before their departure")
        att = Attendance(visit_id=visit.id, resident_id=visit.resident_id, worker_id=worker.id,
                         kind=_kind_for(visit, worker.id))
        att.worker = worker
        session.add(att)
    if end == "arrival":
        if att.departure_at is not None and at > att.departure_at:
            raise CorrectionError("the arrival would be after the departure")
        att.arrival_at, att.arrival_method, att.arrival_verified = at, Method.MANUAL, False
        att.arrival_unanswered = False
        att.arrival_uniqueid, att.arrival_entered_at = None, now
    else:
        if att.arrival_at is None:
            raise CorrectionError("record this worker's arrival before their departure")
        if at < att.arrival_at:
            raise CorrectionError("the departure would be before the arrival")
        att.departure_at, att.departure_method, att.departure_verified = at, Method.MANUAL, False
        att.departure_unanswered = False
        att.departure_uniqueid, att.departure_entered_at = None, now
    att.updated_at = now
    visit.updated_at = now
    session.flush()
    _audit(session, actor=actor, action=f"manual_{end}", entity="visit", entity_id=visit.visit_ref,
           before=before, after=attendance_state(att, tz), reason=reason, note=note, now=now)
    return att.id


def cancel_visit(session: Session, *, visit_id: int, reason: str, note: str, actor: str, now: dt.datetime) -> None:
    reason, note = check_reason(reason, note)
    visit = _visit(session, visit_id)
    if visit.status == VisitStatus.CANCELLED:
        raise CorrectionError("the visit is already cancelled")
    if session.scalar(select(Attendance.id).where(Attendance.visit_id == visit.id,
                                                  Attendance.arrival_at.is_not(None))) is not None:
        raise CorrectionError("a worker has already arrived; correct the times instead of cancelling")
    before = {"status": visit.status, "cancel_reason": visit.cancel_reason}
    visit.status = VisitStatus.CANCELLED
    visit.cancel_reason = REASONS[reason] + (f": {note}" if note else "")
    visit.updated_at = now
    _audit(session, actor=actor, action="cancel", entity="visit", entity_id=visit.visit_ref, before=before,
           after={"status": visit.status, "cancel_reason": visit.cancel_reason}, reason=reason, note=note, now=now)


def substitute_worker(session: Session, *, visit_id: int, old_worker_id: int, new_worker_id: int, reason: str,
                      note: str, actor: str, now: dt.datetime) -> None:
    """Put another worker on the visit in place of an assigned one."""
    reason, note = check_reason(reason, note)
    visit = _visit(session, visit_id)
    if visit.status == VisitStatus.CANCELLED:
        raise CorrectionError("the visit is cancelled")
    old = next((a for a in visit.assignments if a.worker_id == old_worker_id), None)
    if old is None:
        raise CorrectionError("that worker is not assigned to this visit")
    new = _worker(session, new_worker_id)
    if not new.active:
        raise CorrectionError("the new worker is not active")
    if any(a.worker_id == new.id for a in visit.assignments):
        raise CorrectionError("the new worker is already assigned to this visit")
    before = {"workers": [_worker(session, a.worker_id).worker_number for a in visit.assignments]}
    position = old.position
    visit.assignments.remove(old)
    session.flush()
    visit.assignments.append(VisitWorker(worker_id=new.id, position=position))
    visit.assignments.sort(key=lambda a: a.position)
    # An attendance the newcomer already logged on this visit now counts as scheduled.
    att = _attendance_for(session, visit, new)
    if att is not None and att.kind == AttendanceKind.SUBSTITUTE:
        att.kind = AttendanceKind.SCHEDULED
        att.updated_at = now
    visit.updated_at = now
    session.flush()
    after = {"workers": [_worker(session, a.worker_id).worker_number for a in visit.assignments]}
    _audit(session, actor=actor, action="substitute", entity="visit", entity_id=visit.visit_ref, before=before,
           after=after, reason=reason, note=note, now=now)


def _open_call(session: Session, call_id: int) -> CallRecord:
    call = session.scalar(select(CallRecord).where(CallRecord.id == call_id).with_for_update())
    if call is None:
        raise CorrectionError("no such call")
    if call.review_status != ReviewStatus.OPEN:
        raise CorrectionError(f"this call is not waiting for review (it is {call.review_status})")
    return call


def link_call(session: Session, *, call_id: int, visit_id: int, worker_id: int | None, actor: str, note: str,
              now: dt.datetime, tz: ZoneInfo) -> int:
    """Attach an unmatched call to a visit as that worker's arrival or departure.

    A call that already made an (unscheduled) attendance brings it along; a call that
    recorded nothing (unknown line, failed login) fills the worker's first missing end
    with the call's time. Either way the time stays ``phone``; it is location verified
    only if the call came from the visit's own home.
    """
    if len(note or "") > MAX_NOTE:
        raise CorrectionError(f"the note is longer than {MAX_NOTE} characters")
    call = _open_call(session, call_id)
    visit = _visit(session, visit_id)
    if visit.status == VisitStatus.CANCELLED:
        raise CorrectionError("the visit is cancelled")
    if abs(call.started_at - visit.planned_start) > dt.timedelta(hours=24):
        raise CorrectionError("the call is more than 24 hours from that visit")
    same_home = call.location_verified and call.resident_id == visit.resident_id
    wid = worker_id or call.worker_id
    if wid is None:
        raise CorrectionError("choose the worker who made this call")
    worker = _worker(session, wid)
    existing = _attendance_for(session, visit, worker)
    source = session.get(Attendance, call.attendance_id) if call.attendance_id else None
    if source is not None and source.visit_id not in (None, visit.id):
        raise CorrectionError("this call's attendance already belongs to another visit")
    if source is not None and source.worker_id != worker.id:
        raise CorrectionError("this call was logged by another worker; choose that worker")
    before = attendance_state(existing or source, tz)

    if source is not None and source.visit_id == visit.id:
        att = source
    elif source is not None and existing is None:
        att = source  # the unscheduled attendance moves onto the visit
        att.visit_id, att.kind = visit.id, _kind_for(visit, worker.id)
        if att.resident_id != visit.resident_id:
            att.resident_id = visit.resident_id
            att.arrival_verified = att.departure_verified = False
    elif source is not None and existing is not None:
        att = existing  # merge the unscheduled ends into the visit's attendance
        for end in ("arrival", "departure"):
            if getattr(att, f"{end}_at") is None and getattr(source, f"{end}_at") is not None:
                for suffix in ("at", "method", "verified", "uniqueid", "entered_at"):
                    setattr(att, f"{end}_{suffix}", getattr(source, f"{end}_{suffix}"))
                if source.resident_id != visit.resident_id:
                    setattr(att, f"{end}_verified", False)
        for other in session.scalars(select(CallRecord).where(CallRecord.attendance_id == source.id)):
            other.attendance_id = att.id
        session.flush()
        # The unique uniqueid columns: clear the source's before it goes.
        source.arrival_uniqueid = source.departure_uniqueid = None
        session.flush()
        session.delete(source)
    else:
        att = existing
        if att is None:
            att = Attendance(visit_id=visit.id, resident_id=visit.resident_id, worker_id=worker.id,
                             kind=_kind_for(visit, worker.id))
            att.worker = worker
            session.add(att)
        if att.arrival_at is None:
            end = "arrival"
        elif att.departure_at is None:
            end = "departure"
        else:
            raise CorrectionError("this worker already has an arrival and a departure on that visit")
        if end == "departure" and att.arrival_at is not None and call.started_at < att.arrival_at:
            raise CorrectionError("the call is before the recorded arrival")
        setattr(att, f"{end}_at", call.started_at)
        setattr(att, f"{end}_method", Method.PHONE)
        setattr(att, f"{end}_verified", same_home)
        setattr(att, f"{end}_uniqueid", call.uniqueid)
        setattr(att, f"{end}_entered_at", None)
    if (att.arrival_at is not None and att.departure_at is not None and att.departure_at < att.arrival_at):
        raise CorrectionError("linking would put the departure before the arrival")
    att.updated_at = now
    visit.updated_at = now
    session.flush()
    call.review_status, call.reviewed_by, call.reviewed_at = ReviewStatus.LINKED, actor, now
    call.review_note = (note or "").strip()
    call.visit_id, call.attendance_id = visit.id, att.id
    if call.worker_id is None:
        call.worker_id = worker.id
    _audit(session, actor=actor, action="link_call", entity="visit", entity_id=visit.visit_ref, before=before,
           after={**attendance_state(att, tz), "call": call.id}, reason="", note=call.review_note, now=now)
    return att.id


def reject_call(session: Session, *, call_id: int, reason: str, note: str, actor: str, now: dt.datetime) -> None:
    reason, note = check_reason(reason, note)
    call = _open_call(session, call_id)
    call.review_status, call.reviewed_by, call.reviewed_at = ReviewStatus.REJECTED, actor, now
    call.review_note = REASONS[reason] + (f": {note}" if note else "")
    _audit(session, actor=actor, action="reject_call", entity="call", entity_id=str(call.id),
           before={"review_status": ReviewStatus.OPEN}, after={"review_status": ReviewStatus.REJECTED},
           reason=reason, note=note, now=now)
