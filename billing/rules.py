"""Every billing rule, in one place: periods, billable time, rates, manual entries, the cap.

These are pure functions of plain values (no database), so each rule can be read and
tested on its own and the invoice run, the adjustment check and the timesheet all apply
exactly the same arithmetic. Minutes are ``int``; money is whole pence (``int``) inside the
invoice run — a 350,000-attendance period is one loop over plain tuples — and ``Decimal``
at the edges (a :class:`Line`, an invoice total, the printed figures): ``to_pence`` /
``from_pence`` convert exactly, since every rate is stored to the penny.

Configuration is the ``[billing]`` table, with per-funder overrides in
``[billing.funders."Name"]``::

    [billing]
    anchor = "2026-01-05"          # a Monday; periods run 28 local days from 00:00
    rounding = "minute"            # minute | nearest | planned
    [billing.funders.Lewisham]
    rounding = "nearest"
    rounding_minutes = 15
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import holidays

from billing.provider import Provider
from billing.rawio import LocalClock
from carecall.config import ConfigError, Settings, register_table
from ivr.models import Method

PENNY = Decimal("0.01")
ROUNDINGS = ("minute", "nearest", "planned")
_MINUTE_US = 60_000_000
_US = dt.timedelta(microseconds=1)


# --- configuration -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FunderRules:
    """The rules one funder is billed under; defaults are the council contract's (spec 10.8, 11)."""

    anchor: dt.date = dt.date(2026, 1, 5)
    period_days: int = 28
    payment_days: int = 28
    rounding: str = "minute"
    rounding_minutes: int = 15  # "nearest": round to this many minutes
    planned_tolerance_minutes: int = 5  # "planned": bill the planned time if actual is this close
    manual_window_hours: int = 24
    private: bool = False  # one invoice per resident instead of per purchase order
    late_minutes: int = 15  # timesheet flag: arrival this long after the planned start
    short_minutes: int = 10  # timesheet flag: this many minutes less than planned
    holiday_subdiv: str = "ENG"


_FIELDS = {f.name: f for f in dataclasses.fields(FunderRules)}
_GLOBAL_ONLY = {"invoice_prefix", "credit_note_prefix", "private_funders", "funders", "workers"}


def _coerce(name: str, value: Any) -> Any:
    default = getattr(FunderRules(), name)
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or int(value) != value:
                raise TypeError
            return int(value)
        if isinstance(default, dt.date):
            return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[billing] {name}: bad value {value!r}") from exc


def _apply(base: FunderRules, table: Mapping[str, Any], where: str) -> FunderRules:
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key in _GLOBAL_ONLY and where == "[billing]":
            continue
        if key not in _FIELDS:
            raise ConfigError(f"{where}: unknown setting {key!r}")
        changes[key] = _coerce(key, value)
    rules = dataclasses.replace(base, **changes)
    if rules.rounding not in ROUNDINGS:
        raise ConfigError(f"{where}: rounding must be one of {', '.join(ROUNDINGS)}, got {rules.rounding!r}")
    if rules.anchor.weekday() != 0:
        raise ConfigError(f"{where}: anchor {rules.anchor} is not a Monday")
    if rules.period_days < 1 or rules.rounding_minutes < 1 or rules.manual_window_hours < 0:
        raise ConfigError(f"{where}: period_days and rounding_minutes must be positive")
    return rules


