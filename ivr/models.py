"""The carecall data model: residents, workers, packages, visits, attendances, calls.

Every timestamp column holds UTC (``UTCDateTime`` refuses naive values), so that a
visit across the October clock change has one unambiguous instant; local time is a
presentation concern handled in :mod:`ivr.clock`.

Rules that must hold even with several servers writing at once live here as database
constraints (unique uniqueids, one attendance per worker per visit), not in Python.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC instant, stored the same way on SQLite and PostgreSQL.

    SQLite has no time zones and PostgreSQL's ``timestamptz`` converts on read; storing
    naive UTC in both and re-attaching ``UTC`` on the way out gives one behaviour.
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column; attach a zone first")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


Money = Numeric(10, 2)


class Resident(Base):
    __tablename__ = "residents"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(Text, default="")
    postcode: Mapped[str] = mapped_column(String(12), default="")
    funder: Mapped[str] = mapped_column(String(80), default="")
    team: Mapped[str] = mapped_column(String(80), default="")
    # Keyed in when the caller ID is withheld or not registered: must name one home.
    phone_code: Mapped[str | None] = mapped_column(String(8), unique=True)
    # How the worker or the on-call manager gets in (spec 004 §14.15): the key safe's
    # *reference* and where it is; any code itself is sealed elsewhere, never beside this.
    access_notes: Mapped[str] = mapped_column(Text, default="")
    keysafe_reference: Mapped[str] = mapped_column(String(80), default="")
    # Right to restriction (UK GDPR art. 18): no notice, survey or other optional
    # processing while set; the care itself and its records go on.
    processing_restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    contacts: Mapped[list[ResidentContact]] = relationship(
        back_populates="resident", cascade="all, delete-orphan", order_by="ResidentContact.position"
    )
    lines: Mapped[list[ResidentLine]] = relationship(
        back_populates="resident", cascade="all, delete-orphan", order_by="ResidentLine.id"
    )
    packages: Mapped[list[CarePackage]] = relationship(back_populates="resident")

    __table_args__ = (CheckConstraint("phone_code IS NULL OR length(phone_code) >= 3", name="phone_code_len"),)


class ResidentLine(Base):
    """A landline registered for a resident, in E.164.

    Not unique: two residents of one household (a couple with separate packages)
    share the landline; the visit a call belongs to then decides between them.
    """

    __tablename__ = "resident_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    e164: Mapped[str] = mapped_column(String(20), index=True)

    resident: Mapped[Resident] = relationship(back_populates="lines")

    __table_args__ = (UniqueConstraint("resident_id", "e164"),)


class ContactRelation:
    NEXT_OF_KIN = "next_of_kin"
    REPRESENTATIVE = "representative"
    OTHER = "other"
    ALL = (NEXT_OF_KIN, REPRESENTATIVE, OTHER)


class ResidentContact(Base):
    """A person the office rings or writes to about a resident: next of kin, a
    representative (who may also be the billing address of a private client), others.

    ``position`` is the order the office tries them in; ``notify_missed`` is the
    resident's (or representative's) consent to be told of a missed visit (spec §3.44).
    """

    __tablename__ = "resident_contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=1)
    name: Mapped[str] = mapped_column(String(200))
    relation: Mapped[str] = mapped_column(String(20), default=ContactRelation.NEXT_OF_KIN)
    relation_note: Mapped[str] = mapped_column(String(80), default="")  # "daughter", "neighbour"
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    phone2_e164: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(254), default="")
    notify_missed: Mapped[bool] = mapped_column(Boolean, default=False)
    billing_address: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    resident: Mapped[Resident] = relationship(back_populates="contacts")

    __table_args__ = (
        CheckConstraint("relation IN ('next_of_kin', 'representative', 'other')", name="relation_known"),
    )


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_number: Mapped[str] = mapped_column(String(8), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # HMAC-SHA256 of the PIN under a secret kept outside the database (ivr.pins).
    pin_hash: Mapped[str] = mapped_column(String(64))
    mobile_e164: Mapped[str | None] = mapped_column(String(20), index=True)
    team: Mapped[str] = mapped_column(String(80), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The unanswered (free) check-in (docs/telephony.md): the worker's own number (a DDI,
    # E.164), rung from the resident's landline and never answered. No PIN is asked, so a
    # site turns it on per worker; unique, because the number alone names the worker.
    unanswered_ddi: Mapped[str | None] = mapped_column(String(20), unique=True)
    unanswered_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CarePackage(Base):
    """What a funder commissioned for a resident: hours a week and the rates paid."""

    __tablename__ = "care_packages"

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    purchase_order: Mapped[str] = mapped_column(String(60))
    funder: Mapped[str] = mapped_column(String(80))
    weekly_hours: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    hourly_rate: Mapped[Decimal] = mapped_column(Money)
    weekend_rate: Mapped[Decimal] = mapped_column(Money)
    bank_holiday_rate: Mapped[Decimal] = mapped_column(Money)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    resident: Mapped[Resident] = relationship(back_populates="packages")

    __table_args__ = (
        UniqueConstraint("resident_id", "purchase_order", "start_date"),
        CheckConstraint("weekly_hours >= 0", name="hours_nonneg"),
        CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates_ordered"),
    )


class VisitStatus:
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    ALL = (SCHEDULED, CANCELLED)


class Visit(Base):
    __tablename__ = "visits"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_ref: Mapped[str] = mapped_column(String(60), unique=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    planned_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    planned_end: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    workers_required: Mapped[int] = mapped_column(Integer, default=1)
    time_critical: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=VisitStatus.SCHEDULED)
    cancel_reason: Mapped[str] = mapped_column(Text, default="")
    # What the office asks the worker to do on this visit (shown on the worker's phone).
    worker_notes: Mapped[str] = mapped_column(Text, default="")
    # Bumped on every edit: moves alert deadlines and drives the live board.
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, index=True)

    resident: Mapped[Resident] = relationship()
    assignments: Mapped[list[VisitWorker]] = relationship(
        back_populates="visit", cascade="all, delete-orphan", order_by="VisitWorker.position"
    )

    __table_args__ = (
        CheckConstraint("workers_required IN (1, 2)", name="workers_1_or_2"),
        CheckConstraint("planned_end > planned_start", name="end_after_start"),
        CheckConstraint("status IN ('scheduled', 'cancelled')", name="status_known"),
    )


class VisitWorker(Base):
    __tablename__ = "visit_workers"

    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=1)

    visit: Mapped[Visit] = relationship(back_populates="assignments")
    worker: Mapped[Worker] = relationship()


class AttendanceKind:
    SCHEDULED = "scheduled"  # the worker was assigned to the visit
    SUBSTITUTE = "substitute"  # another worker was assigned; this one came instead
    UNSCHEDULED = "unscheduled"  # no visit fits; waits for the office to link it
    ALL = (SCHEDULED, SUBSTITUTE, UNSCHEDULED)


class Method:
    """How one end of an attendance was logged. Every method but manual is electronic
    monitoring (spec §10.5); they differ only in what proved the place."""

    PHONE = "phone"  # a call from the home's landline (or a phone code: not location-verified)
    DEVICE = "device"  # a code read off the visit-verification device fixed in the home
    TAG = "tag"  # the home's tag scanned by the worker's phone
    MANUAL = "manual"
    ALL = (PHONE, DEVICE, TAG, MANUAL)
    ELECTRONIC = (PHONE, DEVICE, TAG)


class Attendance(Base):
    """One worker's time at one home: arrival and departure, each with its evidence.

    Each end keeps how it was logged (phone or manual), whether the call came from the
    registered line (location verified), the call's uniqueid and, for manual entries,
    when the office typed it (billing rejects entries made more than 24 h late).
    """

    __tablename__ = "attendances"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), index=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default=AttendanceKind.SCHEDULED)

    arrival_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    arrival_method: Mapped[str | None] = mapped_column(String(8))
    arrival_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    arrival_uniqueid: Mapped[str | None] = mapped_column(String(64), unique=True)
    arrival_entered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    departure_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    departure_method: Mapped[str | None] = mapped_column(String(8))
    departure_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    departure_uniqueid: Mapped[str | None] = mapped_column(String(64), unique=True)
    departure_entered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Logged by an unanswered call (worker known by the number dialled, no PIN): weaker
    # evidence, flagged on the board, invoices, timesheets and the KPI return.
    arrival_unanswered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    departure_unanswered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, index=True)

    visit: Mapped[Visit | None] = relationship()
    resident: Mapped[Resident] = relationship()
    worker: Mapped[Worker] = relationship()

    __table_args__ = (
        UniqueConstraint("visit_id", "worker_id"),
        CheckConstraint("kind IN ('scheduled', 'substitute', 'unscheduled')", name="kind_known"),
        CheckConstraint("arrival_method IS NULL OR arrival_method IN ('phone', 'device', 'tag', 'manual')",
                        name="arr_method"),
        CheckConstraint(
            "departure_method IS NULL OR departure_method IN ('phone', 'device', 'tag', 'manual')", name="dep_method"
        ),
        CheckConstraint(
            "departure_at IS NULL OR arrival_at IS NULL OR departure_at >= arrival_at", name="dep_after_arr"
        ),
        Index("ix_attendances_open", "worker_id", "resident_id", "departure_at"),
    )

    @property
    def is_phone_logged(self) -> bool:
        return self.arrival_method in Method.ELECTRONIC and self.departure_method in Method.ELECTRONIC

    @property
    def unanswered_mode(self) -> bool:
        """Either end logged by an unanswered call (no PIN): shown wherever the attendance is evidence."""
        return bool(self.arrival_unanswered or self.departure_unanswered)


class CallOutcome:
    ARRIVAL = "arrival"
    DEPARTURE = "departure"
    DUPLICATE = "duplicate"  # same uniqueid seen before: nothing recorded again
    FAILED_LOGIN = "failed_login"
    UNKNOWN_LINE = "unknown_line"  # no resident found, even by phone code
    HANGUP = "hangup"  # caller left before anything was recorded
    NO_REPLY = "no_reply"
    NO_VISIT = "no_visit"  # no-reply call that matched no due visit
    ERROR = "error"
    IN_PROGRESS = "in_progress"
    JOURNALLED = "journalled"  # database down: durable in the server's journal, recorded on replay
    CUT = "cut"  # the server shut down mid-call; the caller was told it was not logged


class ReviewStatus:
    """Where an unmatched call stands in the office's queue."""

    NONE = "none"  # matched; nothing to review
    OPEN = "open"
    LINKED = "linked"
    REJECTED = "rejected"


