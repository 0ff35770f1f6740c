"""What office staff do with an alert: acknowledge, record a no-reply check, resolve.

Each call works in the caller's transaction, appends to ``alert_actions`` (who, when,
what, note) and refuses a transition the alert's state does not allow with
:class:`AlertActionError`, whose message can be shown to the user as it is. The row is
locked (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises
writers), so two people resolving at once get one success and one clear refusal.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import Alert, AlertAction, AlertCheck, AlertKind, AlertStatus, CheckStep


class AlertActionError(ValueError):
    """The action is not allowed for this alert now; the message says why."""


class AlertNotFound(AlertActionError):
    pass


def _locked(session: Session, alert_id: int) -> Alert:
    alert = session.scalars(select(Alert).where(Alert.id == alert_id).with_for_update()).one_or_none()
    if alert is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return alert


def _actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise AlertActionError("who did it must be given")
    return actor[:80]


def acknowledge(session: Session, alert_id: int, actor: str, note: str, now: dt.datetime,
                action: str = "acknowledged") -> None:
    """Someone has seen it and is dealing with it (stops the 15-minute escalation and the chain).

    ``action`` names how in the history ("accepted by phone" from the on-call call).
    """
    who = _actor(actor)
    alert = _locked(session, alert_id)
    if alert.status == AlertStatus.RESOLVED:
        raise AlertActionError(f"alert {alert_id} is already resolved")
    if alert.status == AlertStatus.ACKNOWLEDGED:
        raise AlertActionError(f"alert {alert_id} was already acknowledged by {alert.acknowledged_by}")
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_by = who
    alert.acknowledged_at = now
    session.add(AlertAction(alert_id=alert_id, at=now, actor=who, action=action, note=note.strip()))
    session.flush()


def resolve(session: Session, alert_id: int, actor: str, note: str, now: dt.datetime) -> None:
    """Closed, with what was done: the note is required because it is the evidence afterwards."""
    who = _actor(actor)
    note = (note or "").strip()
    if not note:
        raise AlertActionError("a note saying what was done is required to resolve an alert")
    alert = _locked(session, alert_id)
    if alert.status == AlertStatus.RESOLVED:
        by = "the system" if alert.resolved_by_system else alert.resolved_by
        raise AlertActionError(f"alert {alert_id} is already resolved (by {by})")
    if alert.acknowledged_at is None:
        alert.acknowledged_by = who
        alert.acknowledged_at = now
    alert.status = AlertStatus.RESOLVED
    alert.resolved_by = who
    alert.resolved_at = now
    alert.resolution_note = note
    alert.resolved_by_system = False
    session.add(AlertAction(alert_id=alert_id, at=now, actor=who, action="resolved", note=note))
    session.flush()


def record_check(session: Session, alert_id: int, step: str, actor: str, now: dt.datetime, note: str = "") -> None:
    """One step of the spec 14.3 no-reply checklist done (may be repeated, each is kept)."""
    who = _actor(actor)
    if step not in CheckStep.ALL:
        raise AlertActionError(f"unknown check {step!r}; expected one of {', '.join(CheckStep.ALL)}")
    alert = _locked(session, alert_id)
    if alert.kind not in AlertKind.SAFEGUARDING:
        raise AlertActionError(f"alert {alert_id} is a {alert.kind} alert; the checklist is for no-reply alerts")
    if alert.status == AlertStatus.RESOLVED:
        raise AlertActionError(f"alert {alert_id} is already resolved")
    session.add(AlertCheck(alert_id=alert_id, step=step, done_by=who, done_at=now, note=note.strip()))
    session.add(AlertAction(alert_id=alert_id, at=now, actor=who, action="check",
                            note=f"{CheckStep.LABELS[step]}" + (f": {note.strip()}" if note.strip() else "")))
    session.flush()
