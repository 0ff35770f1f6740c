"""Telling people by e-mail: the office, the second contact, the out-of-hours service.

Deliveries are an outbox in the database (``alert_deliveries``). The pass that raises
an alert does not send anything; :func:`plan_deliveries` claims each new alert once
(``UPDATE … WHERE deliveries_planned_at IS NULL``) and writes one pending attempt per
channel and target; :func:`claim_due` hands due attempts to exactly one server;
:func:`record_outcome` marks the attempt sent, or failed with its error plus a new
pending attempt after a back-off. Nothing is ever dropped: a server that dies while
sending leaves a ``sending`` row that is reclaimed as failed ("interrupted") and retried.

Sending itself is blocking (``smtplib``) and runs in a thread, never on the reactor and
never in the database pool. Phones are rung by the escalation chain
(:mod:`scheduler.chain`, through :mod:`agi.outbound`), whose delivery rows (channel
``voice``, purpose ``chain``) this module's claims leave alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import smtplib
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from carecall.config import ConfigError, Settings
from ivr.clock import format_local
from ivr.models import Resident, Visit
from outreach import missed
from outreach.config import NoticesConfig
from scheduler.models import (
    Alert,
    AlertAction,
    AlertDelivery,
    AlertKind,
    AlertStatus,
    DeliveryChannel,
    DeliveryPurpose,
    DeliveryStatus,
)

SYSTEM = "system"
KIND_TITLES = {
    AlertKind.LATE: "Late",
    AlertKind.MISSED: "Missed visit",
    AlertKind.NO_DEPARTURE: "No departure",
    AlertKind.NO_REPLY: "No reply",
    AlertKind.SHORT_VISIT: "Short visit",
    AlertKind.DOUBLE_UP_APART: "Double-up apart",
    AlertKind.FAILED_LOGIN: "Failed logins",
    AlertKind.SUBSTITUTE: "Substitute worker",
    AlertKind.UNSCHEDULED: "Unscheduled attendance",
    AlertKind.ALARM: "Lone-worker alarm",
}


# The old fire-and-forget AMI call (recorded "sent" once Asterisk queued it) was replaced by
# the escalation chain; a site still carrying these keys is told where they went.
MOVED_VOICE_KEYS = ("voice", "voice_kinds", "on_call_number", "second_contact_number", "out_of_hours_number",
                    "ami_host", "ami_port", "ami_username", "ami_secret", "voice_channel", "voice_context",
                    "voice_exten", "voice_priority", "voice_caller_id")


def _list(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"[alerts] {name} must be a list of strings")


@dataclasses.dataclass(frozen=True)
class DeliveryConfig:
    """``[alerts]`` delivery and escalation settings. Empty targets mean "not configured"."""

    office_email: str = ""
    email_by_funder: Mapping[str, str] = dataclasses.field(default_factory=dict)
    email_by_team: Mapping[str, str] = dataclasses.field(default_factory=dict)
    second_contact_email: str = ""
    out_of_hours_email: str = ""
    email_from: str = "carecall@localhost"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_timeout: float = 20.0
    # Retries and escalation.
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 900.0
    sending_stale_seconds: float = 600.0
    ack_escalate_minutes: float = 15.0
    no_reply_escalate_minutes: float = 30.0
    escalate_kinds: tuple[str, ...] = tuple(k for k in AlertKind.ALL if k not in AlertKind.INFORMATIONAL)
    base_url: str = "http://127.0.0.1:8080"
    timezone: str = "Europe/London"
    # ``[notices]``: missed-visit e-mails to family and brokerage ride this outbox (outreach.missed).
    notices: NoticesConfig = dataclasses.field(default_factory=NoticesConfig)

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        return cls.from_section(settings.section("alerts"), settings.base_url, settings.timezone,
                                settings.table("notices"))

    @classmethod
    def from_section(cls, section: Mapping[str, Any], base_url: str = "http://127.0.0.1:8080",
                     timezone: str = "Europe/London", notices: NoticesConfig | None = None) -> DeliveryConfig:
        """The ``[alerts]`` table's delivery keys (checked at start by scheduler/alerts_table.py)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {"base_url": base_url, "timezone": timezone, "notices": notices or NoticesConfig()}
        for key, value in section.items():
            if key in MOVED_VOICE_KEYS:
                raise ConfigError(f"[alerts] {key} is no longer used: phones are rung by the on-call chain, "
                                  "configured in [oncall] and [ami] (docs/alerts.md)")
            if key not in fields or key in ("base_url", "timezone", "notices"):
                continue  # the rules' own thresholds live in the same table
            kind = str(fields[key].type)
            try:
                if kind == "int":
                    value = int(value)
                elif kind == "float":
                    value = float(value)
                elif kind == "bool":
                    if not isinstance(value, bool):
                        raise ConfigError(f"[alerts] {key} must be true or false")
                elif kind.startswith("tuple"):
                    value = _list(value, key)
                    unknown = [k for k in value if k not in AlertKind.ALL]
                    if unknown:
                        raise ConfigError(f"[alerts] {key}: unknown alert kind(s) {', '.join(unknown)}")
                elif kind.startswith("Mapping"):
                    if not isinstance(value, dict):
                        raise ConfigError(f"[alerts] {key} must be a table of name = address")
                    value = {str(k): str(v) for k, v in value.items()}
                else:
                    value = str(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"[alerts] {key}: {exc}") from exc
            values[key] = value
        return cls(**values)

    def backoff(self, attempt: int) -> dt.timedelta:
        """30 s, 60 s, 120 s … capped: quick enough for a blip, gentle on a dead mail server."""
        return dt.timedelta(seconds=min(self.retry_max_seconds, self.retry_base_seconds * 2 ** max(0, attempt - 1)))

    def office_for(self, funder: str, team: str) -> str:
        return self.email_by_funder.get(funder) or self.email_by_team.get(team) or self.office_email


