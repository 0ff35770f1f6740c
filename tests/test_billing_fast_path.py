"""The shortcuts the big billing runs take (issue 15, Speed) give exactly the long way's answers.

The invoice run, its CSV and the pay export cache local dates per UTC hour, print pence
without ``Decimal``, bill in integer pence and settle most CSV cells with one set lookup.
Each shortcut is checked here against the plain computation it replaces, over whole
ranges of inputs: every few minutes across both 2026 clock changes in London, zones whose
offset is not whole hours or whose DST shift is 30 minutes, every amount up to a few
thousand pounds. Pure functions: no database.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest

from billing.rawio import LocalClock, pence_text, utc_writer
from billing.rules import PENNY, RATE_KINDS, day_class, line_amount, line_pence, rate_for
from ivr.csvsafe import safe_cell, writer

UTC = dt.UTC


def _instants(start: dt.datetime, hours: int, step_minutes: int = 7):
    t, end = start, start + dt.timedelta(hours=hours)
    while t < end:
        yield t + dt.timedelta(seconds=13, microseconds=5)  # not on the minute: seconds must not leak
        t += dt.timedelta(minutes=step_minutes)


# London: the 2026 changes (29 Mar 01:00 UTC, 25 Oct 01:00 UTC); Kolkata +05:30 (local
# midnight falls mid-hour in UTC); St John's −03:30 with DST at 02:00 local (a UTC half
# hour); Lord Howe, whose DST shift is 30 minutes.
CASES = [("Europe/London", dt.datetime(2026, 3, 28, 20, tzinfo=UTC)),
         ("Europe/London", dt.datetime(2026, 10, 24, 20, tzinfo=UTC)),
         ("Asia/Kolkata", dt.datetime(2026, 1, 4, 12, tzinfo=UTC)),
         ("America/St_Johns", dt.datetime(2026, 3, 7, 20, tzinfo=UTC)),
         ("America/St_Johns", dt.datetime(2026, 10, 31, 20, tzinfo=UTC)),
         ("Australia/Lord_Howe", dt.datetime(2026, 4, 4, 10, tzinfo=UTC)),
         ("Australia/Lord_Howe", dt.datetime(2026, 10, 3, 10, tzinfo=UTC))]


@pytest.mark.parametrize(("zone", "start"), CASES)
def test_local_clock_gives_the_date_and_minute_astimezone_gives(zone, start):
    tz = ZoneInfo(zone)
    clock = LocalClock(tz)
    from_text = clock.stored_minutes("sqlite")
    write = utc_writer("sqlite")
    for t in _instants(start, 30):
        exact = t.astimezone(tz)
        assert clock.day(t) == exact.date(), t
        assert clock.minutes(t) == exact.strftime("%Y-%m-%d %H:%M"), t
        assert from_text(write(t)) == exact.strftime("%Y-%m-%d %H:%M"), t
        # The same instant given in another zone (as a caller might) is converted exactly.
        assert clock.day(exact) == exact.date()
    assert from_text(None) == "" and clock.minutes(None) == ""


def test_the_london_autumn_night_repeats_its_local_hour_and_keeps_the_date():
    clock = LocalClock(ZoneInfo("Europe/London"))
    first = dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 01:30 BST
    second = dt.datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 01:30 GMT, an hour later
    assert clock.minutes(first) == clock.minutes(second) == "2026-10-25 01:30"
    assert clock.day(dt.datetime(2026, 10, 24, 23, 30, tzinfo=UTC)) == dt.date(2026, 10, 25)  # 00:30 BST
    assert clock.day(dt.datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == dt.date(2026, 12, 31)  # GMT


def _decimal_amount(minutes: int, rate: Decimal) -> Decimal:
    """The rule as first written: minutes × rate ÷ 60 in Decimal, half up to the penny."""
    return (Decimal(minutes) * rate / 60).quantize(PENNY, rounding=ROUND_HALF_UP)


@pytest.mark.parametrize("rate_pence", [1, 30, 1385, 2150, 2300, 3225, 3333, 99999])
def test_integer_pence_amounts_equal_the_decimal_rule(rate_pence):
    rate = Decimal(rate_pence) / 100
    for minutes in range(-90, 1500):
        pence = line_pence(minutes, rate_pence)
        assert Decimal(pence) / 100 == _decimal_amount(minutes, rate), (minutes, rate)
        assert line_amount(minutes, rate) == _decimal_amount(minutes, rate)


def test_pence_print_exactly_as_pounds():
    def long_way(p: int) -> str:
        sign = "-" if p < 0 else ""
        whole, part = divmod(abs(p), 100)
        return f"{sign}{whole}.{part:02d}"

    for p in [*range(-300_000, 300_000), 10**12 + 99, -(10**12) - 1, 2**40 + 7]:
        assert pence_text(p) == long_way(p), p


def test_the_cached_rate_class_is_the_rate_rule():
    rates = (Decimal("21.50"), Decimal("23.00"), Decimal("32.25"))
    from billing.rules import FunderRules

    day = dt.date(2026, 1, 1)
    while day < dt.date(2027, 1, 1):
        k = day_class(day, "ENG")
        assert rate_for(day, *rates, FunderRules()) == (RATE_KINDS[k], rates[k])
        day += dt.timedelta(days=1)
    assert day_class(dt.date(2026, 12, 28), "ENG") == 2  # Boxing Day substitute (a Monday)
    assert day_class(dt.date(2026, 1, 10), "ENG") == 1 and day_class(dt.date(2026, 1, 12), "ENG") == 0


class Tagged(str):
    """A str subclass (as a template library or enum might hand over): it must get the full test."""


def test_the_csv_fast_path_still_neutralises_every_kind_of_formula_cell():
    out = io.StringIO()
    w = writer(out)
    hostile = ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "  =1+1", "\t=1", "＝1", Tagged("=1+1"), Tagged(" @x")]
    w.writerow(hostile)
    w.writerow(iter(["-12.50", "V-1", Decimal("-3.10"), 7, None, Tagged("Alice")]))  # any iterable
    rows = out.getvalue().splitlines()
    assert rows[0].split(",") == ["'" + c for c in hostile] == [safe_cell(c) for c in hostile]
    assert rows[1] == "-12.50,V-1,-3.10,7,,Alice"
