"""Workers' National Insurance numbers, sealed and kept apart from the worker's row.

Spec 004 §10.2 asks that workers' NI numbers reach the monitoring system "accurately and
securely". Accurately: :func:`normalise_ni` accepts only HMRC's format (two prefix
letters from the allowed sets, six digits, suffix A-D; the never-issued prefixes
refused). Securely: the number lives in its own table, sealed with :class:`ivr.sealed.Sealer`
under the site key file (outside the database) and bound to the worker's row
(``ni:worker:<id>``), so a leaked database or dump holds none in clear, and a sealed
value copied onto another worker does not open. Only ``privacy.sensitive`` reveals one,
and every reveal is logged there.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path

from sqlalchemy import ForeignKey, Text, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from ivr.models import Base, UTCDateTime, utcnow
from ivr.pins import load_or_create_key
from ivr.sealed import Sealer

# HMRC: first letter not D F I Q U V; second not D F I O Q U V; BG GB KN NK NT TN ZZ never issued.
_NI = re.compile(r"^(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]$")


class NIError(ValueError):
    """Not a National Insurance number; the message says what is wrong (never echoes it)."""


def normalise_ni(text: str) -> str:
    """``"qq 12 34 56 c"`` style input → ``"QQ123456C"``; NIError if it is not a valid NI number."""
    value = "".join(text.split()).upper()
    if not _NI.match(value):
        raise NIError("is not a National Insurance number (two letters, six digits, A-D, e.g. AB 12 34 56 C)")
    return value


def ni_context(worker_id: int) -> str:
    return f"ni:worker:{worker_id}"


@functools.cache
def _sealer_for(path: str) -> Sealer:
    return Sealer(load_or_create_key(Path(path)))


def site_sealer(secret_path: Path) -> Sealer:
    """The site's sealer (one per key file, built once: key derivation is not free)."""
    return _sealer_for(str(secret_path))


class WorkerNINumber(Base):
    """One worker's NI number, sealed. No row: none recorded."""

    __tablename__ = "worker_ni_numbers"

    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


def set_ni(session: Session, sealer: Sealer, worker_id: int, ni: str | None) -> None:
    """Store (already normalised) ``ni`` for the worker, or remove it when ``None``."""
    if ni is None:
        session.execute(delete(WorkerNINumber).where(WorkerNINumber.worker_id == worker_id))
        return
    sealed = sealer.seal(ni, context=ni_context(worker_id))
    row = session.get(WorkerNINumber, worker_id)
    if row is None:
        session.add(WorkerNINumber(worker_id=worker_id, sealed=sealed))
    else:
        row.sealed = sealed


def open_ni(session: Session, sealer: Sealer, worker_id: int) -> str | None:
    """The clear NI number, for :mod:`privacy.sensitive` only (which logs the reveal)."""
    row = session.get(WorkerNINumber, worker_id)
    return None if row is None else sealer.open(row.sealed, context=ni_context(worker_id))


def has_ni(session: Session, worker_id: int) -> bool:
    return session.get(WorkerNINumber, worker_id) is not None