def _add_attempt(session: Session, alert_id: int, purpose: str, channel: str, target: str, now: dt.datetime,
                 attempt: int = 1, at: dt.datetime | None = None) -> None:
    session.execute(insert(AlertDelivery).values(
        alert_id=alert_id, purpose=purpose, channel=channel, target=target, attempt=attempt,
        status=DeliveryStatus.PENDING, error="", created_at=now, next_attempt_at=at or now))


def plan_deliveries(session: Session, now: dt.datetime, cfg: DeliveryConfig) -> int:
    """Write the first attempts for every alert not yet planned; each alert is claimed by one server."""
    rows = session.execute(
        select(Alert.id, Alert.kind, Resident.funder, Resident.team)
        .outerjoin(Resident, Resident.id == Alert.resident_id)
        .where(Alert.deliveries_planned_at.is_(None)).order_by(Alert.id).limit(500)).all()
    planned = 0
    for r in rows:
        claimed = session.execute(update(Alert).where(Alert.id == r.id, Alert.deliveries_planned_at.is_(None))
                                  .values(deliveries_planned_at=now))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue
        email = cfg.office_for(r.funder or "", r.team or "")
        if email:
            _add_attempt(session, r.id, DeliveryPurpose.RAISED, DeliveryChannel.EMAIL, email, now)
        if r.kind == AlertKind.MISSED:
            missed.plan(session, r.id, now, cfg.notices, _add_attempt)
        planned += 1
    return planned


def _escalate_to(session: Session, alert_id: int, purpose: str, email: str, now: dt.datetime, note: str) -> None:
    if email:
        _add_attempt(session, alert_id, purpose, DeliveryChannel.EMAIL, email, now)
    suffix = " (e-mail)" if email else " (no contact configured)"
    session.add(AlertAction(alert_id=alert_id, at=now, actor=SYSTEM, action="escalated", note=note + suffix))


