"""Workers' pay rules, in one place: paid time from the call records, rates, the minimum-wage check.

Spec §6.29 and the Ethical Care Charter (§6.34): care workers are paid for their time
working, not only for contact time — including **travel between visits** (not the
commute to the first visit or home from the last), and the provider pays at least the
**London Living Wage** over all that paid time.

For one worker and one local day, visits in arrival order give:

- **contact** time: each attendance's departure − arrival (true elapsed time, so a
  visit across the October clock change is paid for the hour it really lasted);
- for each gap from one departure to the next arrival on the same day: **travel** up to
  ``max_travel_minutes`` (none between two visits at the same home), the rest of the gap
  **waiting** time — unless the gap is longer than ``break_minutes``: then it is an unpaid
  break and nothing of it is paid;
- **mileage** for a travel gap between two homes, if a distance is configured for them.

All pure functions of plain values: the payroll run (:mod:`billing.payroll`), its tests
and its PDF apply exactly this arithmetic. Money is ``Decimal``; minutes are ``int``.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from billing.rules import PENNY, RATE_KINDS, day_class, local_clock
from carecall.config import ConfigError, Settings, register_table

LONDON_LIVING_WAGE_2025_26 = Decimal("13.85")  # £ an hour, Living Wage Foundation, announced Oct 2025
PERIODS = {"weekly": 7, "fortnightly": 14, "4-weekly": 28}
_MINUTE_US = 60_000_000
_US = dt.timedelta(microseconds=1)
_NO_MILES = Decimal("0")


@register_table("pay")
@dataclasses.dataclass(frozen=True)
class PayConfig:
    """``[pay]``: the pay period, the hourly rates per kind of time, travel rules and the minimum rate."""

    period: str = "weekly"  # weekly | fortnightly | 4-weekly
    anchor: str = "2026-01-05"  # a Monday: the first pay period starts here
    contact_rate: Decimal = Decimal("14.25")  # £ an hour, weekdays
    weekend_rate: Decimal = Decimal("15.25")
    bank_holiday_rate: Decimal = Decimal("21.40")
    travel_rate: Decimal = Decimal("13.85")
    waiting_rate: Decimal = Decimal("13.85")
    max_travel_minutes: int = 45  # a longer gap pays travel up to this, the rest as waiting
    break_minutes: int = 120  # a gap longer than this is an unpaid break: none of it is paid
    minimum_hourly_rate: Decimal = LONDON_LIVING_WAGE_2025_26  # over all paid time
    mileage_rate: Decimal = Decimal("0.45")  # £ a mile (HMRC approved rate), paid as expenses
    distances_file: str = ""  # CSV from_resident,to_resident,miles; relative to data_dir
    holiday_subdiv: str = "ENG"

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ConfigError(f"[pay] period must be one of {', '.join(PERIODS)}, got {self.period!r}")
        try:
            anchor = dt.date.fromisoformat(self.anchor)
        except ValueError:
            raise ConfigError(f"[pay] anchor must be a date YYYY-MM-DD, got {self.anchor!r}") from None
        if anchor.weekday() != 0:
            raise ConfigError(f"[pay] anchor {self.anchor} is not a Monday")
        for name in ("contact_rate", "weekend_rate", "bank_holiday_rate", "travel_rate", "waiting_rate",
                     "minimum_hourly_rate", "mileage_rate"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or value < 0 or value > 1000:
                raise ConfigError(f"[pay] {name} must be an amount from 0 to 1000, got {value!r}")
        if not 0 <= self.max_travel_minutes <= self.break_minutes:
            raise ConfigError("[pay] max_travel_minutes must be from 0 to break_minutes")

    @property
    def anchor_date(self) -> dt.date:
        return dt.date.fromisoformat(self.anchor)

    @property
    def period_days(self) -> int:
        return PERIODS[self.period]

    @classmethod
    def from_settings(cls, settings: Settings) -> PayConfig:
        config: PayConfig = settings.table("pay")
        if config.distances_file and not Path(config.distances_file).is_absolute():
            config = dataclasses.replace(config, distances_file=str(settings.path(config.distances_file)))
        return config


def load_distances(path: str) -> dict[frozenset[str], Decimal]:
    """Miles between two homes by resident reference, either way round; {} when not configured."""
    if not path:
        return {}
    out: dict[frozenset[str], Decimal] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh), 2):
                try:
                    out[frozenset((row["from_resident"].strip(), row["to_resident"].strip()))] = Decimal(
                        row["miles"].strip())
                except (KeyError, ArithmeticError, AttributeError) as exc:
                    raise ConfigError(f"[pay] distances_file {path} line {n}: expected from_resident,to_resident,"
                                      "miles") from exc
    except OSError as exc:
        raise ConfigError(f"[pay] distances_file {path}: {exc.strerror}") from exc
    return out


# --- periods -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PayPeriod:
    start: dt.date
    end: dt.date  # exclusive
    start_utc: dt.datetime
    end_utc: dt.datetime

    @property
    def last_day(self) -> dt.date:
        return self.end - dt.timedelta(days=1)


def _midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(dt.UTC)


def pay_period_containing(day: dt.date, config: PayConfig, tz: ZoneInfo) -> PayPeriod:
    n = (day - config.anchor_date).days // config.period_days
    start = config.anchor_date + dt.timedelta(days=n * config.period_days)
    end = start + dt.timedelta(days=config.period_days)
    return PayPeriod(start, end, _midnight(start, tz), _midnight(end, tz))


def pay_period_starting(day: dt.date, config: PayConfig, tz: ZoneInfo) -> PayPeriod:
    period = pay_period_containing(day, config, tz)
    if period.start != day:
        raise ValueError(f"{day} is not the start of a pay period: it falls in the {config.period} period "
                         f"{period.start} to {period.last_day}")
    return period


# --- one worker's time -----------------------------------------------------------------------


class Source:
    """How an attendance's times were logged: the payroll CSV marks anything not phoned in."""

    PHONE = "phone"  # both ends phoned in from the home
    MANUAL = "manual"  # an end typed in by the office with no call behind it
    CORRECTED = "corrected"  # an end phoned in, then its time changed by the office


