"""Billing rules with hand-computed figures, on SQLite and PostgreSQL.

Default site: periods of 28 days from Monday 2026-01-05 (P0 = 5 Jan–1 Feb, P1 = 2 Feb–1 Mar,
P2 = 2 Mar–29 Mar, P3 = 30 Mar–26 Apr, P10 = 12 Oct–8 Nov); Lewisham rates 21.50 / weekend
23.00 / bank holiday 32.25 an hour; R001 has 10.5 h a week (cap 2,520 min a period).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing import invoices
from billing.rules import (
    FunderRules,
    billable_minutes,
    cap_minutes,
    line_amount,
    period_containing,
    period_starting,
    rate_for,
)
from tests.billing_world import World, utc, with_billing
from tests.helpers import factory_for, import_world

LONDON = ZoneInfo("Europe/London")
D = Decimal


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    return World(factory)


def doc_for(docs, po):
    [doc] = [d for d in docs if d.purchase_order == po]
    return doc


# --- pure rules -------------------------------------------------------------------------


def test_period_across_spring_clock_change_is_28_local_days_not_672_hours():
    p = period_starting(dt.date(2026, 3, 2), FunderRules(), LONDON)
    assert p.end == dt.date(2026, 3, 30)
    # 2 Mar 00:00 GMT → 30 Mar 00:00 BST = 23:00 UTC on 29 Mar: one hour short of 28 × 24 h.
    assert p.start_utc == utc(2026, 3, 2) and p.end_utc == utc(2026, 3, 29, 23)
    assert p.end_utc - p.start_utc == dt.timedelta(days=28, hours=-1)
    # 00:30 BST on 30 Mar is in the next period.
    assert period_containing(dt.date(2026, 3, 30), FunderRules(), LONDON).start == dt.date(2026, 3, 30)


def test_period_start_must_be_on_the_28_day_grid():
    with pytest.raises(ValueError, match="starts 2026-01-05"):
        period_starting(dt.date(2026, 1, 6), FunderRules(), LONDON)


def test_billable_time_rounds_to_nearest_minute_halves_up():
    r = FunderRules()
    a = utc(2026, 1, 6, 9)
    assert billable_minutes(a, a + dt.timedelta(minutes=42, seconds=30), a, a, r) == 43
    assert billable_minutes(a, a + dt.timedelta(minutes=42, seconds=29), a, a, r) == 42


def test_other_rounding_policies_nearest_quarter_and_planned_within_tolerance():
    a = utc(2026, 1, 6, 9)
    quarter = FunderRules(rounding="nearest", rounding_minutes=15)
    assert billable_minutes(a, a + dt.timedelta(minutes=37, seconds=30), a, a, quarter) == 45  # 2.5 quarters → 3
    assert billable_minutes(a, a + dt.timedelta(minutes=37, seconds=29), a, a, quarter) == 30
    planned = FunderRules(rounding="planned", planned_tolerance_minutes=5)
    end = a + dt.timedelta(minutes=30)
    assert billable_minutes(a, a + dt.timedelta(minutes=26), a, end, planned) == 30  # 4 min short: planned 30
    assert billable_minutes(a, a + dt.timedelta(minutes=24), a, end, planned) == 24  # 6 min short: actual


def test_rate_is_bank_holiday_then_weekend_then_hourly():
    r = FunderRules()
    rates = (D("21.50"), D("23.00"), D("32.25"))
    assert rate_for(dt.date(2026, 4, 3), *rates, r) == ("bank holiday", D("32.25"))  # Good Friday
    assert rate_for(dt.date(2026, 12, 26), *rates, r) == ("bank holiday", D("32.25"))  # Boxing Day, a Saturday
    assert rate_for(dt.date(2026, 1, 10), *rates, r) == ("weekend", D("23.00"))
    assert rate_for(dt.date(2026, 1, 12), *rates, r) == ("hourly", D("21.50"))
    # 17 March (St Patrick's Day) is a bank holiday in Northern Ireland only.
    assert rate_for(dt.date(2026, 3, 17), *rates, r) == ("hourly", D("21.50"))


def test_line_amount_rounds_half_up_to_the_penny_in_decimal():
    assert line_amount(45, D("32.25")) == D("24.19")  # 24.1875
    assert line_amount(1, D("0.30")) == D("0.01")  # 0.005 → 0.01 (half up, not banker's)
    assert cap_minutes(D("3"), 13, 0) == 334  # 334.28… rounded down: never above the order


# --- on the database ----------------------------------------------------------------------


def test_dst_change_day_attendance_bills_true_elapsed_minutes(world, settings):
    # Sun 25 Oct 2026: 00:50 BST (23:50 UTC 24th) → 01:10 GMT (01:10 UTC) = 80 min, Sunday → weekend 23.00.
    v = world.visit("R001", utc(2026, 10, 24, 23, 45), 90)
    world.attend(v, "1001", utc(2026, 10, 24, 23, 50), utc(2026, 10, 25, 1, 10))
    doc = doc_for(invoices.preview(world.factory, settings, dt.date(2026, 10, 12)), "PO-1001")
    [line] = doc.charged
    assert (line.billable_minutes, line.rate_kind, line.rate) == (80, "weekend", D("23.00"))
    assert doc.total == D("30.67")  # 80 × 23.00 / 60 = 30.666… → 30.67


def test_bank_holiday_attendance_uses_bank_holiday_rate(world, settings):
    # Good Friday 3 Apr 2026, 09:00–09:45 BST: 45 × 32.25 / 60 = 24.1875 → 24.19.
    v = world.visit("R001", utc(2026, 4, 3, 8), 45)
    world.attend(v, "1001", utc(2026, 4, 3, 8), utc(2026, 4, 3, 8, 45))
    doc = doc_for(invoices.preview(world.factory, settings, dt.date(2026, 3, 30)), "PO-1001")
    assert doc.charged[0].rate_kind == "bank holiday"
    assert doc.total == D("24.19")


def test_weekend_rate_judged_by_local_arrival_date(world, settings):
    # Sat 10 Jan 30 min × 23.00 = 11.50; Mon 12 Jan 30 min × 21.50 = 10.75; total 22.25.
    # A Friday visit planned 23:30 whose worker arrives 00:10 Saturday is billed at the weekend rate:
    # 20 min × 23.00 / 60 = 7.666… → 7.67; grand total 29.92.
    sat = world.visit("R001", utc(2026, 1, 10, 9), 30)
    world.attend(sat, "1001", utc(2026, 1, 10, 9), utc(2026, 1, 10, 9, 30))
    mon = world.visit("R001", utc(2026, 1, 12, 9), 30)
    world.attend(mon, "1001", utc(2026, 1, 12, 9), utc(2026, 1, 12, 9, 30))
    late = world.visit("R001", utc(2026, 1, 16, 23, 30), 30)
    world.attend(late, "1001", utc(2026, 1, 17, 0, 10), utc(2026, 1, 17, 0, 30))
    doc = doc_for(invoices.preview(world.factory, settings, dt.date(2026, 1, 5)), "PO-1001")
    assert [ln.rate_kind for ln in doc.charged] == ["weekend", "hourly", "weekend"]
    assert doc.total == D("29.92")


def test_double_up_bills_each_workers_attendance(world, settings):
    # Tue 6 Jan: 1001 45 min → 16.125 → 16.13; 1002 42 min 30 s → 43 min → 15.408… → 15.41; total 31.54.
    v = world.visit("R001", utc(2026, 1, 6, 9), 45, workers=("1001", "1002"))
    world.attend(v, "1001", utc(2026, 1, 6, 9), utc(2026, 1, 6, 9, 45))
    world.attend(v, "1002", utc(2026, 1, 6, 9, 2), utc(2026, 1, 6, 9, 44, 30))
    doc = doc_for(invoices.preview(world.factory, settings, dt.date(2026, 1, 5)), "PO-1001")
    assert sorted((ln.worker_number, ln.billable_minutes, ln.amount) for ln in doc.charged) == [
        ("1001", 45, D("16.13")), ("1002", 43, D("15.41"))]
    assert doc.total == D("31.54") and doc.visits == 1


def test_manual_entry_within_24h_is_billed_and_after_24h_is_rejected_with_reason(world, settings):
    # Both visits end 10:00 on Tue 6 Jan. Entered 23 h later (09:00 Wed): billed 60 × 21.50 / 60 = 21.50.
    # Entered 25 h later (11:00 Wed): rejected, not in the total.
    ok = world.visit("R001", utc(2026, 1, 6, 9), 60)
    world.attend(ok, "1001", utc(2026, 1, 6, 9), utc(2026, 1, 6, 10), method="manual", entered=utc(2026, 1, 7, 9))
    late = world.visit("R002", utc(2026, 1, 6, 9), 60)
    world.attend(late, "1002", utc(2026, 1, 6, 9), utc(2026, 1, 6, 10), method="manual",
                 entered=utc(2026, 1, 7, 11))
    docs = invoices.preview(world.factory, settings, dt.date(2026, 1, 5))
    billed = doc_for(docs, "PO-1001")
    assert [(ln.method, ln.amount) for ln in billed.charged] == [("manual", D("21.50"))]
    rejected = doc_for(docs, "PO-1002")
    assert rejected.total == D("0.00") and rejected.charged == []
    [ex] = rejected.exceptions
    assert ex.kind == "rejected"
    assert "entered manually 25 h 00 min after the visit's planned end (limit 24 h)" in ex.reason


def test_package_crossing_its_cap_mid_visit_is_billed_in_part(world, settings):
    # R004: 3 h/week from Mon 2 Mar (= P2 start): cap 3 × 60 × 28 / 7 = 720 min.
    # Four weekday visits 300, 300, 300, 60 min: billed 300, 300, 120 (crosses), 0; over cap 180 + 60 = 240.
    # Total 720 × 21.50 / 60 = 258.00 (107.50 + 107.50 + 43.00 + 0).
    for day, minutes in ((3, 300), (4, 300), (5, 300), (6, 60)):
        v = world.visit("R004", utc(2026, 3, day, 9), minutes)
        world.attend(v, "1001", utc(2026, 3, day, 9), utc(2026, 3, day, 9) + dt.timedelta(minutes=minutes))
    doc = doc_for(invoices.preview(world.factory, settings, dt.date(2026, 3, 2)), "PO-1004")
    assert [(ln.billable_minutes, ln.over_cap_minutes, ln.amount) for ln in doc.charged] == [
        (300, 0, D("107.50")), (300, 0, D("107.50")), (120, 180, D("43.00")), (0, 60, D("0.00"))]
    assert (doc.cap_minutes, doc.billed_minutes, doc.over_cap_minutes) == (720, 720, 240)
    assert doc.total == D("258.00")


def test_approved_extra_minutes_raise_the_cap_for_that_package_and_period(world, settings):
    # As above, plus 90 approved minutes: cap 810; billed 300, 300, 210, 0; over 90 + 60 = 150.
    # Total 810 × 21.50 / 60 = 290.25.
    for day, minutes in ((3, 300), (4, 300), (5, 300), (6, 60)):
        v = world.visit("R004", utc(2026, 3, day, 9), minutes)
        world.attend(v, "1001", utc(2026, 3, day, 9), utc(2026, 3, day, 9) + dt.timedelta(minutes=minutes))
    invoices.approve_extra_minutes(world.factory, settings, "R004", dt.date(2026, 3, 2), 90,
                                   "emergency cover after hospital discharge", "J. Commissioner")
    # An approval for another period does not count here.
    invoices.approve_extra_minutes(world.factory, settings, "R004", dt.date(2026, 3, 30), 600, "later", "J. C.")
    doc = doc_for(invoices.preview(world.factory, settings, dt.date(2026, 3, 2)), "PO-1004")
    assert [ln.billable_minutes for ln in doc.charged] == [300, 300, 210, 0]
    assert (doc.cap_minutes, doc.over_cap_minutes, doc.total) == (810, 150, D("290.25"))


def test_approval_needs_reason_and_approver(world, settings):
    with pytest.raises(invoices.BillingError, match="reason"):
        invoices.approve_extra_minutes(world.factory, settings, "R004", dt.date(2026, 3, 2), 90, " ", "J")


def test_package_starting_mid_period_has_cap_for_its_active_days_only(world, settings):
    # R005 3.5 h/week from Mon 19 Jan: active 19 Jan–1 Feb = 14 days of P0, cap 3.5 × 60 × 14 / 7 = 420.
    # Visits 20 Jan 240 min, 27 Jan 240 min → billed 240 + 180 = 420, over 60: 420 × 21.50 / 60 = 150.50.
    # A visit on 12 Jan, before the package starts, is not billed to it.
    world.resident("R005")
    world.package("R005", "PO-1005", "Lewisham", "3.5", dt.date(2026, 1, 19))
    before = world.visit("R005", utc(2026, 1, 12, 9), 60)
    world.attend(before, "1001", utc(2026, 1, 12, 9), utc(2026, 1, 12, 10))
    for day in (20, 27):
        v = world.visit("R005", utc(2026, 1, day, 9), 240)
        world.attend(v, "1001", utc(2026, 1, day, 9), utc(2026, 1, day, 13))
    doc = doc_for(invoices.preview(world.factory, settings, dt.date(2026, 1, 5)), "PO-1005")
    assert (doc.cap_minutes, doc.billed_minutes, doc.over_cap_minutes) == (420, 420, 60)
    assert doc.total == D("150.50")
    assert "V001" not in {ln.visit_ref for ln in doc.lines}


def test_visit_with_no_departure_is_an_exception_not_billed(world, settings):
    # One complete 30-minute weekday visit (10.75) and one with an arrival only.
    done = world.visit("R001", utc(2026, 1, 7, 9), 30)
    world.attend(done, "1001", utc(2026, 1, 7, 9), utc(2026, 1, 7, 9, 30))
    open_ = world.visit("R001", utc(2026, 1, 8, 9), 30)
    world.attend(open_, "1001", utc(2026, 1, 8, 9), None)
    doc = doc_for(invoices.preview(world.factory, settings, dt.date(2026, 1, 5)), "PO-1001")
    assert doc.total == D("10.75")
    [ex] = doc.exceptions
    assert (ex.kind, ex.visit_ref, ex.reason) == ("exception", open_, "no departure recorded")


def test_unscheduled_attendance_is_billed_only_once_linked_to_a_visit(world, settings):
    aid = world.attend(None, "1001", utc(2026, 1, 7, 9), utc(2026, 1, 7, 9, 30), resident="R001")
    docs = invoices.preview(world.factory, settings, dt.date(2026, 1, 5), "Lewisham")
    assert all(d.purchase_order != "PO-1001" for d in docs)
    v = world.visit("R001", utc(2026, 1, 7, 9), 30)
    from sqlalchemy import select

    from ivr.models import Attendance, Visit
    with world.factory.begin() as s:
        s.get(Attendance, aid).visit_id = s.scalar(select(Visit.id).where(Visit.visit_ref == v))
    doc = doc_for(invoices.preview(world.factory, settings, dt.date(2026, 1, 5), "Lewisham"), "PO-1001")
    assert doc.total == D("10.75")  # 30 × 21.50 / 60


def test_funder_can_choose_nearest_quarter_hour_rounding(world, settings):
    # Lewisham bills to the nearest 15 min: 37 min 30 s → 45 min → 45 × 21.50 / 60 = 16.125 → 16.13.
    s2 = with_billing(settings, funders={"Lewisham": {"rounding": "nearest", "rounding_minutes": 15}})
    v = world.visit("R001", utc(2026, 1, 6, 9), 30)
    world.attend(v, "1001", utc(2026, 1, 6, 9), utc(2026, 1, 6, 9, 37, 30))
    doc = doc_for(invoices.preview(world.factory, s2, dt.date(2026, 1, 5)), "PO-1001")
    assert doc.charged[0].billable_minutes == 45 and doc.total == D("16.13")