def escalate(session: Session, now: dt.datetime, cfg: DeliveryConfig) -> list[dict[str, Any]]:
    """Not acknowledged in time → second contact; a no reply unresolved in time → out-of-hours contact."""
    out: list[dict[str, Any]] = []
    ack_before = now - dt.timedelta(minutes=cfg.ack_escalate_minutes)
    for r in session.execute(select(Alert.id, Alert.kind).where(
            Alert.status == AlertStatus.OPEN, Alert.escalated_at.is_(None), Alert.raised_at <= ack_before,
            Alert.kind.in_(cfg.escalate_kinds)).order_by(Alert.id)).all():
        done = session.execute(update(Alert).where(Alert.id == r.id, Alert.escalated_at.is_(None),
                                                   Alert.status == AlertStatus.OPEN).values(escalated_at=now))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            note = f"not acknowledged within {cfg.ack_escalate_minutes:g} min: second contact"
            _escalate_to(session, r.id, DeliveryPurpose.ESCALATED, cfg.second_contact_email, now, note)
            out.append({"event": "escalated", "id": r.id, "kind": r.kind, "note": note})
    nr_before = now - dt.timedelta(minutes=cfg.no_reply_escalate_minutes)
    for r in session.execute(select(Alert.id, Alert.kind).where(
            Alert.kind.in_(AlertKind.SAFEGUARDING), Alert.status != AlertStatus.RESOLVED,
            Alert.out_of_hours_at.is_(None),
            Alert.raised_at <= nr_before).order_by(Alert.id)).all():
        done = session.execute(update(Alert).where(Alert.id == r.id, Alert.out_of_hours_at.is_(None),
                                                   Alert.status != AlertStatus.RESOLVED)
                               .values(out_of_hours_at=now))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            note = f"no reply unresolved after {cfg.no_reply_escalate_minutes:g} min: out-of-hours contact"
            _escalate_to(session, r.id, DeliveryPurpose.OUT_OF_HOURS, cfg.out_of_hours_email, now, note)
            out.append({"event": "escalated", "id": r.id, "kind": r.kind, "note": note})
    return out


@dataclasses.dataclass(frozen=True)
class Job:
    """One claimed attempt, as plain data for a sender thread."""

    delivery_id: int
    alert_id: int
    channel: str
    target: str
    attempt: int
    purpose: str
    kind: str
    resident_ref: str
    due_at: dt.datetime
    detail: str
    # The visit's plan and the raise time: what a missed-visit notice tells family and brokerage.
    visit_start: dt.datetime | None = None
    visit_end: dt.datetime | None = None
    raised_at: dt.datetime | None = None


def claim_due(session: Session, now: dt.datetime, cfg: DeliveryConfig, limit: int = 50) -> list[Job]:
    """Due attempts, each claimed by exactly one server; stale claims of a dead server are retried."""
    stale = now - dt.timedelta(seconds=cfg.sending_stale_seconds)
    for r in session.execute(select(AlertDelivery.id).where(AlertDelivery.status == DeliveryStatus.SENDING,
                                                            AlertDelivery.channel == DeliveryChannel.EMAIL,
                                                            AlertDelivery.at <= stale).order_by(AlertDelivery.id)):
        record_outcome(session, r.id, False, "interrupted: the server sending it stopped", now, cfg)
    jobs: list[Job] = []
    rows = session.execute(
        select(AlertDelivery.id, AlertDelivery.alert_id, AlertDelivery.channel, AlertDelivery.target,
               AlertDelivery.attempt, AlertDelivery.purpose, Alert.kind, Alert.due_at, Alert.detail,
               Resident.reference, Visit.planned_start, Visit.planned_end, Alert.raised_at)
        .join(Alert, Alert.id == AlertDelivery.alert_id)
        .outerjoin(Resident, Resident.id == Alert.resident_id)
        .outerjoin(Visit, Visit.id == Alert.visit_id)
        .where(AlertDelivery.status == DeliveryStatus.PENDING, AlertDelivery.channel == DeliveryChannel.EMAIL,
               AlertDelivery.next_attempt_at <= now)
        .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id).limit(limit)).all()
    for r in rows:
        claimed = session.execute(update(AlertDelivery)
                                  .where(AlertDelivery.id == r.id, AlertDelivery.status == DeliveryStatus.PENDING)
                                  .values(status=DeliveryStatus.SENDING, at=now))
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            jobs.append(Job(r.id, r.alert_id, r.channel, r.target, r.attempt, r.purpose, r.kind,
                            r.reference or "-", r.due_at, r.detail, r.planned_start, r.planned_end, r.raised_at))
    return jobs


