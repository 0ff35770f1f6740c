"""Key-safe codes: sealed, in a table of their own, opened only by an audited "reveal".

Spec 004 §14.15: a code must never sit beside the identity it opens. ``residents`` holds
only the key safe's *reference* (where it is, which one); the code lives here, sealed
with :class:`ivr.sealed.Sealer` under ``keysafe:resident:<id>`` so a value copied to
another resident's row does not open. Nothing here decides *who* may reveal (the web
layer checks the user's key-safe permission); everything here that opens a code writes
an :class:`~ivr.models.AuditEntry` in the same transaction, so a code is never shown
without a record of who saw it and when.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from ivr.models import AuditEntry, Base, Resident, UTCDateTime
from ivr.sealed import Sealer

MAX_CODE = 20


class KeySafeError(ValueError):
    """A code that cannot be stored or shown; the message says why."""


class KeySafeCode(Base):
    __tablename__ = "keysafe_codes"

    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True)
    sealed_code: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(80))
    set_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


def context(resident_id: int) -> str:
    return f"keysafe:resident:{resident_id}"


def check_code(code: str) -> str:
    code = code.strip()
    if not code or len(code) > MAX_CODE or not code.isprintable():
        raise KeySafeError(f"a key-safe code is 1 to {MAX_CODE} printable characters")
    return code


def _resident(session: Session, resident_id: int) -> Resident:
    r = session.get(Resident, resident_id)
    if r is None:
        raise KeySafeError("no such resident")
    return r


def has_code(session: Session, resident_id: int) -> KeySafeCode | None:
    return session.get(KeySafeCode, resident_id)


def set_code(session: Session, sealer: Sealer, resident_id: int, code: str | None, *, actor: str,
             now: dt.datetime) -> None:
    """Store (or, with ``None``/``""``, remove) the code; the audit says it changed, never what to."""
    r = _resident(session, resident_id)
    row = session.get(KeySafeCode, resident_id)
    had = row is not None
    if code:
        sealed = sealer.seal(check_code(code), context=context(resident_id))
        if row is None:
            session.add(KeySafeCode(resident_id=resident_id, sealed_code=sealed, set_by=actor, set_at=now))
        else:
            row.sealed_code, row.set_by, row.set_at = sealed, actor, now
        action = "keysafe_set"
    elif row is not None:
        session.delete(row)
        action = "keysafe_remove"
    else:
        return
    session.add(AuditEntry(at=now, actor=actor, action=action, entity="resident", entity_id=r.reference,
                           before=json.dumps({"keysafe_code": "set" if had else ""}),
                           after=json.dumps({"keysafe_code": "changed" if code else ""})))


def reveal(session: Session, sealer: Sealer, resident_id: int, *, actor: str, now: dt.datetime,
           note: str = "") -> str:
    """The code in clear, with an audit entry ``keysafe_reveal`` written in the same transaction."""
    r = _resident(session, resident_id)
    row = session.get(KeySafeCode, resident_id)
    if row is None:
        raise KeySafeError("no key-safe code is held for this resident")
    code = sealer.open(row.sealed_code, context=context(resident_id))
    session.add(AuditEntry(at=now, actor=actor, action="keysafe_reveal", entity="resident", entity_id=r.reference,
                           note=note[:1000]))
    return code


def reveals(session: Session, resident_ref: str, limit: int = 20) -> list[AuditEntry]:
    """Who saw the code and when, newest first (shown beside the reveal button)."""
    return list(session.scalars(select(AuditEntry).where(
        AuditEntry.entity == "resident", AuditEntry.entity_id == resident_ref,
        AuditEntry.action.in_(("keysafe_reveal", "keysafe_set", "keysafe_remove")))
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)))
