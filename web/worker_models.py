"""The worker's phone: enrolled devices, home tags, tag scans and two-way messages.

A worker's phone is enrolled once (worker number + PIN + a one-time code the office
issues), and from then on holds a long-lived cookie bound to that enrolment; the office
revokes an enrolment when a phone is lost. Only SHA-256 digests of the cookie and of the
enrolment code are stored (they are random, so a fast hash is enough; web.models does
the same for office sessions).

A home tag (NFC sticker and printed QR code) carries a random id and a signature over
that id and the home it was issued for (:mod:`web.tags`): a made-up or altered id is
refused, and a tag's scans are counted so a tag cannot be hammered.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ivr.models import Base, UTCDateTime, utcnow


class WorkerEnrolment(Base):
    """A one-time code the office gave a worker to enrol a phone; single use, short-lived."""

    __tablename__ = "worker_enrolments"

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_by: Mapped[str] = mapped_column(String(80))
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WorkerDevice(Base):
    """An enrolled phone: its session cookie's digest, and when it was revoked."""

    __tablename__ = "worker_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(80), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    enrolled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str] = mapped_column(String(80), default="")


class HomeTag(Base):
    __tablename__ = "home_tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    tag_id: Mapped[str] = mapped_column(String(32), unique=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    issued_by: Mapped[str] = mapped_column(String(80), default="")


class TagScan(Base):
    """Every scan the server was sent, accepted or not: the rate limit and the evidence."""

    __tablename__ = "tag_scans"

    id: Mapped[int] = mapped_column(primary_key=True)
    tag_id: Mapped[int | None] = mapped_column(ForeignKey("home_tags.id", ondelete="SET NULL"))
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"))
    scanned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(24))  # arrival, departure, duplicate, forged, too_old, …
    queued: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_tag_scans_tag_received", "tag_id", "received_at"),)


class WorkerMessage(Base):
    """Two-way messages between the office and a worker, optionally about one visit."""

    __tablename__ = "worker_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), index=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id", ondelete="SET NULL"), index=True)
    from_office: Mapped[bool] = mapped_column(Boolean)
    author: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
