"""Missed-visit notices (spec §3.44): the family contacts who agreed, and the funder's brokerage.

They ride the alert delivery outbox (``alert_deliveries``): when
:func:`scheduler.delivery.plan_deliveries` claims a new *missed* alert (once, whatever
the number of servers), it calls :func:`plan` in the same transaction, which writes one
pending e-mail attempt per recipient with its own purpose; sending, logging and retrying
with back-off are then the outbox's, exactly as for the office's e-mail.

What the e-mail says is decided here and nowhere else: what happened (no care worker
arrived for the visit planned at a local time), what the office is doing, how to reach
it. The subject carries nothing personal; the family e-mail names nobody (the contact
knows whose visit it is); the brokerage e-mail carries only the resident's reference,
which the brokerage can match to its case.
"""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.clock import format_local
from ivr.models import Resident, ResidentContact
from outreach.config import NoticesConfig
from scheduler.models import Alert, AlertAction, AlertStatus

FAMILY = "notice_family"
BROKERAGE = "notice_brokerage"
PURPOSES = (FAMILY, BROKERAGE)
SUBJECT = "Care visit update from {provider}"


def recipients(session: Session, resident_id: int | None, cfg: NoticesConfig) -> list[tuple[str, str]]:
    """(purpose, address) for one resident's missed visit: consenting contacts, then the brokerage.

    A resident whose processing is restricted (UK GDPR art. 18) gets no family notice; the
    brokerage is still told, because telling the commissioner of a missed visit is part of
    the care contract itself (spec §3.44), not optional processing.
    """
    if resident_id is None:
        return []
    resident = session.get(Resident, resident_id)
    if resident is None:
        return []
    out: list[tuple[str, str]] = []
    if not resident.processing_restricted:
        seen: set[str] = set()
        for c in session.scalars(select(ResidentContact).where(
                ResidentContact.resident_id == resident_id, ResidentContact.notify_missed.is_(True))
                .order_by(ResidentContact.position, ResidentContact.id)):
            email = c.email.strip()
            if email and email.lower() not in seen:
                seen.add(email.lower())
                out.append((FAMILY, email))
    brokerage = cfg.brokerage_email.get(resident.funder or "")
    if brokerage:
        out.append((BROKERAGE, brokerage))
    return out


def plan(session: Session, alert_id: int, now: dt.datetime, cfg: NoticesConfig,
         add_attempt: Any) -> int:
    """Write the notice attempts for one just-claimed missed alert; how many were planned.

    An alert the same pass already settled (the worker's arrival was caught up late) was
    not a missed visit after all: nobody outside is told.
    """
    if not cfg.missed_enabled:
        return 0
    alert = session.get(Alert, alert_id)
    if alert is None or (alert.status == AlertStatus.RESOLVED and alert.resolved_by_system):
        return 0
    targets = recipients(session, alert.resident_id, cfg)
    for purpose, address in targets:
        add_attempt(session, alert_id, purpose, "email", address, now)
    family = sum(1 for p, _ in targets if p == FAMILY)
    brokerage = "brokerage" if any(p == BROKERAGE for p, _ in targets) else "no brokerage address configured"
    session.add(AlertAction(alert_id=alert_id, at=now, actor="system", action="notices",
                            note=f"missed-visit notice e-mails planned: {family} family contact(s), {brokerage}"))
    return len(targets)


def compose(*, purpose: str, target: str, alert_id: int, resident_ref: str, visit_start: dt.datetime | None,
            visit_end: dt.datetime | None, raised_at: dt.datetime | None, email_from: str, timezone: str,
            cfg: NoticesConfig) -> EmailMessage:
    """The notice e-mail: what happened, what the office is doing, how to reach it."""
    tz = ZoneInfo(timezone)
    msg = EmailMessage()
    msg["Subject"] = SUBJECT.format(provider=cfg.provider_name)
    msg["From"] = email_from
    msg["To"] = target
    msg["X-Carecall-Notice"] = f"missed-visit {alert_id}"
    if visit_start is not None and visit_end is not None:
        when = (f"{format_local(visit_start, tz, '%A %-d %B %Y')}, "
                f"{format_local(visit_start, tz, '%H:%M')}–{format_local(visit_end, tz, '%H:%M')}")
    else:
        when = "today"
    alerted = format_local(raised_at, tz, "%H:%M") if raised_at is not None else "straight away"
    phone = f" on {cfg.office_phone}" if cfg.office_phone else ""
    if purpose == BROKERAGE:
        lines = [
            "Missed visit notification (service specification 3.44)",
            "",
            f"Provider:   {cfg.provider_name}",
            f"Resident:   {resident_ref} (provider's reference)",
            f"Visit:      {when}",
            "What happened: no care worker logged an arrival by the planned end of the visit.",
            "",
            f"What we are doing: the office was alerted at {alerted} and is contacting the resident and the care",
            "worker to arrange the visit as soon as possible or agree what happens instead; any risk found is",
            "escalated under the Missed Visits procedure.",
            "",
            f"Contact the office{phone} for details.",
        ]
    else:
        lines = [
            f"This is {cfg.provider_name}.",
            "",
            f"A care visit planned for {when} has not happened as planned: no care worker had arrived by the",
            "end of the planned time.",
            "",
            f"What we are doing: our office was alerted at {alerted} and is contacting the care worker and your",
            "relative to arrange the visit as soon as possible, or to agree what happens instead.",
            "",
            f"If you are worried or can help, please call the office{phone}.",
            "",
            "You are receiving this because you asked to be told about missed visits. Ask the office to stop",
            "these e-mails at any time.",
        ]
    msg.set_content("\n".join(lines) + "\n")
    return msg