def record_outcome(session: Session, delivery_id: int, ok: bool, error: str, now: dt.datetime,
                   cfg: DeliveryConfig) -> None:
    """Sent, or failed plus the next attempt after a back-off: an alert is never dropped."""
    row = session.get(AlertDelivery, delivery_id)
    if row is None or row.status not in (DeliveryStatus.SENDING, DeliveryStatus.PENDING):
        return
    row.at = now
    if ok:
        row.status = DeliveryStatus.SENT
        row.error = ""
        return
    row.status = DeliveryStatus.FAILED
    row.error = error[:1000]
    _add_attempt(session, row.alert_id, row.purpose, row.channel, row.target, now, attempt=row.attempt + 1,
                 at=now + cfg.backoff(row.attempt))
    session.flush()


def compose_email(job: Job, cfg: DeliveryConfig) -> EmailMessage:
    """Time (local), kind, resident reference and a link; the resident's name is never in it."""
    from zoneinfo import ZoneInfo

    if job.purpose in missed.PURPOSES:  # family and brokerage: their own wording, no office link
        return missed.compose(purpose=job.purpose, target=job.target, alert_id=job.alert_id,
                              resident_ref=job.resident_ref, visit_start=job.visit_start, visit_end=job.visit_end,
                              raised_at=job.raised_at, email_from=cfg.email_from, timezone=cfg.timezone,
                              cfg=cfg.notices)

    tz = ZoneInfo(cfg.timezone)
    title = KIND_TITLES.get(job.kind, job.kind)
    prefix = {DeliveryPurpose.ESCALATED: "ESCALATED: ", DeliveryPurpose.OUT_OF_HOURS: "OUT OF HOURS HANDOVER: "}
    when = format_local(job.due_at, tz)
    link = f"{cfg.base_url.rstrip('/')}/alerts/{job.alert_id}"
    msg = EmailMessage()
    msg["Subject"] = f"{prefix.get(job.purpose, '')}{title} alert — resident {job.resident_ref} — {when}"
    msg["From"] = cfg.email_from
    msg["To"] = job.target
    msg["X-Carecall-Alert"] = str(job.alert_id)
    lines = [
        f"{prefix.get(job.purpose, '')}{title} alert",
        "",
        f"Time:      {when} ({cfg.timezone})",
        f"Kind:      {job.kind}",
        f"Resident:  {job.resident_ref}",
        f"Details:   {job.detail}",
        "",
        f"Open the alert: {link}",
    ]
    if job.purpose == DeliveryPurpose.OUT_OF_HOURS:
        lines += ["", "The no-reply checks done so far are listed on the alert page (spec 14.3)."]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def send_email(job: Job, cfg: DeliveryConfig) -> None:
    """Blocking SMTP send; raises on any failure (the caller records it and retries)."""
    send_message(compose_email(job, cfg), cfg)


def send_message(msg: EmailMessage, cfg: DeliveryConfig) -> None:
    """One message through the configured SMTP server (alerts, notices, family invitations)."""
    with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout) as smtp:
        if cfg.smtp_starttls:
            smtp.starttls()
        if cfg.smtp_user:
            smtp.login(cfg.smtp_user, cfg.smtp_password)
        refused = smtp.send_message(msg)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)


def send(job: Job, cfg: DeliveryConfig) -> None:
    if job.channel == DeliveryChannel.EMAIL:
        send_email(job, cfg)
    else:  # voice rows belong to the chain (scheduler/chain.py), which rings them itself
        raise ValueError(f"unknown channel {job.channel}")


def deliver_once(session_factory: Any, now: dt.datetime, cfg: DeliveryConfig) -> list[tuple[Job, str]]:
    """Plan, claim, send and record in one blocking go (the CLI; the server does the same off the reactor)."""
    from ivr.db import unit_of_work

    with unit_of_work(session_factory) as s:
        plan_deliveries(s, now, cfg)
        jobs = claim_due(s, now, cfg)
    results = []
    for job in jobs:
        try:
            send(job, cfg)
            error = ""
        except Exception as exc:  # every failure is recorded and retried
            error = f"{type(exc).__name__}: {exc}"
        with unit_of_work(session_factory) as s:
            record_outcome(s, job.delivery_id, not error, error, now, cfg)
        results.append((job, error))
    return results

