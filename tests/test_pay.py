"""Workers' pay: contact, travel, waiting, breaks, DST, double-ups and the minimum-rate check, by hand.

Rates in these tests: contact £14.00/h (weekend £15.00), travel £13.50/h, waiting £13.00/h;
travel capped at 30 min a gap, a gap over 60 min is an unpaid break; minimum £13.85/h.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import os
import subprocess
import sys
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing.pay import PayConfig, PayVisit, Source, WorkerPay, pay_period_starting, source_of, worker_lines
from billing.payroll import CSV_COLUMNS
from carecall.config import ConfigError, parse_table
from tests.billing_world import World, utc
from tests.helpers import factory_for, import_world

D = Decimal
TZ = ZoneInfo("Europe/London")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAY = {"contact_rate": "14.00", "weekend_rate": "15.00", "bank_holiday_rate": "21.00", "travel_rate": "13.50",
       "waiting_rate": "13.00", "max_travel_minutes": 30, "break_minutes": 60, "mileage_rate": "0.45"}
CONFIG: PayConfig = parse_table("pay", PAY)


def visit(ref: str, resident: str, start: dt.datetime, end: dt.datetime, source: str = Source.PHONE) -> PayVisit:
    return PayVisit(hash(ref) & 0xFFFF, ref, resident, start, end, source)


def pay_of(*visits: PayVisit, config: PayConfig = CONFIG, distances=None) -> tuple[WorkerPay, list]:
    wp = WorkerPay("1001", "Wendy Walker")
    lines = list(worker_lines(visits, config, TZ, distances))
    for line in lines:
        wp.add(line)
    return wp, lines


def kinds(lines) -> list[tuple[str, int]]:
    return [(ln.kind, ln.minutes) for ln in lines]


def test_travel_between_two_visits_is_paid_from_departure_to_next_arrival():
    # Tue 10 Mar 2026 (GMT): R001 09:00–09:30, R002 09:50–10:20. Gap 20 min → travel 20.
    wp, lines = pay_of(visit("V1", "R001", utc(2026, 3, 10, 9), utc(2026, 3, 10, 9, 30)),
                       visit("V2", "R002", utc(2026, 3, 10, 9, 50), utc(2026, 3, 10, 10, 20)))
    assert kinds(lines) == [("contact", 30), ("travel", 20), ("contact", 30)]
    # 60 × 14.00 / 60 = 14.00; 20 × 13.50 / 60 = 4.50; gross 18.50 over 80 min = 13.875 → £13.88/h.
    assert (wp.contact_minutes, wp.minutes["travel"], wp.paid_minutes) == (60, 20, 80)
    assert (wp.gross(CONFIG), wp.effective_rate(CONFIG), wp.below_minimum(CONFIG)) == (D("18.50"), D("13.88"), False)


def test_a_long_gap_pays_travel_up_to_the_cap_and_the_rest_as_waiting():
    # Gap 10:20 → 11:05 = 45 min: travel 30 (the cap) + waiting 15.
    wp, lines = pay_of(visit("V1", "R001", utc(2026, 3, 10, 9, 50), utc(2026, 3, 10, 10, 20)),
                       visit("V2", "R002", utc(2026, 3, 10, 11, 5), utc(2026, 3, 10, 11, 35)))
    assert kinds(lines) == [("contact", 30), ("travel", 30), ("waiting", 15), ("contact", 30)]
    # 60 × 14 / 60 = 14.00; 30 × 13.50 / 60 = 6.75; 15 × 13.00 / 60 = 3.25 → 24.00.
    assert wp.gross(CONFIG) == D("24.00")


def test_a_gap_longer_than_the_break_threshold_is_not_paid_and_nor_is_the_commute():
    # 09:00–09:30 at R001, then 12:00–12:30 at R002: a 150-min gap > 60 is a break. The first visit
    # of each day has no travel before it (the commute), nor the next day's first visit after the last.
    wp, lines = pay_of(visit("V1", "R001", utc(2026, 3, 10, 9), utc(2026, 3, 10, 9, 30)),
                       visit("V2", "R002", utc(2026, 3, 10, 12), utc(2026, 3, 10, 12, 30)),
                       visit("V3", "R001", utc(2026, 3, 11, 8), utc(2026, 3, 11, 8, 30)))
    assert kinds(lines) == [("contact", 30), ("break", 150), ("contact", 30), ("contact", 30)]
    assert (wp.paid_minutes, wp.gross(CONFIG)) == (90, D("21.00"))  # 90 × 14.00 / 60


def test_exactly_the_break_threshold_is_still_paid():
    # 60 min gap (= break_minutes, not over it): travel 30 + waiting 30.
    _, lines = pay_of(visit("V1", "R001", utc(2026, 3, 10, 9), utc(2026, 3, 10, 9, 30)),
                      visit("V2", "R002", utc(2026, 3, 10, 10, 30), utc(2026, 3, 10, 11)))
    assert kinds(lines) == [("contact", 30), ("travel", 30), ("waiting", 30), ("contact", 30)]


def test_two_visits_at_the_same_home_wait_but_do_not_travel():
    _, lines = pay_of(visit("V1", "R005", utc(2026, 3, 10, 9), utc(2026, 3, 10, 9, 30)),
                      visit("V2", "R005", utc(2026, 3, 10, 9, 40), utc(2026, 3, 10, 10)))
    assert kinds(lines) == [("contact", 30), ("waiting", 10), ("contact", 20)]


def test_a_day_across_the_october_clock_change_pays_true_elapsed_time():
    # Sun 25 Oct 2026, clocks go back at 02:00 BST → 01:00 GMT. V1 arrives 00:40 BST (23:40 UTC on the
    # 24th) and leaves 01:20 GMT (01:20 UTC): 100 min really, though the wall clock says 40. V2 01:40 GMT –
    # 02:10 GMT: 30 min, after 20 min of travel. Sunday: weekend rate.
    wp, lines = pay_of(visit("V1", "R001", dt.datetime(2026, 10, 24, 23, 40, tzinfo=dt.UTC), utc(2026, 10, 25, 1, 20)),
                       visit("V2", "R002", utc(2026, 10, 25, 1, 40), utc(2026, 10, 25, 2, 10)))
    assert kinds(lines) == [("contact", 100), ("travel", 20), ("contact", 30)]
    assert lines[0].rate_kind == "weekend"
    # 130 × 15.00 / 60 = 32.50; 20 × 13.50 / 60 = 4.50 → 37.00.
    assert (wp.minutes["weekend"], wp.gross(CONFIG)) == (130, D("37.00"))


def test_a_worker_just_under_the_minimum_rate_is_flagged_with_the_shortfall():
    # 60 min contact at 14.00 = 14.00 and 30 min travel at 13.50 = 6.75: 20.75 over 1.5 h = 13.833/h.
    # Due at 13.85/h: 13.85 × 1.5 = 20.775 → 20.78 (rounded up); short by 0.03.
    wp, _ = pay_of(visit("V1", "R001", utc(2026, 3, 10, 9), utc(2026, 3, 10, 9, 30)),
                   visit("V2", "R002", utc(2026, 3, 10, 10), utc(2026, 3, 10, 10, 30)))
    assert (wp.paid_minutes, wp.gross(CONFIG), wp.effective_rate(CONFIG)) == (90, D("20.75"), D("13.83"))
    assert wp.below_minimum(CONFIG) and wp.shortfall(CONFIG) == D("0.03")
    # With travel paid at the contact rate the same time is 21.00 ≥ 20.78: met.
    better = dataclasses.replace(CONFIG, travel_rate=D("14.00"))
    assert not wp.below_minimum(better) and wp.shortfall(better) == D("0.00")


def test_mileage_between_homes_when_distances_are_configured():
    distances = {frozenset(("R001", "R002")): D("1.6")}
    wp, lines = pay_of(visit("V1", "R001", utc(2026, 3, 10, 9), utc(2026, 3, 10, 9, 30)),
                       visit("V2", "R002", utc(2026, 3, 10, 9, 45), utc(2026, 3, 10, 10, 15)),
                       visit("V3", "R001", utc(2026, 3, 10, 10, 30), utc(2026, 3, 10, 11)),
                       distances=distances)
    assert [ln.miles for ln in lines if ln.kind == "travel"] == [D("1.6"), D("1.6")]
    assert (wp.miles, wp.mileage_pay(CONFIG)) == (D("3.2"), D("1.44"))  # 3.2 × 0.45
    assert wp.gross(CONFIG) == D("27.75")  # mileage is expenses: 90 × 14/60 = 21.00 + 30 × 13.50/60 = 6.75


def test_manual_and_corrected_times_are_told_apart():
    assert source_of("phone", "phone", True, True) == Source.PHONE
    assert source_of("phone", "manual", True, False) == Source.MANUAL  # departure typed in, no call
    assert source_of("manual", "phone", True, True) == Source.CORRECTED  # phoned in, then changed


@pytest.mark.parametrize(("raw", "message"), [
    ({"period": "monthly"}, "[pay] period must be one of weekly, fortnightly, 4-weekly"),
    ({"anchor": "2026-01-06"}, "[pay] anchor 2026-01-06 is not a Monday"),
    ({"max_travel_minutes": 90, "break_minutes": 60}, "[pay] max_travel_minutes must be from 0 to break_minutes"),
    ({"travel_rate": "cheap"}, "[pay] travel_rate must be an amount"),
])
def test_bad_pay_settings_are_named(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_table("pay", raw)
    assert message in str(err.value)


def test_pay_periods_follow_the_configured_length():
    fortnightly = parse_table("pay", {"period": "fortnightly"})
    assert pay_period_starting(dt.date(2026, 1, 19), fortnightly, TZ).last_day == dt.date(2026, 2, 1)
    with pytest.raises(ValueError, match="falls in the fortnightly period 2026-01-19 to 2026-02-01"):
        pay_period_starting(dt.date(2026, 1, 26), fortnightly, TZ)


# --- through the database and the CLI, on both engines ------------------------------------------


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    return World(factory)


def test_pay_csv_per_worker_with_a_double_up_and_marked_manual_times(world, settings, tmp_path):
    (tmp_path / "pay.toml").write_text("[pay]\n" + "".join(
        f"{k} = {v!r}\n" if isinstance(v, str) else f"{k} = {v}\n" for k, v in PAY.items()).replace("'", '"'))
    # Week of Mon 9 Mar 2026. Double-up at R002 Tue 10 Mar 09:00: 1001 stays 09:00–09:40 (40 min),
    # 1002 09:02–09:30 (28 min). 1001 then travels 20 min to R001 (10:00–10:30, manual departure).
    v1 = world.visit("R002", utc(2026, 3, 10, 9), 40, workers=("1001", "1002"))
    world.attend(v1, "1001", utc(2026, 3, 10, 9), utc(2026, 3, 10, 9, 40))
    world.attend(v1, "1002", utc(2026, 3, 10, 9, 2), utc(2026, 3, 10, 9, 30))
    v2 = world.visit("R001", utc(2026, 3, 10, 10), 30)
    world.attend(v2, "1001", utc(2026, 3, 10, 10), utc(2026, 3, 10, 10, 30), method="manual",
                 entered=utc(2026, 3, 10, 11))
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "carecall", "--db", settings.db_url, "--config",
                           str(tmp_path / "pay.toml"), "pay", "--period", "2026-03-09", "--format", "csv"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS
    got = {r[0]: dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows[1:]}
    w1, w2 = got["1001"], got["1002"]
    # 1001: 70 min contact (14.00/h = 16.33), 20 travel (13.50/h = 4.50): 20.83 over 90 min = 13.89/h.
    assert (w1["visits"], w1["contact_minutes"], w1["travel_minutes"], w1["paid_minutes"]) == ("2", "70", "20", "90")
    assert (w1["contact_pay"], w1["travel_pay"], w1["gross_pay"], w1["effective_hourly_rate"]) == (
        "16.33", "4.50", "20.83", "13.89")
    assert (w1["below_minimum"], w1["manual_visits"], w1["corrected_visits"]) == ("no", "1", "0")
    # 1002: the double-up only, paid their own 28 min: 28 × 14.00 / 60 = 6.53.
    assert (w2["visits"], w2["contact_minutes"], w2["gross_pay"], w2["travel_minutes"]) == ("1", "28", "6.53", "0")
    assert (w1["period_start"], w1["period_end"]) == ("2026-03-09", "2026-03-15")


def test_pay_pdf_for_one_worker_lists_every_line(world, settings, tmp_path):
    v1 = world.visit("R002", utc(2026, 3, 10, 9), 30)
    world.attend(v1, "1001", utc(2026, 3, 10, 9), utc(2026, 3, 10, 9, 30))
    v2 = world.visit("R001", utc(2026, 3, 10, 9, 50), 30)
    world.attend(v2, "1001", utc(2026, 3, 10, 9, 50), utc(2026, 3, 10, 10, 20))
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "carecall", "--db", settings.db_url, "pay", "--period",
                           "2026-03-09", "--format", "pdf", "--worker", "1001", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run(["pdftotext", "-layout", str(tmp_path / "o" / "pay-2026-03-09-1001.pdf"), "-"],
                         capture_output=True, text=True, check=True).stdout
    text = " ".join(out.split())
    assert "Pay statement" in text and "(1001)" in text
    assert "Tue 10 Mar 09:30 09:50 travel R001 20" in text
    assert "Minimum hourly rate £13.85 over all paid time" in text