class PayVisit(NamedTuple):
    """One attendance of the worker, as pay needs it (a named tuple: the payroll run makes one per attendance)."""

    attendance_id: int
    visit_ref: str
    resident_reference: str
    arrival_at: dt.datetime
    departure_at: dt.datetime
    source: str = Source.PHONE


def source_of(arrival_method: str | None, departure_method: str | None, arrival_called: bool,
              departure_called: bool) -> str:
    if arrival_method != "manual" and departure_method != "manual":
        return Source.PHONE  # nearly every attendance: no list, no generator
    ends = [(arrival_method, arrival_called), (departure_method, departure_called)]
    if any(m == "manual" and called for m, called in ends):
        return Source.CORRECTED
    if any(m == "manual" for m, _ in ends):
        return Source.MANUAL
    return Source.PHONE


class PayLine(NamedTuple):
    """A stretch of paid (or unpaid-break) time: contact, travel, waiting, or break."""

    kind: str  # contact | travel | waiting | break
    start: dt.datetime
    end: dt.datetime
    minutes: int
    rate_kind: str  # contact: hourly | weekend | bank holiday; else the kind
    visit_ref: str = ""
    resident_reference: str = ""
    source: str = ""
    miles: Decimal = _NO_MILES


_new = tuple.__new__  # a named tuple from a full tuple of values, without its Python-level __new__