@dataclasses.dataclass(frozen=True)
class BillingConfig:
    """The site's billing settings: defaults, per-funder overrides, invoice numbering."""

    tz: ZoneInfo
    default: FunderRules
    funders: Mapping[str, FunderRules]
    invoice_prefix: str = "INV-"
    credit_note_prefix: str = "CN-"
    provider: Provider = dataclasses.field(default_factory=Provider)  # letterhead and bank details
    # Processes that work out a big issue run's bills (billing.parallel); None: one per spare core.
    workers: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BillingConfig:
        return cls.from_section(settings.section("billing"), settings.tz, Provider.from_settings(settings))

    @classmethod
    def from_section(cls, section: Mapping[str, Any], tz: ZoneInfo, provider: Provider | None = None) -> BillingConfig:
        default = _apply(FunderRules(), section, "[billing]")
        private = section.get("private_funders", ["Private"])
        if not isinstance(private, list):
            raise ConfigError("[billing] private_funders must be a list of funder names")
        funders: dict[str, FunderRules] = {name: dataclasses.replace(default, private=True) for name in private}
        for name, table in (section.get("funders") or {}).items():
            if not isinstance(table, dict):
                raise ConfigError(f"[billing.funders.{name}] must be a table")
            funders[name] = _apply(funders.get(name, default), table, f"[billing.funders.{name}]")
        workers = section.get("workers", "auto")
        if workers != "auto" and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
            raise ConfigError('[billing] workers must be "auto" or a whole number, 0 for none')
        return cls(tz, default, funders, str(section.get("invoice_prefix", "INV-")),
                   str(section.get("credit_note_prefix", "CN-")), provider or Provider(),
                   None if workers == "auto" else workers)

    def for_funder(self, funder: str) -> FunderRules:
        return self.funders.get(funder, self.default)

    def invoice_number(self, number: int | None) -> str:
        return "DRAFT" if number is None else f"{self.invoice_prefix}{number:06d}"

    def credit_note_number(self, number: int) -> str:
        return f"{self.credit_note_prefix}{number:06d}"


# --- periods ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Period:
    """Local days ``start`` … ``end - 1``; the UTC bounds are local midnights, so DST days count as days."""

    start: dt.date
    end: dt.date  # exclusive
    start_utc: dt.datetime
    end_utc: dt.datetime

    @property
    def last_day(self) -> dt.date:
        return self.end - dt.timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def contains(self, day: dt.date) -> bool:
        return self.start <= day < self.end


def _midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(dt.UTC)


def period_containing(day: dt.date, rules: FunderRules, tz: ZoneInfo) -> Period:
    offset = (day - rules.anchor).days // rules.period_days
    start = rules.anchor + dt.timedelta(days=offset * rules.period_days)
    end = start + dt.timedelta(days=rules.period_days)
    return Period(start, end, _midnight(start, tz), _midnight(end, tz))


def period_starting(day: dt.date, rules: FunderRules, tz: ZoneInfo) -> Period:
    """The period that starts on ``day``; a day inside a period is refused, naming the right start."""
    period = period_containing(day, rules, tz)
    if period.start != day:
        raise ValueError(f"{day} is not the start of a billing period (that period starts {period.start})")
    return period


def issue_dates(period: Period, rules: FunderRules) -> tuple[dt.date, dt.date]:
    """Invoiced in arrears: issued the day after the period ends, due ``payment_days`` later."""
    issue = period.end
    return issue, issue + dt.timedelta(days=rules.payment_days)


def active_days(start: dt.date, end: dt.date | None, period: Period) -> int:
    """Days of the period on which a package running ``start``…``end`` (inclusive) is active."""
    first = max(start, period.start)
    last = min(end, period.last_day) if end is not None else period.last_day
    return max(0, (last - first).days + 1)


# --- time and money -------------------------------------------------------------------


