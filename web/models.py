"""Office users, their browser sessions and their API tokens.

Sessions live in the database (not in process memory) so that several carecall servers
behind one address share them: a coordinator's next request may land on another server.
Only a SHA-256 of each session cookie and API token is stored, so a database leak does
not hand out live credentials; the random values carry 256 bits, so a fast hash is
enough (passwords, which people choose, get argon2 instead).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ivr.models import Base, UTCDateTime, utcnow


class Role:
    COORDINATOR = "coordinator"
    FINANCE = "finance"
    MANAGER = "manager"
    # Outside users (issue 16): a family member sees one resident, a commissioner one funder
    # (their scope is in outreach.models.OutsideScope). They never reach an office page.
    FAMILY = "family"
    COMMISSIONER = "commissioner"
    OFFICE = (COORDINATOR, FINANCE, MANAGER)
    OUTSIDE = (FAMILY, COMMISSIONER)
    ALL = OFFICE + OUTSIDE


class User(Base):
    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # May reveal key-safe codes (ivr.keysafe, spec 004 §14.15): granted by a manager, per user.
    keysafe_access: Mapped[bool] = mapped_column(Boolean, default=False)
    # The phone the on-call alert calls ring (E.164) and the 4-digit PIN that accepts an
    # alert on that call, as a keyed hash (ivr.pins, key "user:<id>"): scheduler/oncall.py.
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    phone_pin_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (CheckConstraint("role IN ('coordinator', 'finance', 'manager', 'family', 'commissioner')",
                                      name="role_known"),)


class WebSession(Base):
    """One logged-in browser. ``id`` is the SHA-256 (hex) of the cookie value."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A bearer token for a rostering system, acting with its owner's role."""

    __tablename__ = "web_api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(80), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship()
