"""The alert rules: a pure function of the stored visits, attendances, calls and ``now``.

Nothing here reads a clock or a database. :mod:`scheduler.store` loads the facts near
``now`` into a :class:`Snapshot` and writes what :func:`due_alerts` and
:func:`settlements` return; the scheduler only decides how often that happens. So a
test can ask "what is due at 10:44:59 and at 10:45:00?" with no reactor and no sleep,
and a server that was down evaluates the same function on start (catch-up): every
deadline in the look-back window that passed with its condition still true is due.

Each fact has one dedupe key. A deadline that moves (a re-imported visit) gives a new
key, and the alert raised for the old deadline, if any, is settled by the system as
"re-planned" — no stale alert fires, and a real lateness against the new plan still
does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from ivr.clock import format_local
from ivr.phone import mask
from scheduler.models import SEVERITY, AlertKind

MINUTE = dt.timedelta(minutes=1)


class RulesConfigError(ValueError):
    """An ``[alerts]`` setting that cannot be used; the message names it."""


@dataclasses.dataclass(frozen=True)
class Rules:
    """Thresholds, per site (``[alerts]`` in the TOML file). Time-critical visits use their own."""

    late_minutes: int = 30
    late_minutes_time_critical: int = 15
    no_departure_minutes: int = 30
    short_visit_minutes: int = 15
    short_visit_fraction: float = 0.5
    double_up_minutes: int = 15
    failed_login_attempts: int = 3
    failed_login_window_minutes: int = 60
    # How far back a pass (and the catch-up pass at start) looks for passed deadlines.
    lookback_hours: float = 12.0
    timezone: str = "Europe/London"

    @classmethod
    def from_section(cls, section: Mapping[str, Any], timezone: str = "Europe/London") -> Rules:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {"timezone": timezone}
        for key, field in fields.items():
            if key == "timezone" or key not in section:
                continue
            raw = section[key]
            try:
                value = float(raw) if field.type in (float, "float") else int(raw)
            except (TypeError, ValueError) as exc:
                raise RulesConfigError(f"[alerts] {key} must be a number, got {raw!r}") from exc
            if value < 0:
                raise RulesConfigError(f"[alerts] {key} must not be negative")
            values[key] = value
        return cls(**values)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def lookback(self) -> dt.timedelta:
        return dt.timedelta(hours=self.lookback_hours)

    def late_after(self, time_critical: bool) -> dt.timedelta:
        return (self.late_minutes_time_critical if time_critical else self.late_minutes) * MINUTE


@dataclasses.dataclass(frozen=True)
class VisitFacts:
    id: int
    visit_ref: str
    resident_id: int
    resident_ref: str
    planned_start: dt.datetime
    planned_end: dt.datetime
    time_critical: bool
    cancelled: bool
    workers_required: int
    worker_ids: tuple[int, ...] = ()
    worker_numbers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class AttendanceFacts:
    id: int
    visit_id: int | None
    resident_id: int
    resident_ref: str
    worker_id: int
    worker_number: str
    kind: str
    arrival_at: dt.datetime | None
    departure_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class CallFacts:
    id: int
    started_at: dt.datetime
    script: str
    outcome: str
    caller_e164: str | None
    worker_number_entered: str | None
    worker_id: int | None
    resident_id: int | None
    visit_id: int | None
    failed_pin_attempts: int


@dataclasses.dataclass(frozen=True)
class OpenAlert:
    """An unresolved alert the system may settle (late, missed, no departure)."""

    id: int
    kind: str
    visit_id: int | None
    worker_id: int | None
    due_at: dt.datetime


@dataclasses.dataclass
class Snapshot:
    visits: dict[int, VisitFacts] = dataclasses.field(default_factory=dict)
    attendances: list[AttendanceFacts] = dataclasses.field(default_factory=list)
    calls: list[CallFacts] = dataclasses.field(default_factory=list)

    def by_visit(self) -> dict[int, list[AttendanceFacts]]:
        out: dict[int, list[AttendanceFacts]] = defaultdict(list)
        for a in self.attendances:
            if a.visit_id is not None:
                out[a.visit_id].append(a)
        return out


@dataclasses.dataclass(frozen=True)
class Due:
    """An alert whose deadline has passed with its condition true: to be stored once."""

    kind: str
    dedupe_key: str
    due_at: dt.datetime
    visit_id: int | None = None
    worker_id: int | None = None
    resident_id: int | None = None
    attendance_id: int | None = None
    call_record_id: int | None = None
    detail: str = ""

    @property
    def severity(self) -> int:
        return SEVERITY[self.kind]


@dataclasses.dataclass(frozen=True)
class Settlement:
    alert_id: int
    note: str


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def dedupe_key(kind: str, *, visit_id: int | None = None, worker_id: int | None = None,
               attendance_id: int | None = None, call_record_id: int | None = None,
               due_at: dt.datetime | None = None) -> str:
    """The one key per fact. Deadline kinds carry the deadline, so a re-planned visit gets a new one."""
    if kind in (AlertKind.LATE, AlertKind.MISSED) and visit_id is not None and due_at is not None:
        return f"{kind}:{visit_id}:{_stamp(due_at)}"
    if kind == AlertKind.NO_DEPARTURE and visit_id is not None and due_at is not None:
        return f"{kind}:{visit_id}:{worker_id}:{_stamp(due_at)}"
    if kind == AlertKind.NO_REPLY:
        return f"{kind}:{visit_id}" if visit_id is not None else f"{kind}:call:{call_record_id}"
    if kind == AlertKind.SHORT_VISIT and attendance_id is not None:
        return f"{kind}:{attendance_id}"
    if kind == AlertKind.DOUBLE_UP_APART and visit_id is not None:
        return f"{kind}:{visit_id}"
    if kind in AlertKind.INFORMATIONAL and attendance_id is not None:
        return f"{kind}:{attendance_id}"
    if kind == AlertKind.FAILED_LOGIN and call_record_id is not None:
        return f"{kind}:call:{call_record_id}"
    raise ValueError(f"no dedupe key for {kind} with these ids; pass dedupe_key explicitly")


def _arrivals(atts: Iterable[AttendanceFacts], now: dt.datetime) -> list[dt.datetime]:
    # An arrival stamped after `now` has not happened yet as far as this pass knows.
    return sorted(a.arrival_at for a in atts if a.arrival_at is not None and a.arrival_at <= now)


def deadlines(v: VisitFacts, rules: Rules) -> dict[str, dt.datetime]:
    return {
        AlertKind.LATE: v.planned_start + rules.late_after(v.time_critical),
        AlertKind.MISSED: v.planned_end,
        AlertKind.NO_DEPARTURE: v.planned_end + rules.no_departure_minutes * MINUTE,
    }


def is_short_visit(stayed: dt.timedelta, planned: dt.timedelta, rules: Rules) -> bool:
    """The short-visit rule, in one place for the alert and the board: at most the short-visit
    minutes of a longer visit, or less than the set fraction of the planned time."""
    short_limit = rules.short_visit_minutes * MINUTE
    return (stayed <= short_limit < planned) or stayed < planned * rules.short_visit_fraction


def _visit_label(v: VisitFacts, tz: ZoneInfo) -> str:
    workers = ", ".join(v.worker_numbers) or "none assigned"
    return (f"visit {v.visit_ref} for resident {v.resident_ref}, planned {format_local(v.planned_start, tz)}"
            f"–{format_local(v.planned_end, tz, '%H:%M')}, worker(s) {workers}")


def due_alerts(snap: Snapshot, now: dt.datetime, rules: Rules) -> list[Due]:
    """Every alert whose deadline is in ``(now - lookback, now]`` and whose condition holds at ``now``."""
    tz = rules.tz
    since = now - rules.lookback
    out: list[Due] = []
    by_visit = snap.by_visit()

    def add(due: Due) -> None:
        if since < due.due_at <= now:
            out.append(due)

    def in_window(at: dt.datetime) -> bool:
        # Checked before a Due is built: most visits have no deadline in the window, and the
        # texts (local times, the visit's label) cost more than the rule itself.
        return since < at <= now

    for v in snap.visits.values():
        if v.cancelled:
            continue
        atts = by_visit.get(v.id, [])
        arrivals = _arrivals(atts, now)
        dl = deadlines(v, rules)
        first_worker = v.worker_ids[0] if v.worker_ids else None
        label: str | None = None
        for kind in (AlertKind.LATE, AlertKind.MISSED):
            if in_window(dl[kind]) and not any(t <= dl[kind] for t in arrivals):
                # Arrived after the deadline but before this pass (a catch-up): still raised,
                # then settled at once with the arrival time, so the office sees both.
                what = "no arrival by" if kind == AlertKind.LATE else "no arrival by planned end"
                label = label or _visit_label(v, tz)
                add(Due(kind, dedupe_key(kind, visit_id=v.id, due_at=dl[kind]), dl[kind], v.id, first_worker,
                        v.resident_id, detail=f"{what} {format_local(dl[kind], tz, '%H:%M')}: {label}"))
        for a in atts:
            if a.arrival_at is None or a.arrival_at > now:
                continue
            d = dl[AlertKind.NO_DEPARTURE]
            if in_window(d) and (a.departure_at is None or a.departure_at > d):
                label = label or _visit_label(v, tz)
                add(Due(AlertKind.NO_DEPARTURE,
                        dedupe_key(AlertKind.NO_DEPARTURE, visit_id=v.id, worker_id=a.worker_id, due_at=d), d,
                        v.id, a.worker_id, v.resident_id, a.id,
                        detail=f"worker {a.worker_number} arrived {format_local(a.arrival_at, tz, '%H:%M')}, "
                               f"no departure by {format_local(d, tz, '%H:%M')}: {label}"))
        if v.workers_required == 2 and arrivals:
            d = arrivals[0] + rules.double_up_minutes * MINUTE
            if in_window(d) and (len(arrivals) < 2 or arrivals[1] > d):
                second = format_local(arrivals[1], tz, "%H:%M") if len(arrivals) >= 2 and arrivals[1] <= now \
                    else "not yet"
                label = label or _visit_label(v, tz)
                add(Due(AlertKind.DOUBLE_UP_APART, dedupe_key(AlertKind.DOUBLE_UP_APART, visit_id=v.id), d, v.id,
                        None, v.resident_id,
                        detail=f"double-up: first arrival {format_local(arrivals[0], tz, '%H:%M')}, "
                               f"second {second}: {label}"))

    for a in snap.attendances:
        v = snap.visits.get(a.visit_id) if a.visit_id is not None else None
        if v is not None and v.cancelled:
            continue
        if v is not None and a.arrival_at is not None and a.departure_at is not None and a.departure_at <= now:
            planned = v.planned_end - v.planned_start
            stayed = a.departure_at - a.arrival_at
            if is_short_visit(stayed, planned, rules):
                add(Due(AlertKind.SHORT_VISIT, dedupe_key(AlertKind.SHORT_VISIT, attendance_id=a.id), a.departure_at,
                        v.id, a.worker_id, a.resident_id, a.id,
                        detail=f"worker {a.worker_number} stayed {int(stayed.total_seconds() // 60)} min of "
                               f"{int(planned.total_seconds() // 60)} planned: {_visit_label(v, tz)}"))
        if a.kind in AlertKind.INFORMATIONAL:
            at = a.arrival_at or a.departure_at
            if at is not None and at <= now:
                where = f"visit {v.visit_ref}" if v is not None else "no visit matched"
                add(Due(a.kind, dedupe_key(a.kind, attendance_id=a.id), at, a.visit_id, a.worker_id, a.resident_id,
                        a.id, detail=f"{a.kind} attendance: worker {a.worker_number} at resident {a.resident_ref} "
                                     f"{format_local(at, tz, '%H:%M')}, {where}"))

    out.extend(d for d in _no_reply(snap, now) if since < d.due_at <= now)
    out.extend(d for d in _failed_logins(snap.calls, now, rules) if since < d.due_at <= now)
    out.sort(key=lambda d: (d.due_at, d.dedupe_key))
    return out


def _no_reply(snap: Snapshot, now: dt.datetime) -> list[Due]:
    """Safety net: a no-reply call recorded without its alert (the call path raises it at once)."""
    out = []
    for c in snap.calls:
        if c.script == "noreply" and c.outcome in ("no_reply", "no_visit") and c.started_at <= now:
            visit_id = c.visit_id if c.outcome == "no_reply" else None
            v = snap.visits.get(visit_id) if visit_id is not None else None
            if v is not None and v.cancelled:
                continue
            where = f"visit {v.visit_ref}" if v is not None else "no visit matched"
            out.append(Due(AlertKind.NO_REPLY,
                           dedupe_key(AlertKind.NO_REPLY, visit_id=visit_id, call_record_id=c.id), c.started_at,
                           visit_id, c.worker_id, c.resident_id, call_record_id=c.id,
                           detail=f"no reply reported by worker {c.worker_number_entered or '?'}: {where}"))
    return out


def _failed_logins(calls: list[CallFacts], now: dt.datetime, rules: Rules) -> list[Due]:
    """Attempts (not calls) per line and per worker number in a sliding window.

    One alert per line (or number) per clock hour of the call that crossed the
    threshold: stable whatever window a pass loaded, and a long attack is repeated
    hourly rather than on every call.
    """
    window = rules.failed_login_window_minutes * MINUTE
    groups: dict[tuple[str, str], list[tuple[dt.datetime, int, CallFacts]]] = defaultdict(list)
    for c in sorted(calls, key=lambda c: (c.started_at, c.id)):
        if c.started_at > now:
            continue
        attempts = c.failed_pin_attempts or (1 if c.outcome == "failed_login" else 0)
        if attempts <= 0:
            continue
        if c.caller_e164:
            groups[("line", c.caller_e164)].append((c.started_at, attempts, c))
        if c.worker_number_entered:
            groups[("worker", c.worker_number_entered)].append((c.started_at, attempts, c))
    out: list[Due] = []
    seen: set[str] = set()
    for (by, who), items in groups.items():
        for i, (t, _n, c) in enumerate(items):
            total = sum(n for (u, n, _c) in items[: i + 1] if u > t - window)
            if total < rules.failed_login_attempts:
                continue
            key = f"failed_login:{by}:{who}:{t.astimezone(dt.UTC):%Y%m%d%H}"
            if key in seen:
                continue
            seen.add(key)
            shown = mask(who) if by == "line" else f"worker number {who}"
            out.append(Due(AlertKind.FAILED_LOGIN, key, t, None, c.worker_id, c.resident_id, call_record_id=c.id,
                           detail=f"{total} failed PIN attempts within "
                                  f"{rules.failed_login_window_minutes} min for {by} {shown}"))
    return out


def settlements(open_alerts: Iterable[OpenAlert], snap: Snapshot, now: dt.datetime, rules: Rules) -> list[Settlement]:
    """Alerts the facts have overtaken: the worker arrived or left, the visit was cancelled or re-planned."""
    tz = rules.tz
    by_visit = snap.by_visit()
    out: list[Settlement] = []
    for al in open_alerts:
        if al.kind not in (AlertKind.LATE, AlertKind.MISSED, AlertKind.NO_DEPARTURE) or al.visit_id is None:
            continue
        v = snap.visits.get(al.visit_id)
        if v is None:
            continue
        if v.cancelled:
            out.append(Settlement(al.id, "visit cancelled"))
            continue
        dl = deadlines(v, rules)[al.kind]
        if dl != al.due_at:
            out.append(Settlement(al.id, f"visit re-planned: deadline now {format_local(dl, tz)}"))
            continue
        atts = by_visit.get(v.id, [])
        if al.kind in (AlertKind.LATE, AlertKind.MISSED):
            arrivals = _arrivals(atts, now)
            if arrivals:
                who = next(a.worker_number for a in atts if a.arrival_at == arrivals[0])
                out.append(Settlement(al.id, f"worker {who} arrived {format_local(arrivals[0], tz)}"))
        else:
            for a in atts:
                if a.worker_id == al.worker_id and a.departure_at is not None and a.departure_at <= now:
                    left = format_local(a.departure_at, tz)
                    out.append(Settlement(al.id, f"worker {a.worker_number} departed {left}"))
                    break
    return out
