"""Who is on call when: office hours, the rota, and the manager when the rota has a gap.

Office hours (``[oncall] office_days``, ``office_start``–``office_end``, local time) are
covered by the coordinators on the office web. Out of hours the rota
(:class:`scheduler.oncall_models.RotaEntry`) names the person rung first (``on_call``)
and the second contact (``second``). When nobody is on the rota the default is the
manager (``[oncall] manager``, else the first active manager with a phone), and the
board shows a warning (:func:`board_warning`).

A rota entry is entered in local time and stored as a UTC range, converted once here
(:func:`local_range`): an end time at or before the start time means the next morning,
so 20:00–08:00 is one overnight entry, 12 hours long on an ordinary night, 13 on the
night the clocks go back and 11 on the night they go forward. A local time that does
not exist (01:30 on the last Sunday of March) is refused with a message; one that
happens twice (01:30 on the last Sunday of October) is read as the first for a start
and the second for an end, so the entry covers the whole repeated hour.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.oncall_models import RotaEntry, RotaPosition
from web.models import Role, User

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class RotaError(ValueError):
    """A rota entry that cannot be stored; the message says why (shown to the manager)."""


def parse_hhmm(text: str, what: str = "time") -> dt.time:
    try:
        hours, minutes = text.strip().split(":")
        return dt.time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise RotaError(f"{what} must be HH:MM, got {text!r}") from None


def _exists(local: dt.datetime) -> bool:
    """False for a wall time skipped by the spring clock change (it does not survive a round trip)."""
    back = local.astimezone(dt.UTC).astimezone(local.tzinfo)
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


def local_range(day: dt.date, start: dt.time, end: dt.time, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` on ``day`` in local time as UTC; an end at or before the start is the next day."""
    starts = dt.datetime.combine(day, start, tzinfo=tz)
    end_day = day if end > start else day + dt.timedelta(days=1)
    ends = dt.datetime.combine(end_day, end, tzinfo=tz).replace(fold=1)
    for moment, label in ((starts, "start"), (ends, "end")):
        if not _exists(moment):
            raise RotaError(f"the {label} time {moment:%H:%M} does not exist on {moment:%d %b %Y} "
                            "(the clocks go forward that night); use the hour after")
    return starts.astimezone(dt.UTC), ends.astimezone(dt.UTC)


