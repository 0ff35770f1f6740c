"""The on-call rota: who answers the phone for alerts out of office hours (spec 14.4).

One row is one person on call for one stretch of time, stored as a UTC range
``[starts_at, ends_at)``: an overnight shift is a single row across midnight, and a
night on which the clocks change is as long as it really is (13 h on the last Sunday of
October for 20:00-09:00, 11 h in March), because the local times are converted once,
when the manager enters them (:func:`scheduler.oncall.local_range`). ``position`` says
whether the person is the first or the second contact of the escalation chain.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ivr.models import Base, UTCDateTime, utcnow
from web import models as _web_models  # noqa: F401 - web_users must be in the metadata for the FK


class RotaPosition:
    ON_CALL = "on_call"  # rung first out of hours
    SECOND = "second"  # rung when the first does not accept
    ALL = (ON_CALL, SECOND)
    LABELS = {ON_CALL: "On call", SECOND: "Second contact"}


class RotaEntry(Base):
    __tablename__ = "oncall_rota"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    position: Mapped[str] = mapped_column(String(10), default=RotaPosition.ON_CALL)
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("position IN ('on_call', 'second')", name="position_known"),
        Index("ix_oncall_rota_window", "starts_at", "ends_at"),
    )
