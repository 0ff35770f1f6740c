"""The family view's rules (spec §5.24, §3.46): invitations, what a family user may see, feedback.

Blocking database work (call inside ``runtime.run_db``). A family user is a ``web_users``
row with role ``family`` and an :class:`OutsideScope` naming one resident; every read
here takes that resident id from the scope, never from the request, so another
resident's id in a URL finds nothing.

Invitation links carry 256 random bits; only their SHA-256 is stored, they expire, and
they work once. The password is set by the invited person and hashed with argon2 by
:mod:`web.auth`, like an office user's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.models import Attendance, Resident, ResidentContact, Visit, VisitStatus, VisitWorker, Worker
from outreach.models import FamilyInvite, Feedback, FeedbackKind, FeedbackStatus, OutsideScope
from web import auth
from web.models import Role, User

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")
MAX_FEEDBACK = 4000


class OutreachError(ValueError):
    """A request that cannot be done as asked; the message says why (shown to the user)."""


@dataclasses.dataclass(frozen=True)
class Scope:
    role: str
    resident_id: int | None
    funder: str | None


def scope_of(session: Session, user_id: int) -> Scope | None:
    row = session.get(OutsideScope, user_id)
    user = session.get(User, user_id)
    if row is None or user is None or user.role not in Role.OUTSIDE:
        return None
    return Scope(user.role, row.resident_id, row.funder)


def resident_of(session: Session, user_id: int) -> int | None:
    """The one resident a family user may see, or None (no scope: sees nothing)."""
    scope = scope_of(session, user_id)
    return scope.resident_id if scope is not None and scope.role == Role.FAMILY else None


# --- invitations ------------------------------------------------------------------------


def invite(session: Session, *, contact_id: int, resident_id: int, actor: str, now: dt.datetime,
           hours: int) -> tuple[int, str, str]:
    """A new one-time invitation for a contact of this resident: (invite id, token, e-mail)."""
    contact = session.get(ResidentContact, contact_id)
    if contact is None or contact.resident_id != resident_id:
        raise OutreachError("no such contact for this resident")
    email = contact.email.strip()
    if not EMAIL.match(email):
        raise OutreachError("this contact has no valid e-mail address; add one first")
    token = secrets.token_urlsafe(32)
    row = FamilyInvite(token_hash=auth.digest(token), resident_id=resident_id, contact_id=contact_id, email=email,
                       created_by=actor, created_at=now, expires_at=now + dt.timedelta(hours=hours))
    session.add(row)
    session.flush()
    return row.id, token, email


def record_invite_email(session: Session, invite_id: int, error: str) -> None:
    row = session.get(FamilyInvite, invite_id)
    if row is None:
        return
    row.email_attempts += 1
    row.email_status = "failed" if error else "sent"
    row.email_error = error[:500]


def pending_invite(session: Session, token: str, now: dt.datetime) -> FamilyInvite | None:
    if not token or len(token) > 100:
        return None
    row = session.scalar(select(FamilyInvite).where(FamilyInvite.token_hash == auth.digest(token)))
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    return row


def accept(session: Session, *, token: str, username: str, password: str, now: dt.datetime) -> User:
    """Use an invitation: a family user scoped to its resident, with the password given."""
    row = pending_invite(session, token, now)
    if row is None:
        raise OutreachError("this invitation link has expired or was already used; ask the office for a new one")
    user_id = auth.add_user(session, username, Role.FAMILY, password, allowed=(Role.FAMILY,))
    session.add(OutsideScope(user_id=user_id, resident_id=row.resident_id, contact_id=row.contact_id))
    row.used_at, row.user_id = now, user_id
    session.flush()
    user = session.get(User, user_id)
    assert user is not None
    return user


def family_users(session: Session, resident_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(User.id, User.username, User.active, User.last_login_at, ResidentContact.name)
        .join(OutsideScope, OutsideScope.user_id == User.id)
        .outerjoin(ResidentContact, ResidentContact.id == OutsideScope.contact_id)
        .where(OutsideScope.resident_id == resident_id, User.role == Role.FAMILY).order_by(User.username)).all()
    return [dict(id=r.id, username=r.username, active=r.active, last_login_at=r.last_login_at,
                 contact=r.name or "") for r in rows]


def invites(session: Session, resident_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(FamilyInvite, ResidentContact.name).join(ResidentContact, ResidentContact.id == FamilyInvite.contact_id)
        .where(FamilyInvite.resident_id == resident_id).order_by(FamilyInvite.id.desc()).limit(20)).all()
    return [dict(id=i.id, contact=name, email=i.email, created_at=i.created_at, expires_at=i.expires_at,
                 used_at=i.used_at, email_status=i.email_status, email_error=i.email_error) for i, name in rows]


def set_family_active(session: Session, resident_id: int, user_id: int, active: bool) -> None:
    scope = session.get(OutsideScope, user_id)
    user = session.get(User, user_id)
    if scope is None or user is None or scope.resident_id != resident_id or user.role != Role.FAMILY:
        raise OutreachError("no such family user for this resident")
    user.active = active
    if not active:
        from web.models import WebSession

        session.query(WebSession).filter(WebSession.user_id == user_id).delete()


# --- what a family user sees -------------------------------------------------------------


def week_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def first_name(name: str) -> str:
    return (name.split() or ["—"])[0]


def week(session: Session, resident_id: int, monday: dt.date, tz: ZoneInfo, now: dt.datetime) -> list[dict[str, Any]]:
    """The resident's visits in the local week from ``monday``: planned and actual times, carers'
    first names, and whether each visit happened. Nothing about other residents or workers' numbers."""
    start = dt.datetime.combine(monday, dt.time(), tz).astimezone(dt.UTC)
    end = dt.datetime.combine(monday + dt.timedelta(days=7), dt.time(), tz).astimezone(dt.UTC)
    visits = session.scalars(select(Visit).where(Visit.resident_id == resident_id, Visit.planned_start >= start,
                                                 Visit.planned_start < end).order_by(Visit.planned_start)).all()
    ids = [v.id for v in visits]
    assigned: dict[int, list[str]] = {}
    came: dict[int, list[tuple[Any, Any, str]]] = {}
    if ids:
        for vid, name in session.execute(select(VisitWorker.visit_id, Worker.name).join(Worker)
                                         .where(VisitWorker.visit_id.in_(ids)).order_by(VisitWorker.position)):
            assigned.setdefault(vid, []).append(first_name(name))
        for a, name in session.execute(select(Attendance, Worker.name).join(Worker, Worker.id == Attendance.worker_id)
                                       .where(Attendance.visit_id.in_(ids)).order_by(Attendance.arrival_at)):
            came.setdefault(a.visit_id, []).append((a.arrival_at, a.departure_at, first_name(name)))
    out = []
    for v in visits:
        atts = came.get(v.id, [])
        arrivals = [a for a, _, _ in atts if a is not None]
        departures = [d for _, d, _ in atts if d is not None]
        if v.status == VisitStatus.CANCELLED:
            state, label = "cancelled", "Cancelled"
        elif arrivals and (departures or now >= v.planned_end):
            state, label = "done", "Happened"
        elif arrivals:
            state, label = "on-site", "Carer there now"
        elif now >= v.planned_end:
            state, label = "missed", "Did not happen"
        elif now >= v.planned_start:
            state, label = "late", "Not arrived yet"
        else:
            state, label = "due", "Planned"
        names = [n for _, _, n in atts if n] or assigned.get(v.id, [])
        out.append(dict(planned_start=v.planned_start, planned_end=v.planned_end,
                        arrived=min(arrivals) if arrivals else None, left=max(departures) if departures else None,
                        workers=list(dict.fromkeys(names)), state=state, label=label))
    return out