@dataclasses.dataclass(frozen=True)
class OfficeHours:
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(17, 0)
    timezone: str = "Europe/London"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, at: dt.datetime) -> bool:
        local = at.astimezone(self.tz)
        return DAYS[local.weekday()] in self.days and self.start <= local.time() < self.end

    def closed_intervals(self, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
        """The out-of-hours stretches within ``[start, end)`` (UTC), in order."""
        tz = self.tz
        opens: list[tuple[dt.datetime, dt.datetime]] = []
        day = start.astimezone(tz).date() - dt.timedelta(days=1)
        while dt.datetime.combine(day, dt.time(0), tzinfo=tz) < end:
            if DAYS[day.weekday()] in self.days:
                a = dt.datetime.combine(day, self.start, tzinfo=tz).astimezone(dt.UTC)
                b = dt.datetime.combine(day, self.end, tzinfo=tz).astimezone(dt.UTC)
                opens.append((a, b))
            day += dt.timedelta(days=1)
        return _subtract([(start, end)], opens)


def _subtract(spans: Sequence[tuple[dt.datetime, dt.datetime]],
              holes: Sequence[tuple[dt.datetime, dt.datetime]]) -> list[tuple[dt.datetime, dt.datetime]]:
    out = list(spans)
    for h0, h1 in sorted(holes):
        nxt: list[tuple[dt.datetime, dt.datetime]] = []
        for a, b in out:
            if h1 <= a or h0 >= b:
                nxt.append((a, b))
                continue
            if a < h0:
                nxt.append((a, h0))
            if h1 < b:
                nxt.append((h1, b))
        out = nxt
    return [(a, b) for a, b in out if b > a]


@dataclasses.dataclass(frozen=True)
class Person:
    """Someone the chain can ring."""

    user_id: int
    username: str
    phone: str | None  # E.164
    why: str  # "on the rota", "rota gap: the manager" …


def _person(user: User, why: str) -> Person:
    return Person(user.id, user.username, user.phone_e164, why)


def on_rota(session: Session, at: dt.datetime, position: str = RotaPosition.ON_CALL) -> RotaEntry | None:
    """The entry covering ``at`` for that position; of overlapping entries the latest entered wins."""
    return session.scalars(
        select(RotaEntry).where(RotaEntry.position == position, RotaEntry.starts_at <= at, RotaEntry.ends_at > at)
        .order_by(RotaEntry.created_at.desc(), RotaEntry.id.desc()).limit(1)).first()


def default_manager(session: Session, username: str = "") -> User | None:
    """``[oncall] manager`` if set and active, else the first active manager with a phone, else any manager."""
    if username:
        user = session.scalars(select(User).where(User.username == username, User.active.is_(True))).first()
        if user is not None:
            return user
    managers = list(session.scalars(select(User).where(User.role == Role.MANAGER, User.active.is_(True))
                                    .order_by(User.id)))
    with_phone = [m for m in managers if m.phone_e164]
    return (with_phone or managers or [None])[0]


def who_to_ring(session: Session, step: str, at: dt.datetime, manager: str = "") -> Person | None:
    """The person for a phone step of the chain at ``at`` (``on_call``, ``second``, ``manager``)."""
    if step in (RotaPosition.ON_CALL, RotaPosition.SECOND):
        entry = on_rota(session, at, step)
        if entry is not None:
            user = session.get(User, entry.user_id)
            if user is not None and user.active:
                return _person(user, "on the rota" if step == RotaPosition.ON_CALL else "second contact on the rota")
        if step == RotaPosition.SECOND:
            return None  # no second contact: the chain goes straight on to the manager
        mgr = default_manager(session, manager)
        return _person(mgr, "rota gap: the manager") if mgr is not None else None
    if step == "manager":
        mgr = default_manager(session, manager)
        return _person(mgr, "the manager") if mgr is not None else None
    raise ValueError(f"not a phone step: {step!r}")


def rota_gaps(session: Session, start: dt.datetime, end: dt.datetime, office: OfficeHours,
              position: str = RotaPosition.ON_CALL) -> list[tuple[dt.datetime, dt.datetime]]:
    """Out-of-hours stretches in ``[start, end)`` nobody on the rota covers (UTC, in order)."""
    covered = [(e.starts_at, e.ends_at) for e in session.scalars(
        select(RotaEntry).where(RotaEntry.position == position, RotaEntry.starts_at < end,
                                RotaEntry.ends_at > start))]
    return _subtract(office.closed_intervals(start, end), covered)


def board_warning(session: Session, now: dt.datetime, office: OfficeHours, hours: float = 24.0,
                  manager: str = "") -> str:
    """One sentence for the board when the rota has a gap now or within ``hours``; "" when it does not."""
    horizon = now + dt.timedelta(hours=hours)
    # Look a week further so a gap is shown with its real end, not cut at the horizon.
    until = horizon + dt.timedelta(days=7)
    gaps = [g for g in rota_gaps(session, now, until, office) if g[0] < horizon]
    if not gaps:
        return ""
    tz = office.tz
    mgr = default_manager(session, manager)
    fallback = f"the manager ({mgr.username})" if mgr is not None else "nobody (no manager account)"
    if mgr is not None and not mgr.phone_e164:
        fallback = f"the manager ({mgr.username}, who has no phone number: nobody will be rung)"
    start, end = gaps[0]

    def when(t: dt.datetime) -> str:
        return f"{t.astimezone(tz):%a %d/%m %H:%M}"

    more = " and later" if len(gaps) > 1 else ""
    if start <= now:
        until_text = "for the next week" if end >= until else f"until {when(end)}"
        return f"Nobody is on the on-call rota now ({until_text}){more}: alerts ring {fallback}."
    span = f"from {when(start)} onwards" if end >= until else f"{when(start)}–{when(end)}"
    return f"The on-call rota has a gap {span}{more}: alerts then ring {fallback}."
