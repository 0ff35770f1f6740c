"""Lateness notices (spec §5.26): who is told, when, how, and what happened — one notice per visit.

A visit is due a notice when its worker is not on site by planned start + N minutes
(N per resident, default 15, and always at least a minute before the office's "late"
alert) and the resident agreed. :func:`plan` writes the one ``lateness_notices`` row
per visit (UNIQUE ``visit_id``; ``INSERT … ON CONFLICT DO NOTHING``, so two servers
store one) with the decision: ``pending`` with a target, or ``skipped`` with why (quiet
hours, do not call, no number, processing restricted, found too late). :func:`claim`
hands a due notice to one sender, but first looks again: a worker who arrived since
cancels it. Outcomes (:func:`record_attempt`, :func:`record_dialog`) move it on and
retry a call nobody answered. Every step is a :class:`NoticeEvent`, shown on the visit
page.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ivr.models import Attendance, Resident, ResidentContact, ResidentLine, Visit, VisitStatus
from outreach.config import NoticesConfig
from outreach.models import LatenessNotice, NoticeChannel, NoticeEvent, NoticePreference, NoticeStatus
from outreach.preferences import Preferences, effective
from scheduler.rules import MINUTE, Rules

# A notice found more than this long after it fell due is not sent (the server was down):
# by then the office's own "late" alert and its call are the right way to reach them.
STALE_AFTER = dt.timedelta(minutes=20)
SENDING_STALE = dt.timedelta(minutes=10)
LONGEST = 120  # lateness_minutes' upper bound (the table's check constraint)
ANSWERED = "answered; playing the message"


def notice_after(prefs: Preferences, time_critical: bool, rules: Rules) -> dt.timedelta:
    """N minutes after planned start, but at least one minute before the "late" alert."""
    late = rules.late_after(time_critical)
    return max(MINUTE, min(prefs.lateness_minutes * MINUTE, late - MINUTE))


@dataclasses.dataclass(frozen=True)
class Decision:
    channel: str
    target: str
    status: str
    note: str


def decide(prefs: Preferences, *, restricted: bool, landline: str | None, contact: ResidentContact | None,
           due_at: dt.datetime, now: dt.datetime, tz: ZoneInfo) -> Decision:
    """How (or why not) this resident is told. Pure: the tests call it with every case."""
    channel = prefs.lateness_channel
    calling = channel in (NoticeChannel.CALL_RESIDENT, NoticeChannel.CALL_CONTACT)

    def skip(why: str) -> Decision:
        return Decision(channel, "", NoticeStatus.SKIPPED, why)

    if restricted:
        return skip("not sent: processing restricted for this resident")
    if now - due_at > STALE_AFTER:
        return skip(f"not sent: found {int((now - due_at) / MINUTE)} min after it fell due (server down?)")
    if calling and prefs.do_not_call:
        return skip("not sent: do not call")
    if calling and prefs.in_quiet_hours(now.astimezone(tz)):
        return skip("not sent: quiet hours")
    if channel == NoticeChannel.CALL_RESIDENT:
        if not landline:
            return skip("not sent: no landline registered")
        return Decision(channel, landline, NoticeStatus.PENDING, "call to the resident's landline planned")
    if contact is None:
        return skip("not sent: the named contact is no longer on file")
    if channel == NoticeChannel.CALL_CONTACT:
        number = contact.phone_e164 or contact.phone2_e164
        if not number:
            return skip("not sent: the named contact has no phone number")
        return Decision(channel, number, NoticeStatus.PENDING, "call to the named contact planned")
    if "@" not in contact.email:
        return skip("not sent: the named contact has no e-mail address")
    return Decision(channel, contact.email.strip(), NoticeStatus.PENDING, "e-mail to the named contact planned")


def _insert(session: Session, values: dict[str, Any]) -> int | None:
    dialect = session.get_bind().dialect.name
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(LatenessNotice).values(**values)
    ins = ins.on_conflict_do_nothing(index_elements=["visit_id"])
    return session.execute(ins.returning(LatenessNotice.id)).scalar_one_or_none()


def _event(session: Session, notice_id: int, at: dt.datetime, event: str, note: str) -> None:
    session.add(NoticeEvent(notice_id=notice_id, at=at, event=event, note=note[:1000]))


def candidates(session: Session, now: dt.datetime) -> list[Any]:
    """Visits of consenting residents that have begun, with no arrival yet and no notice yet."""
    arrived = exists().where(Attendance.visit_id == Visit.id, Attendance.arrival_at.is_not(None),
                             Attendance.arrival_at <= now)
    noticed = exists().where(LatenessNotice.visit_id == Visit.id)
    return list(session.execute(
        select(Visit.id, Visit.resident_id, Visit.planned_start, Visit.planned_end, Visit.time_critical)
        .join(NoticePreference, and_(NoticePreference.resident_id == Visit.resident_id,
                                     NoticePreference.lateness_consent.is_(True)))
        .where(Visit.status == VisitStatus.SCHEDULED, Visit.planned_start <= now,
               Visit.planned_start >= now - (LONGEST * MINUTE + STALE_AFTER), Visit.planned_end > now,
               ~arrived, ~noticed)
        .order_by(Visit.planned_start, Visit.id)).all())


def plan(session: Session, now: dt.datetime, cfg: NoticesConfig, rules: Rules, tz: ZoneInfo) -> list[int]:
    """Write the notice (or the reason for none) of every visit that just became due one."""
    if not cfg.lateness_enabled:
        return []
    planned: list[int] = []
    for v in candidates(session, now):
        prefs = effective(session, v.resident_id)
        due_at = v.planned_start + notice_after(prefs, v.time_critical, rules)
        if due_at > now:
            continue
        resident = session.get(Resident, v.resident_id)
        landline = session.scalar(select(ResidentLine.e164).where(ResidentLine.resident_id == v.resident_id)
                                  .order_by(ResidentLine.id).limit(1))
        contact = session.get(ResidentContact, prefs.contact_id) if prefs.contact_id else None
        if contact is not None and contact.resident_id != v.resident_id:
            contact = None
        d = decide(prefs, restricted=bool(resident and resident.processing_restricted), landline=landline,
                   contact=contact, due_at=due_at, now=now, tz=tz)
        new_id = _insert(session, dict(visit_id=v.id, resident_id=v.resident_id, due_at=due_at, channel=d.channel,
                                       target=d.target, status=d.status, attempts=0, note=d.note,
                                       next_attempt_at=now if d.status == NoticeStatus.PENDING else None,
                                       created_at=now, updated_at=now))
        if new_id is None:
            continue  # another server planned it first
        _event(session, new_id, now, "planned" if d.status == NoticeStatus.PENDING else "skipped", d.note)
        planned.append(int(new_id))
    return planned


@dataclasses.dataclass(frozen=True)
class NoticeJob:
    notice_id: int
    visit_id: int
    channel: str
    target: str
    attempt: int
    planned_start: dt.datetime
    planned_end: dt.datetime


def claim(session: Session, now: dt.datetime, limit: int = 20) -> list[NoticeJob]:
    """Due notices, each claimed by one server; a worker who has arrived meanwhile cancels the notice."""
    for n in session.scalars(select(LatenessNotice).where(LatenessNotice.status == NoticeStatus.SENDING,
                                                          LatenessNotice.updated_at <= now - SENDING_STALE)):
        if n.note == ANSWERED:  # answered, but our FastAGI server never ran the message
            n.status, n.note = NoticeStatus.FAILED, "answered, but the message was never played"
            _event(session, n.id, now, "failed", n.note)
            continue
        n.status, n.next_attempt_at = NoticeStatus.PENDING, now
        _event(session, n.id, now, "interrupted", "the server placing the call stopped; tried again")
    session.flush()
    jobs = []
    rows = session.execute(select(LatenessNotice, Visit).join(Visit, Visit.id == LatenessNotice.visit_id)
                           .where(LatenessNotice.status == NoticeStatus.PENDING,
                                  LatenessNotice.next_attempt_at <= now)
                           .order_by(LatenessNotice.next_attempt_at, LatenessNotice.id).limit(limit)).all()
    for n, v in rows:
        arrived = session.scalar(select(Attendance.arrival_at).where(
            Attendance.visit_id == v.id, Attendance.arrival_at.is_not(None), Attendance.arrival_at <= now)
            .order_by(Attendance.arrival_at).limit(1))
        why = ("the worker arrived first" if arrived is not None else
               "the visit was cancelled" if v.status == VisitStatus.CANCELLED else
               "the visit's planned time is over" if v.planned_end <= now else "")
        if why:
            done = session.execute(update(LatenessNotice).where(LatenessNotice.id == n.id,
                                                                LatenessNotice.status == NoticeStatus.PENDING)
                                   .values(status=NoticeStatus.SKIPPED, note=f"not sent: {why}", updated_at=now))
            if done.rowcount == 1:  # type: ignore[attr-defined]
                _event(session, n.id, now, "cancelled", f"not sent: {why}")
            continue
        attempt = n.attempts + 1
        done = session.execute(update(LatenessNotice).where(LatenessNotice.id == n.id,
                                                            LatenessNotice.status == NoticeStatus.PENDING)
                               .values(status=NoticeStatus.SENDING, attempts=attempt, updated_at=now))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            continue
        what = "e-mailing the named contact" if n.channel == NoticeChannel.EMAIL_CONTACT else "calling"
        _event(session, n.id, now, "attempt", f"attempt {attempt}: {what}")
        jobs.append(NoticeJob(n.id, v.id, n.channel, n.target, attempt, v.planned_start, v.planned_end))
    return jobs


def record_attempt(session: Session, notice_id: int, *, answered: bool, outcome: str, now: dt.datetime,
                   cfg: NoticesConfig) -> None:
    """What the network said: answered (the dialog records the rest), or not, and then maybe again."""
    n = session.get(LatenessNotice, notice_id)
    if n is None or n.status not in (NoticeStatus.SENDING, NoticeStatus.PENDING):
        return
    n.updated_at = now
    if answered:
        _event(session, n.id, now, "answered", outcome)
        if n.channel == NoticeChannel.EMAIL_CONTACT:
            n.status, n.note = NoticeStatus.DELIVERED, "e-mail accepted by the mail server"
        elif n.status == NoticeStatus.SENDING:
            # Answered is not heard: the notice dialog's own record (played / hung up) follows.
            n.note = ANSWERED
        return
    _event(session, n.id, now, "not answered", outcome)
    if n.attempts < cfg.lateness_attempts:
        n.status, n.next_attempt_at = NoticeStatus.PENDING, now + cfg.lateness_retry_minutes * MINUTE
        n.note = f"attempt {n.attempts} {outcome}; trying again"
    else:
        failed = outcome.startswith(("failed", "refused", "unreachable", "SMTP", "Connection", "OSError"))
        n.status = NoticeStatus.FAILED if failed else NoticeStatus.UNANSWERED
        n.note = f"gave up after {n.attempts} attempt(s): {outcome}"


def record_dialog(session: Session, notice_id: int, outcome: str, detail: str, now: dt.datetime) -> None:
    """The notice dialog's own record: the message played (delivered), or the callee hung up first."""
    n = session.get(LatenessNotice, notice_id)
    if n is None:
        return
    note = {"played": "message played", "hung_up": "hung up before the end of the message"}.get(outcome, outcome)
    _event(session, n.id, now, outcome.replace("_", " "), f"{note}{'; ' + detail if detail else ''}")
    if n.status in (NoticeStatus.SENDING, NoticeStatus.PENDING, NoticeStatus.DELIVERED):
        n.status = NoticeStatus.DELIVERED if outcome in ("played", "hung_up") else NoticeStatus.FAILED
        n.note, n.updated_at = note, now


def history(session: Session, visit_id: int) -> dict[str, Any] | None:
    """The visit's notice and its steps, for the visit page (None: no notice was due)."""
    n = session.scalar(select(LatenessNotice).where(LatenessNotice.visit_id == visit_id))
    if n is None:
        return None
    events = session.scalars(select(NoticeEvent).where(NoticeEvent.notice_id == n.id)
                             .order_by(NoticeEvent.at, NoticeEvent.id)).all()
    return dict(id=n.id, status=n.status, channel=NoticeChannel.LABELS.get(n.channel, n.channel), due_at=n.due_at,
                attempts=n.attempts, note=n.note, events=[dict(at=e.at, event=e.event, note=e.note) for e in events])
