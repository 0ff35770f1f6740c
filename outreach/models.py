"""Outreach tables: notice preferences, lateness notices, family invitations, outside users'
scopes, feedback, and quality-call answers.

"At most one lateness notice per visit" and "one quality call per resident per month"
are database facts (UNIQUE), so two servers planning the same notice store one row.
An outside user (family or commissioner) is an ordinary ``web_users`` row with an
outside role; what they may see is the one row of ``outside_scopes`` for them, and a
user with no scope sees nothing.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ivr.models import Base, UTCDateTime, utcnow


class NoticeChannel:
    CALL_RESIDENT = "call_resident"  # ring the resident's registered landline
    CALL_CONTACT = "call_contact"  # ring the named contact's phone instead
    EMAIL_CONTACT = "email_contact"  # e-mail the named contact instead
    ALL = (CALL_RESIDENT, CALL_CONTACT, EMAIL_CONTACT)
    LABELS = {CALL_RESIDENT: "Call the resident", CALL_CONTACT: "Call a named contact",
              EMAIL_CONTACT: "E-mail a named contact"}


class NoticePreference(Base):
    """What the resident agreed to (spec §5.26, §5.34): edited by the office, one row per resident.

    No row means no consent: nothing is sent to a resident who was never asked.
    Quiet hours are minutes after local midnight; ``quiet_start > quiet_end`` wraps
    midnight (21:00–08:00).
    """

    __tablename__ = "notice_preferences"

    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True)
    lateness_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    lateness_channel: Mapped[str] = mapped_column(String(16), default=NoticeChannel.CALL_RESIDENT)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("resident_contacts.id", ondelete="SET NULL"))
    lateness_minutes: Mapped[int] = mapped_column(Integer, default=15)
    quiet_start: Mapped[int | None] = mapped_column(Integer)
    quiet_end: Mapped[int | None] = mapped_column(Integer)
    do_not_call: Mapped[bool] = mapped_column(Boolean, default=False)
    survey_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[str] = mapped_column(String(80), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("lateness_channel IN ('call_resident', 'call_contact', 'email_contact')",
                        name="channel_known"),
        CheckConstraint("lateness_minutes BETWEEN 1 AND 120", name="minutes_range"),
        CheckConstraint("quiet_start IS NULL OR quiet_start BETWEEN 0 AND 1439", name="quiet_start_range"),
        CheckConstraint("quiet_end IS NULL OR quiet_end BETWEEN 0 AND 1439", name="quiet_end_range"),
    )


class NoticeStatus:
    PENDING = "pending"  # planned; waiting for a sender
    SENDING = "sending"  # claimed by one server
    DELIVERED = "delivered"  # the call was answered and the message played, or the e-mail was accepted
    UNANSWERED = "unanswered"  # rang out, busy or refused, after the last attempt
    FAILED = "failed"  # could not be placed at all after the last attempt
    SKIPPED = "skipped"  # decided not to send (quiet hours, do not call, no number): the reason is in ``note``
    ALL = (PENDING, SENDING, DELIVERED, UNANSWERED, FAILED, SKIPPED)
    FINAL = (DELIVERED, UNANSWERED, FAILED, SKIPPED)


class LatenessNotice(Base):
    """The one lateness notice of a visit (UNIQUE ``visit_id``): planned, attempted, answered or not."""

    __tablename__ = "lateness_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), unique=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(254), default="")  # E.164 or e-mail; never logged
    status: Mapped[str] = mapped_column(String(12), default=NoticeStatus.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sending', 'delivered', 'unanswered', 'failed', 'skipped')",
                        name="status_known"),
        Index("ix_lateness_notices_due", "status", "next_attempt_at"),
    )


class NoticeEvent(Base):
    """One step of a notice, shown in the visit's history: planned, attempt, answered, played, failed. Append-only."""

    __tablename__ = "notice_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("lateness_notices.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")


class OutsideScope(Base):
    """What one outside user may see: a family user one resident, a commissioner one funder."""

    __tablename__ = "outside_scopes"

    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), primary_key=True)
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("resident_contacts.id", ondelete="SET NULL"))
    funder: Mapped[str | None] = mapped_column(String(80))

    __table_args__ = (
        CheckConstraint("(resident_id IS NULL) <> (funder IS NULL)", name="one_scope"),
    )


class FamilyInvite(Base):
    """A one-time link for a contact to set a family password. Only the token's SHA-256 is stored."""

    __tablename__ = "family_invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("resident_contacts.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("web_users.id", ondelete="SET NULL"))
    # Outbox for the invitation e-mail: sent once, retried on failure.
    email_status: Mapped[str] = mapped_column(String(10), default="pending")
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)
    email_error: Mapped[str] = mapped_column(Text, default="")


class FeedbackKind:
    COMPLIMENT = "compliment"
    CONCERN = "concern"
    COMPLAINT = "complaint"
    ALL = (COMPLIMENT, CONCERN, COMPLAINT)


class FeedbackStatus:
    NEW = "new"
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"
    ALL = (NEW, IN_PROGRESS, CLOSED)
    LABELS = {NEW: "New", IN_PROGRESS: "In progress", CLOSED: "Closed"}


class Feedback(Base):
    """A compliment, concern or complaint from a family user (spec §3.46), and the office's reply."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("web_users.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(12))
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default=FeedbackStatus.NEW, index=True)
    reply: Mapped[str] = mapped_column(Text, default="")
    replied_by: Mapped[str | None] = mapped_column(String(80))
    replied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("kind IN ('compliment', 'concern', 'complaint')", name="kind_known"),
        CheckConstraint("status IN ('new', 'in_progress', 'closed')", name="status_known"),
    )


class SurveyStatus:
    PENDING = "pending"
    SENDING = "sending"
    COMPLETED = "completed"  # all three answered
    PARTIAL = "partial"  # answered, but hung up or timed out before the end
    UNANSWERED = "unanswered"  # the call was not answered
    FAILED = "failed"
    ALL = (PENDING, SENDING, COMPLETED, PARTIAL, UNANSWERED, FAILED)


class SurveyCall(Base):
    """One monthly quality call (spec §5.34): whom, when, and the three keypad answers (1–5) or none."""

    __tablename__ = "survey_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    month: Mapped[str] = mapped_column(String(7))  # "2026-12", local calendar month
    funder: Mapped[str] = mapped_column(String(80), default="")  # at sampling time, for the KPI figures
    team: Mapped[str] = mapped_column(String(80), default="")
    target: Mapped[str] = mapped_column(String(20), default="")
    status: Mapped[str] = mapped_column(String(12), default=SurveyStatus.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    on_time: Mapped[int | None] = mapped_column(Integer)
    did_what_needed: Mapped[int | None] = mapped_column(Integer)
    would_recommend: Mapped[int | None] = mapped_column(Integer)
    called_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("resident_id", "month"),
        CheckConstraint("status IN ('pending', 'sending', 'completed', 'partial', 'unanswered', 'failed')",
                        name="status_known"),
        CheckConstraint("on_time IS NULL OR on_time BETWEEN 1 AND 5", name="q1_range"),
        CheckConstraint("did_what_needed IS NULL OR did_what_needed BETWEEN 1 AND 5", name="q2_range"),
        CheckConstraint("would_recommend IS NULL OR would_recommend BETWEEN 1 AND 5", name="q3_range"),
    )
