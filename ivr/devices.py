"""Visit-verification devices: a small token fixed in a home that shows a changing code.

Homes without a landline cannot prove the worker's presence by caller ID. A fixed
device showing a 6-digit TOTP code (RFC 6238, the standard hardware tokens) does: the
worker keys the code from any phone, and only someone standing by the device can read
it. The office registers each device (serial + secret) against one resident; the secret
is sealed under the site key (:mod:`ivr.sealed`) and never shown again.

Each time step a code was accepted for is stored, so a code read out or photographed
once cannot be replayed for a second check-in (``device_code_uses`` is unique on the
device and step).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ivr.models import Base, Resident, UTCDateTime, utcnow


class VerificationDevice(Base):
    __tablename__ = "verification_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    # The base32 TOTP secret, sealed with context "device:<serial>".
    secret_sealed: Mapped[str] = mapped_column(String(255))
    digits: Mapped[int] = mapped_column(Integer, default=6)
    step_seconds: Mapped[int] = mapped_column(Integer, default=60)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    registered_by: Mapped[str] = mapped_column(String(80), default="")

    resident: Mapped[Resident] = relationship()

    __table_args__ = (
        CheckConstraint("digits IN (6, 8)", name="digits_6_or_8"),
        CheckConstraint("step_seconds IN (30, 60)", name="step_30_or_60"),
    )


class DeviceCodeUse(Base):
    """One accepted code: the device, its time step and the call that used it."""

    __tablename__ = "device_code_uses"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("verification_devices.id", ondelete="CASCADE"))
    counter: Mapped[int] = mapped_column(Integer)
    uniqueid: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("device_id", "counter"),)


def device_context(serial: str) -> str:
    """The sealing context of a device's secret: a sealed secret opens only for its serial."""
    return f"device:{serial}"
