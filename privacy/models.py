"""Who looked at whose personal details: the view log (UK GDPR accountability).

One row per view of a resident's or a worker's personal details (an office page, an API
read, a subject-access export, an NI-number reveal). The row names the person by id
(the row itself is pseudonymised on erasure, never deleted, so the log stays readable)
and says who looked, when, through what and at what. It holds no personal detail
itself: ``what`` is a fixed label, never a copied value.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ivr.models import Base, UTCDateTime, utcnow


class Channel:
    WEB = "web"
    API = "api"
    CLI = "cli"
    ALL = (WEB, API, CLI)


class PersonalDataView(Base):
    __tablename__ = "privacy_views"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(16), default="")
    channel: Mapped[str] = mapped_column(String(8), default=Channel.WEB)
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"), index=True)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"), index=True)
    what: Mapped[str] = mapped_column(String(60))

    __table_args__ = (
        CheckConstraint("(resident_id IS NULL) <> (worker_id IS NULL)", name="one_subject"),
        CheckConstraint("channel IN ('web', 'api', 'cli')", name="channel_known"),
        Index("ix_privacy_views_actor_at", "actor", "at"),
    )