def minutes_between(start: dt.datetime, end: dt.datetime) -> int:
    """Whole minutes of true elapsed time, half a minute rounding up."""
    micros = (end - start) // _US
    return (micros + _MINUTE_US // 2) // _MINUTE_US


def contact_rate_kind(day: dt.date, config: PayConfig) -> str:
    """Bank holiday, then weekend, then hourly, by the local date of arrival (as billing: rules.day_class)."""
    return RATE_KINDS[day_class(day, config.holiday_subdiv)]


def worker_lines(visits: Iterable[PayVisit], config: PayConfig, tz: ZoneInfo,
                 distances: Mapping[frozenset[str], Decimal] | None = None) -> Iterator[PayLine]:
    """Contact, travel, waiting and break lines for one worker's visits, given in arrival order."""
    day_of = local_clock(tz).day
    prev: PayVisit | None = None
    prev_day: dt.date | None = None  # the local date of prev's arrival
    for v in visits:
        day = day_of(v.arrival_at)
        if prev is not None and prev_day == day and v.arrival_at > prev.departure_at:
            gap = minutes_between(prev.departure_at, v.arrival_at)
            if gap > config.break_minutes:
                yield PayLine("break", prev.departure_at, v.arrival_at, gap, "break")
            elif gap > 0:
                same_home = prev.resident_reference == v.resident_reference
                travel = 0 if same_home else min(gap, config.max_travel_minutes)
                miles = _NO_MILES
                if travel and distances:
                    miles = distances.get(frozenset((prev.resident_reference, v.resident_reference)), _NO_MILES)
                if travel:
                    yield PayLine("travel", prev.departure_at, v.arrival_at, travel, "travel",
                                  resident_reference=v.resident_reference, miles=miles)
                if gap - travel:
                    yield PayLine("waiting", prev.departure_at, v.arrival_at, gap - travel, "waiting",
                                  resident_reference=v.resident_reference)
        yield _new(PayLine, ("contact", v.arrival_at, v.departure_at, minutes_between(v.arrival_at, v.departure_at),
                             contact_rate_kind(day, config), v.visit_ref, v.resident_reference, v.source, _NO_MILES))
        if prev is None or v.departure_at > prev.departure_at or day != prev_day:
            prev, prev_day = v, day


# --- a worker's period: totals and the minimum-rate check -------------------------------------


def amount(minutes: int, rate: Decimal) -> Decimal:
    return (Decimal(minutes) * rate / 60).quantize(PENNY, rounding=ROUND_HALF_UP)


@dataclasses.dataclass
class WorkerPay:
    """One worker's period: minutes by kind, pay, mileage, and whether the minimum rate is met."""

    worker_number: str
    worker_name: str
    visits: int = 0
    minutes: dict[str, int] = dataclasses.field(default_factory=dict)  # rate kind -> minutes
    miles: Decimal = Decimal("0")
    manual: int = 0
    corrected: int = 0
    open_attendances: int = 0  # arrivals with no departure: not paid until the office completes them

    def add(self, line: PayLine) -> None:
        if line.kind == "break":
            return
        self.minutes[line.rate_kind] = self.minutes.get(line.rate_kind, 0) + line.minutes
        self.miles += line.miles
        if line.kind == "contact":
            self.visits += 1
            self.manual += line.source == Source.MANUAL
            self.corrected += line.source == Source.CORRECTED

    def rate(self, kind: str, config: PayConfig) -> Decimal:
        return {"hourly": config.contact_rate, "weekend": config.weekend_rate,
                "bank holiday": config.bank_holiday_rate, "travel": config.travel_rate,
                "waiting": config.waiting_rate}[kind]

    def pay(self, kind: str, config: PayConfig) -> Decimal:
        return amount(self.minutes.get(kind, 0), self.rate(kind, config))

    @property
    def contact_minutes(self) -> int:
        return sum(self.minutes.get(k, 0) for k in ("hourly", "weekend", "bank holiday"))

    @property
    def paid_minutes(self) -> int:
        return sum(self.minutes.values())

    def gross(self, config: PayConfig) -> Decimal:
        """Pay for time worked (contact + travel + waiting); mileage is expenses, not pay."""
        return sum((self.pay(k, config) for k in self.minutes), Decimal("0.00"))

    def mileage_pay(self, config: PayConfig) -> Decimal:
        return (self.miles * config.mileage_rate).quantize(PENNY, rounding=ROUND_HALF_UP)

    def effective_rate(self, config: PayConfig) -> Decimal:
        if not self.paid_minutes:
            return Decimal("0.00")
        return (self.gross(config) * 60 / self.paid_minutes).quantize(PENNY, rounding=ROUND_HALF_UP)

    def shortfall(self, config: PayConfig) -> Decimal:
        """What would bring gross pay up to the minimum rate over all paid time (0 if met), rounded up."""
        due = (config.minimum_hourly_rate * self.paid_minutes / 60).quantize(PENNY, rounding=ROUND_CEILING)
        return max(Decimal("0.00"), due - self.gross(config))

    def below_minimum(self, config: PayConfig) -> bool:
        return self.shortfall(config) > 0
