"""Alert tables: the alerts themselves, what staff did about them, and every delivery attempt.

Exactly-once is a database fact: ``alerts.dedupe_key`` is UNIQUE, so two server
processes (or a restart) evaluating the same deadline can both try to insert and only
one row survives. Deliveries are an outbox: a pending attempt row is written in the
same transaction that plans it, and a failed attempt writes the next one, so an alert
is never lost between "raised" and "someone was told".
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ivr.models import Attendance, Base, UTCDateTime, utcnow


class AlertKind:
    LATE = "late"
    MISSED = "missed"
    NO_DEPARTURE = "no_departure"
    NO_REPLY = "no_reply"
    SHORT_VISIT = "short_visit"
    DOUBLE_UP_APART = "double_up_apart"
    FAILED_LOGIN = "failed_login"
    SUBSTITUTE = "substitute"
    UNSCHEDULED = "unscheduled"
    # The worker pressed the alarm on their phone (lone-worker alarm, web.worker_app).
    ALARM = "alarm"
    ALL = (LATE, MISSED, NO_DEPARTURE, NO_REPLY, SHORT_VISIT, DOUBLE_UP_APART, FAILED_LOGIN, SUBSTITUTE,
           UNSCHEDULED, ALARM)
    # A person may be in danger: the no-reply checklist and out-of-hours escalation apply.
    SAFEGUARDING = (NO_REPLY, ALARM)
    INFORMATIONAL = (SUBSTITUTE, UNSCHEDULED)


# Higher = more severe; the board sorts on it.
SEVERITY: dict[str, int] = {
    AlertKind.ALARM: 6,
    AlertKind.NO_REPLY: 5,
    AlertKind.MISSED: 4,
    AlertKind.NO_DEPARTURE: 4,
    AlertKind.LATE: 3,
    AlertKind.DOUBLE_UP_APART: 3,
    AlertKind.FAILED_LOGIN: 2,
    AlertKind.SHORT_VISIT: 2,
    AlertKind.SUBSTITUTE: 1,
    AlertKind.UNSCHEDULED: 1,
}


class AlertStatus:
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    ALL = (OPEN, ACKNOWLEDGED, RESOLVED)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    # "late:<visit_id>", "failed_login:line:<e164>:<hour>" … one row per fact, ever.
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), index=True)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"), index=True)
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"), index=True)
    attendance_id: Mapped[int | None] = mapped_column(ForeignKey("attendances.id"))
    call_record_id: Mapped[int | None] = mapped_column(ForeignKey("call_records.id"))
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # the deadline that was missed
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(String(14), default=AlertStatus.OPEN, index=True)
    severity: Mapped[int] = mapped_column(Integer, default=1)
    detail: Mapped[str] = mapped_column(Text, default="")  # never a resident's name
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(80))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolution_note: Mapped[str] = mapped_column(Text, default="")
    resolved_by_system: Mapped[bool] = mapped_column(Boolean, default=False)
    # Second contact told because nobody acknowledged in time.
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # No reply still unresolved: handed over to the out-of-hours service (spec 14.4).
    out_of_hours_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set once the delivery attempts for the raise were written (outbox claim).
    deliveries_planned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The escalation chain (scheduler/chain.py): how many of its steps were started, and
    # when it moves to the next person unless someone accepts first (NULL: not climbing).
    chain_step: Mapped[int] = mapped_column(Integer, default=0)
    chain_next_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)

    @property
    def unaccepted_escalated(self) -> bool:
        """Nobody has taken it and it went past the office web (a phone was rung): the board shows it red."""
        return self.status == AlertStatus.OPEN and ((self.chain_step or 0) > 1 or self.escalated_at is not None)

    actions: Mapped[list[AlertAction]] = relationship(order_by="AlertAction.id", back_populates="alert")
    checks: Mapped[list[AlertCheck]] = relationship(order_by="AlertCheck.id", back_populates="alert")

    __table_args__ = (
        CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="status_known"),
        CheckConstraint(
            "kind IN ('late', 'missed', 'no_departure', 'no_reply', 'short_visit', 'double_up_apart', "
            "'failed_login', 'substitute', 'unscheduled', 'alarm')",
            name="kind_known",
        ),
        Index("ix_alerts_undelivered", "deliveries_planned_at"),
    )


class AlertAction(Base):
    """The alert's history: raised, acknowledged, check done, escalated, resolved. Append-only."""

    __tablename__ = "alert_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")

    alert: Mapped[Alert] = relationship(back_populates="actions")


class DeliveryChannel:
    EMAIL = "email"
    VOICE = "voice"
    ALL = (EMAIL, VOICE)


class DeliveryStatus:
    PENDING = "pending"  # waiting for next_attempt_at
    SENDING = "sending"  # claimed by one server
    SENT = "sent"
    FAILED = "failed"  # this attempt failed; the next attempt is its own row


class DeliveryPurpose:
    RAISED = "raised"  # the office address
    ESCALATED = "escalated"  # second contact: not acknowledged in time
    OUT_OF_HOURS = "out_of_hours"  # no reply unresolved: out-of-hours contact
    CHAIN = "chain"  # a phone call of the escalation chain (scheduler/chain.py)


class AlertDelivery(Base):
    """One attempt to tell someone about an alert. A failure adds the next attempt's row."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16), default=DeliveryPurpose.RAISED)
    channel: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(10), default=DeliveryStatus.PENDING)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # when this attempt was made
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Voice calls of the escalation chain: whom we rang (web user), at which step, and what
    # the call itself said (answered, no answer, busy, failed, accepted, passed on …).
    user_id: Mapped[int | None] = mapped_column(Integer)  # web_users.id (no FK: scheduler does not need web)
    step: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(20), default="")

    __table_args__ = (
        CheckConstraint("channel IN ('email', 'voice')", name="channel_known"),
        CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed')", name="status_known"),
        Index("ix_alert_deliveries_due", "status", "next_attempt_at"),
    )


class CheckStep:
    """The no-reply checks of spec 14.3, in the order a worker does them."""

    DOOR_TIME = "door_time"
    ROUND_PROPERTY = "round_property"
    PHONE_NUMBERS = "phone_numbers"
    NEIGHBOURS = "neighbours"
    NEXT_OF_KIN = "next_of_kin"
    NHS = "nhs"
    ALL = (DOOR_TIME, ROUND_PROPERTY, PHONE_NUMBERS, NEIGHBOURS, NEXT_OF_KIN, NHS)
    LABELS: dict[str, str] = {
        DOOR_TIME: "Allowed time for the resident to reach the door",
        ROUND_PROPERTY: "Checked round the property",
        PHONE_NUMBERS: "Called the resident's land and mobile numbers",
        NEIGHBOURS: "Checked with neighbours where appropriate",
        NEXT_OF_KIN: "Checked with next of kin",
        NHS: "Checked local NHS resources (hospital, GP)",
    }


class AlertCheck(Base):
    """One no-reply checklist step done, by whom and when."""

    __tablename__ = "alert_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(20))
    done_by: Mapped[str] = mapped_column(String(80))
    done_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")

    alert: Mapped[Alert] = relationship(back_populates="checks")

    __table_args__ = (
        CheckConstraint(
            "step IN ('door_time', 'round_property', 'phone_numbers', 'neighbours', 'next_of_kin', 'nhs')",
            name="step_known",
        ),
    )


# The rules find departures in a time window (short visits); the spine indexes only arrivals.
Index("ix_attendances_departure_at", Attendance.departure_at)