def _round_half_up(micros: int, unit_minutes: int) -> int:
    unit = unit_minutes * _MINUTE_US
    return (micros + unit // 2) // unit * unit_minutes


def billable_minutes(arrival: dt.datetime, departure: dt.datetime, planned_start: dt.datetime,
                     planned_end: dt.datetime, rules: FunderRules) -> int:
    """Departure − arrival (true elapsed time, so DST never adds or loses an hour), rounded by the funder's policy."""
    micros = (departure - arrival) // _US
    if rules.rounding == "nearest":
        return _round_half_up(micros, rules.rounding_minutes)
    if rules.rounding == "planned":
        planned = (planned_end - planned_start) // _US
        if abs(micros - planned) <= rules.planned_tolerance_minutes * _MINUTE_US:
            return _round_half_up(planned, 1)
    return _round_half_up(micros, 1)


@functools.lru_cache(maxsize=64)
def _holidays(year: int, subdiv: str) -> holidays.HolidayBase:
    return holidays.country_holidays("GB", subdiv=subdiv, years=year)


RATE_KINDS = ("hourly", "weekend", "bank holiday")  # indexed by day_class


@functools.lru_cache(maxsize=4096)
def day_class(day: dt.date, subdiv: str) -> int:
    """0 hourly, 1 weekend, 2 bank holiday (bank holiday first, then weekend) for a local date.

    Cached per date: the invoice run asks once per attendance, the answer changes once a day.
    """
    if day in _holidays(day.year, subdiv):
        return 2
    return 1 if day.weekday() >= 5 else 0


def rate_for(day: dt.date, hourly: Decimal, weekend: Decimal, bank_holiday: Decimal,
             rules: FunderRules) -> tuple[str, Decimal]:
    """Bank-holiday rate first, then weekend, then hourly, by the local date of arrival."""
    k = day_class(day, rules.holiday_subdiv)
    return RATE_KINDS[k], (hourly, weekend, bank_holiday)[k]


def line_pence(minutes: int, rate_pence: int) -> int:
    """minutes × rate an hour, in whole pence, half a penny rounding up (exact integer arithmetic)."""
    return (2 * minutes * rate_pence + 60) // 120 if minutes >= 0 else -((-2 * minutes * rate_pence + 60) // 120)


def line_amount(minutes: int, rate: Decimal) -> Decimal:
    return from_pence(line_pence(minutes, to_pence(rate)))


def to_pence(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value(rounding=ROUND_HALF_UP))


def from_pence(pence: int) -> Decimal:
    return (Decimal(pence) / 100).quantize(PENNY)


def cap_minutes(weekly_hours: Decimal, days_active: int, approved: int) -> int:
    """Commissioned minutes for the days active (rounded down: never bill above the order) + approved extras."""
    base = (Decimal(weekly_hours) * 60 * days_active / 7).to_integral_value(rounding=ROUND_FLOOR)
    return int(base) + approved


def late_manual_entry(method: str | None, entered_at: dt.datetime | None, planned_end: dt.datetime,
                      rules: FunderRules, which: str) -> str | None:
    """The reason a manual time cannot be paid (spec 10.8), or None if it can."""
    if method != Method.MANUAL:
        return None
    if entered_at is None:
        return f"{which} entered manually with no entry time recorded"
    late = entered_at - planned_end
    if late > dt.timedelta(hours=rules.manual_window_hours):
        hours, rest = divmod(int(late.total_seconds()) // 60, 60)
        return (f"{which} entered manually {hours} h {rest:02d} min after the visit's planned end "
                f"(limit {rules.manual_window_hours} h)")
    return None


# --- one package's period -------------------------------------------------------------


class AttendanceRow(NamedTuple):
    """What billing needs to know about one attendance (already linked to a visit).

    A named tuple, not a dataclass: the invoice run builds one per attendance.
    """

    attendance_id: int
    visit_ref: str
    resident_id: int
    worker_number: str
    planned_start: dt.datetime
    planned_end: dt.datetime
    arrival_at: dt.datetime | None
    arrival_method: str | None
    arrival_entered_at: dt.datetime | None
    departure_at: dt.datetime | None
    departure_method: str | None
    departure_entered_at: dt.datetime | None
    arrival_unanswered: bool = False
    departure_unanswered: bool = False


@dataclasses.dataclass(frozen=True)
class PackageInfo:
    package_id: int
    resident_id: int
    resident_reference: str
    purchase_order: str
    funder: str
    weekly_hours: Decimal
    hourly_rate: Decimal
    weekend_rate: Decimal
    bank_holiday_rate: Decimal
    start_date: dt.date
    end_date: dt.date | None

    def active_on(self, day: dt.date) -> bool:
        return self.start_date <= day and (self.end_date is None or day <= self.end_date)


@dataclasses.dataclass(frozen=True)
class Line:
    """One attendance's outcome: billed (perhaps in part), or an exception / rejection with its reason."""

    kind: str  # billed | exception | rejected (see billing.models.LineKind)
    attendance_id: int
    package_id: int
    resident_reference: str
    visit_ref: str
    worker_number: str
    planned_start: dt.datetime
    planned_end: dt.datetime
    arrival_at: dt.datetime | None
    departure_at: dt.datetime | None
    method: str
    billable_minutes: int = 0
    over_cap_minutes: int = 0
    rate_kind: str = ""
    rate: Decimal = Decimal("0.00")
    amount: Decimal = Decimal("0.00")
    reason: str = ""

    def ledger_key(self) -> tuple[Any, ...]:
        """What must match for a later recomputation to count as "unchanged"."""
        return (self.billable_minutes, self.amount, self.rate, self.arrival_at, self.departure_at, self.method)


class RawLine(NamedTuple):
    """A :class:`Line` as the invoice run carries it: the attendance row itself, whole pence."""

    kind: str
    row: AttendanceRow
    method: str
    billable_minutes: int = 0
    over_cap_minutes: int = 0
    rate_kind: str = ""
    rate_pence: int = 0
    amount_pence: int = 0
    reason: str = ""


@dataclasses.dataclass
class PackageBill:
    """One package's period: the cap, the lines in time order, and the totals the invoice header needs."""

    package: PackageInfo
    period: Period
    cap_minutes: int
    raw_lines: list[RawLine]
    over_cap_minutes: int = 0
    visits: int = 0  # distinct visits with billed minutes

    @functools.cached_property
    def lines(self) -> list[Line]:
        """The lines as :class:`Line` objects (``Decimal`` money), built only when asked for."""
        p = self.package
        return [Line(r.kind, r.row.attendance_id, p.package_id, p.resident_reference, r.row.visit_ref,
                     r.row.worker_number, r.row.planned_start, r.row.planned_end, r.row.arrival_at,
                     r.row.departure_at, r.method, r.billable_minutes, r.over_cap_minutes, r.rate_kind,
                     from_pence(r.rate_pence), from_pence(r.amount_pence), r.reason) for r in self.raw_lines]

    @property
    def billed(self) -> list[Line]:
        return [ln for ln in self.lines if ln.kind == "billed"]


# Logged by phone, but an end came from an unanswered call (the worker's own number rung, no
# PIN: docs/telephony.md). Billed like "phone"; printed so the funder sees the weaker proof.
UNANSWERED_METHOD = "noanswer"
_PHONE, _MANUAL = str(Method.PHONE), str(Method.MANUAL)


def method_of(row: AttendanceRow) -> str:
    """An attendance is electronically logged only if both ends were (spec 10.6): "phone", or
    "device"/"tag" for an end logged without the landline; phone with an unanswered-mode end
    is :data:`UNANSWERED_METHOD`; any manual end makes it "manual"."""
    if (row.arrival_method == _PHONE and row.departure_method == _PHONE and not row.arrival_unanswered
            and not row.departure_unanswered):
        return _PHONE  # nearly every attendance: answered without building a set
    if Method.MANUAL in (row.arrival_method, row.departure_method):
        return Method.MANUAL
    if row.arrival_unanswered or row.departure_unanswered:
        return UNANSWERED_METHOD
    # No landline (docs/no-landline.md): "device" or "tag" when an end was logged that way.
    others = sorted({row.arrival_method, row.departure_method} - {None, Method.PHONE})
    return "+".join(others) if others else Method.PHONE


_new = tuple.__new__  # a named tuple from a full tuple of values, without its Python-level __new__


def _order(row: AttendanceRow) -> tuple[dt.datetime, int]:
    return (row.arrival_at or row.planned_start, row.attendance_id)


@functools.lru_cache(maxsize=16)
def local_clock(tz: ZoneInfo) -> LocalClock:
    """One per-hour cache per zone for the whole process (it holds a few entries per hour of data)."""
    return LocalClock(tz)


def bill_package(package: PackageInfo, period: Period, rows: Iterable[AttendanceRow], rules: FunderRules,
                 tz: ZoneInfo, approved_minutes: int = 0) -> PackageBill:
    """Bill one package's attendances for one period, in time order, up to its cap (spec 11.2-11.3).

    The one loop every invoice, preview and correction goes through: plain tuples in,
    whole pence out, the rate class of each local date and the local date of each UTC
    hour cached, the cap a running integer.
    """
    cap = cap_minutes(package.weekly_hours, active_days(package.start_date, package.end_date, period),
                      approved_minutes)
    rates = (to_pence(package.hourly_rate), to_pence(package.weekend_rate), to_pence(package.bank_holiday_rate))
    day_of, subdiv = local_clock(tz).day, rules.holiday_subdiv
    used = over_total = 0
    visits: set[str] = set()
    lines: list[RawLine] = []
    append = lines.append
    for row in sorted(rows, key=_order):
        method = method_of(row)
        arrival, departure = row.arrival_at, row.departure_at
        if arrival is None or departure is None:
            missing = "arrival" if arrival is None else "departure"
            if arrival is None and departure is None:
                missing = "arrival and departure"
            append(RawLine("exception", row, method, reason=f"no {missing} recorded"))
            continue
        if row.arrival_method == _MANUAL or row.departure_method == _MANUAL:
            reasons = [r for r in (
                late_manual_entry(row.arrival_method, row.arrival_entered_at, row.planned_end, rules, "arrival"),
                late_manual_entry(row.departure_method, row.departure_entered_at, row.planned_end, rules,
                                  "departure"),
            ) if r]
            if reasons:
                append(RawLine("rejected", row, method, reason="; ".join(reasons)))
                continue
        minutes = billable_minutes(arrival, departure, row.planned_start, row.planned_end, rules)
        room = cap - used
        billed = minutes if minutes <= room else (room if room > 0 else 0)
        used += billed
        k = day_class(day_of(arrival), subdiv)
        rate = rates[k]
        over = minutes - billed
        if over:
            over_total += over
        if billed:
            visits.add(row.visit_ref)
        append(_new(RawLine, ("billed", row, method, billed, over, RATE_KINDS[k], rate, line_pence(billed, rate),
                              "over commissioned hours" if over else "")))
    return PackageBill(package, period, cap, lines, over_total, len(visits))


# --- the [billing] table, checked once at start -------------------------------------


def _billing_fields() -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = [
        ("invoice_prefix", "str", dataclasses.field(default="INV-")),
        ("credit_note_prefix", "str", dataclasses.field(default="CN-")),
        ("private_funders", "Any", dataclasses.field(default_factory=lambda: ["Private"])),
        ("funders", "Any", dataclasses.field(default_factory=dict)),  # [billing.funders."Name"] tables
        ("workers", "Any", dataclasses.field(default="auto")),
    ]
    for f in dataclasses.fields(FunderRules):
        out.append((f.name, "Any", dataclasses.field(default=f.default)))  # _coerce checks each
    return out


def _check_billing(self: Any) -> None:
    BillingConfig.from_section({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, ZoneInfo("UTC"))


# Registered so carecall.config.validate checks [billing] at start (unknown keys, bad
# values, each funder's table) instead of when the first invoice runs.
BillingTable = register_table("billing")(dataclasses.make_dataclass(
    "BillingTable", _billing_fields(), frozen=True,
    namespace={"__post_init__": _check_billing, "__module__": __name__, "__doc__": "Every key of [billing]."}))
