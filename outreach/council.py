"""The commissioners' view (spec §5.19): one funder's planned visits for the week ahead, its live
missed and late visits, and the contract-monitoring figures for its packages. Read-only.

A commissioner is a ``web_users`` row with role ``commissioner`` and an
:class:`OutsideScope` naming one funder; every query here filters on that funder, taken
from the scope and never from the request. A funder listed in ``[council] pseudonymise``
sees each resident as a stable pseudonym (a keyed hash of the resident's id under the
site key, so it cannot be reversed by trying ids) and no name or address.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ivr.models import Attendance, AuditEntry, Resident, Visit, VisitStatus
from outreach.family import OutreachError
from outreach.models import OutsideScope
from scheduler.models import Alert, AlertKind, AlertStatus
from web import auth
from web.models import Role, User

LIVE_KINDS = (AlertKind.LATE, AlertKind.MISSED)
LIVE_HOURS = 24


def funder_of(session: Session, user_id: int) -> str | None:
    row = session.get(OutsideScope, user_id)
    user = session.get(User, user_id)
    if row is None or user is None or user.role != Role.COMMISSIONER or not row.funder:
        return None
    return row.funder


def funders(session: Session) -> list[str]:
    return [f for f in session.scalars(select(Resident.funder).distinct().order_by(Resident.funder)) if f]


def commissioners(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(User.id, User.username, User.active, User.last_login_at, OutsideScope.funder)
                           .join(OutsideScope, OutsideScope.user_id == User.id)
                           .where(User.role == Role.COMMISSIONER).order_by(User.username)).all()
    return [dict(id=r.id, username=r.username, active=r.active, last_login_at=r.last_login_at, funder=r.funder)
            for r in rows]


def add_commissioner(session: Session, *, username: str, funder: str, password: str, actor: str,
                     now: dt.datetime) -> int:
    if funder not in funders(session):
        raise OutreachError("choose a funder that has residents")
    user_id = auth.add_user(session, username, Role.COMMISSIONER, password, allowed=(Role.COMMISSIONER,))
    session.add(OutsideScope(user_id=user_id, funder=funder))
    session.add(AuditEntry(at=now, actor=actor, action="add_commissioner", entity="user", entity_id=str(user_id),
                           after=f'{{"username": "{username}", "funder": "{funder}"}}'))
    return user_id


def pseudonym(key: bytes, resident_id: int) -> str:
    return "P-" + hmac.new(key, f"resident:{resident_id}".encode(), hashlib.sha256).hexdigest()[:8].upper()


class Shown:
    """How a resident is shown to this funder: name and reference, or a pseudonym only."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key

    def __call__(self, r: Any) -> dict[str, str]:
        if self.key is not None:
            return {"resident": pseudonym(self.key, r.id), "reference": ""}
        return {"resident": r.name, "reference": r.reference}


def _visit_rows(session: Session, q: Any, shown: Shown) -> list[dict[str, Any]]:
    rows = session.execute(q).all()
    ids = [v.id for v, _ in rows]
    first: dict[int, Any] = {}
    if ids:
        first = dict(session.execute(select(Attendance.visit_id, func.min(Attendance.arrival_at))
                                     .where(Attendance.visit_id.in_(ids)).group_by(Attendance.visit_id)).all())
    return [dict(id=v.id, resident_id=r.id, planned_start=v.planned_start, planned_end=v.planned_end,
                 workers_required=v.workers_required, time_critical=v.time_critical,
                 cancelled=v.status == VisitStatus.CANCELLED, arrived=first.get(v.id), **shown(r))
            for v, r in rows]


def week_ahead(session: Session, funder: str, now: dt.datetime, shown: Shown, limit: int = 2000
               ) -> list[dict[str, Any]]:
    q = (select(Visit, Resident).join(Resident, Resident.id == Visit.resident_id)
         .where(Resident.funder == funder, Visit.planned_end >= now,
                Visit.planned_start < now + dt.timedelta(days=7))
         .order_by(Visit.planned_start, Visit.id).limit(limit))
    return _visit_rows(session, q, shown)


def resident_visits(session: Session, funder: str, resident_id: int, now: dt.datetime, shown: Shown
                    ) -> tuple[dict[str, str], list[dict[str, Any]]] | None:
    """One of the funder's residents: the last seven days and the next seven. None outside the scope."""
    r = session.get(Resident, resident_id)
    if r is None or r.funder != funder:
        return None
    q = (select(Visit, Resident).join(Resident, Resident.id == Visit.resident_id)
         .where(Visit.resident_id == resident_id, Visit.planned_start >= now - dt.timedelta(days=7),
                Visit.planned_start < now + dt.timedelta(days=7)).order_by(Visit.planned_start))
    return shown(r), _visit_rows(session, q, shown)


def live_alerts(session: Session, funder: str, now: dt.datetime, shown: Shown) -> list[dict[str, Any]]:
    """Unresolved late and missed visits of the funder's residents raised in the last day."""
    rows = session.execute(
        select(Alert, Resident, Visit).join(Resident, Resident.id == Alert.resident_id)
        .outerjoin(Visit, Visit.id == Alert.visit_id)
        .where(Resident.funder == funder, Alert.kind.in_(LIVE_KINDS), Alert.status != AlertStatus.RESOLVED,
               Alert.raised_at >= now - dt.timedelta(hours=LIVE_HOURS))
        .order_by(Alert.severity.desc(), Alert.due_at)).all()
    return [dict(kind=a.kind, status=a.status, due_at=a.due_at, resident_id=r.id,
                 planned_start=v.planned_start if v else None, planned_end=v.planned_end if v else None, **shown(r))
            for a, r, v in rows]