def resident_label(session: Session, resident_id: int) -> str:
    """The resident's first name: enough for their family to know whose page this is."""
    r = session.get(Resident, resident_id)
    return first_name(r.name) if r is not None else ""


# --- feedback ----------------------------------------------------------------------------


def add_feedback(session: Session, *, resident_id: int, user_id: int, kind: str, message: str,
                 now: dt.datetime) -> int:
    errors = []
    if kind not in FeedbackKind.ALL:
        errors.append("choose compliment, concern or complaint")
    if not message.strip():
        errors.append("write your message")
    elif len(message) > MAX_FEEDBACK:
        errors.append(f"keep the message under {MAX_FEEDBACK} characters")
    if errors:
        raise OutreachError("; ".join(errors))
    row = Feedback(resident_id=resident_id, user_id=user_id, kind=kind, message=message.strip(), created_at=now,
                   status=FeedbackStatus.NEW, reply="")
    session.add(row)
    session.flush()
    return row.id


def feedback_for(session: Session, resident_id: int) -> list[Feedback]:
    return list(session.scalars(select(Feedback).where(Feedback.resident_id == resident_id)
                                .order_by(Feedback.id.desc()).limit(100)))


def feedback_item(session: Session, feedback_id: int, resident_id: int | None = None) -> Feedback | None:
    """One item; with ``resident_id`` only if it belongs to that resident (the family's scope)."""
    row = session.get(Feedback, feedback_id)
    if row is None or (resident_id is not None and row.resident_id != resident_id):
        return None
    return row


def office_queue(session: Session, status: str) -> list[dict[str, Any]]:
    q = (select(Feedback, Resident.reference, User.username).join(Resident, Resident.id == Feedback.resident_id)
         .outerjoin(User, User.id == Feedback.user_id).order_by(Feedback.id.desc()).limit(300))
    if status:
        q = q.where(Feedback.status == status)
    return [dict(id=f.id, kind=f.kind, status=f.status, created_at=f.created_at, resident_ref=ref,
                 resident_id=f.resident_id, username=user or "", message=f.message, reply=f.reply)
            for f, ref, user in session.execute(q)]


def reply(session: Session, *, feedback_id: int, status: str, text: str, actor: str, now: dt.datetime) -> None:
    row = session.get(Feedback, feedback_id)
    if row is None:
        raise OutreachError("no such feedback")
    if status not in FeedbackStatus.ALL:
        raise OutreachError("choose a status")
    if len(text) > MAX_FEEDBACK:
        raise OutreachError(f"keep the reply under {MAX_FEEDBACK} characters")
    row.status = status
    if text.strip() and text.strip() != row.reply:
        row.reply, row.replied_by, row.replied_at = text.strip(), actor, now