class CallRecord(Base):
    """Every inbound call, whatever became of it, and how far it got.

    The uniqueid is Asterisk's; it is indexed but not unique here, because a repeated
    call must still be recorded (as ``duplicate``) while its attendance is not.
    """

    __tablename__ = "call_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String(64), index=True)
    script: Mapped[str] = mapped_column(String(16))  # checkin | noreply
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    caller_e164: Mapped[str | None] = mapped_column(String(20))
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"), index=True)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"), index=True)
    worker_number_entered: Mapped[str | None] = mapped_column(String(16))
    location_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    stage: Mapped[str] = mapped_column(String(32), default="connected")
    outcome: Mapped[str] = mapped_column(String(16), default=CallOutcome.IN_PROGRESS)
    failed_pin_attempts: Mapped[int] = mapped_column(Integer, default=0)
    attendance_id: Mapped[int | None] = mapped_column(ForeignKey("attendances.id"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    review_status: Mapped[str] = mapped_column(String(10), default=ReviewStatus.NONE, index=True)
    review_note: Mapped[str] = mapped_column(Text, default="")
    reviewed_by: Mapped[str | None] = mapped_column(String(80))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Who changed what, when, from what to what, and why. Append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(60))
    before: Mapped[str] = mapped_column(Text, default="")  # JSON
    after: Mapped[str] = mapped_column(Text, default="")  # JSON
    reason_code: Mapped[str] = mapped_column(String(40), default="")
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"),)


class LoginFailure(Base):
    """One wrong PIN (or unknown worker number) on one line: what the lockout counts (ivr.lockout).

    ``line`` is the caller's E.164 number, or ``home:<resident id>`` when the caller ID
    was withheld and the home came from its phone code, or ``withheld``. Only failure
    paths write or read this table.
    """

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_number: Mapped[str] = mapped_column(String(16))
    line: Mapped[str] = mapped_column(String(24))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    uniqueid: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_login_failures_worker_at", "worker_number", "at"),
        Index("ix_login_failures_line_at", "line", "at"),
    )


class LoginLock(Base):
    """A worker number locked on one line until ``until``: even the right PIN is refused there."""

    __tablename__ = "login_locks"

    worker_number: Mapped[str] = mapped_column(String(16), primary_key=True)
    line: Mapped[str] = mapped_column(String(24), primary_key=True)
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)
