"""A constructed March 2026 (Europe/London; clocks go forward Sunday 29 March) for the KPI tests.

Every figure the tests expect is derived by hand from this file; the derivations sit in
tests/test_kpi.py. Times below are LOCAL wall-clock times.

Residents (funder / team): RA Lewisham/North, RB Lewisham/South, RC Private/North,
RD Lewisham/South, RE Lewisham/North (package, no visits).
Packages: RA 2.5 h/wk; RB 3 h/wk; RC PO-C1 10 h/wk until Sun 29 March, PO-C2 14 h/wk
from Mon 30 March; RD 36 h/wk; RE 5 h/wk. All started 2026-01-05.
Workers: 2001 W1 … 2005 W5.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from ivr.clock import local_to_utc
from ivr.models import Attendance, CarePackage, Resident, Visit, VisitWorker, Worker

LONDON = ZoneInfo("Europe/London")
# 23:00 UTC on 31 March = 00:00 BST 1 April: every visit of the month is over except
# RA-EDGE-END (22:30-23:30 UTC), which is still running.
NOW = dt.datetime(2026, 3, 31, 23, 0, tzinfo=dt.UTC)
FROM, TO = dt.date(2026, 3, 1), dt.date(2026, 3, 31)


def local(text: str) -> dt.datetime:
    return local_to_utc(dt.datetime.strptime(text, "%Y-%m-%d %H:%M"), LONDON)


class World:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.residents: dict[str, Resident] = {}
        self.workers: dict[str, Worker] = {}

    def resident(self, ref: str, funder: str, team: str, name: str = "") -> Resident:
        r = Resident(reference=ref, name=name or f"Name of {ref}", address=f"{ref} Secret Street, London",
                     postcode="SE6 9ZZ", funder=funder, team=team)
        self.s.add(r)
        self.s.flush()
        self.residents[ref] = r
        return r

    def worker(self, number: str, team: str, name: str, mobile: str) -> Worker:
        w = Worker(worker_number=number, name=name, pin_hash="x" * 64, mobile_e164=mobile, team=team)
        self.s.add(w)
        self.s.flush()
        self.workers[number] = w
        return w

    def package(self, ref: str, po: str, funder: str, weekly: str, start: str, end: str | None = None) -> None:
        self.s.add(CarePackage(
            resident_id=self.residents[ref].id, purchase_order=po, funder=funder, weekly_hours=Decimal(weekly),
            hourly_rate=Decimal("20"), weekend_rate=Decimal("22"), bank_holiday_rate=Decimal("30"),
            start_date=dt.date.fromisoformat(start), end_date=None if end is None else dt.date.fromisoformat(end)))

    def visit(self, ref: str, resident: str, start: str, minutes: int,
              attend: list[tuple[str, int, int | None, str, str | None]] = (),  # type: ignore[assignment]
              critical: bool = False, required: int = 1, cancelled: bool = False,
              start_seconds: int = 0) -> Visit:
        """``attend``: (worker, minutes after planned start arrived, minutes stayed or None, arr method, dep method)."""
        ps = local(start) + dt.timedelta(seconds=start_seconds)
        v = Visit(visit_ref=ref, resident_id=self.residents[resident].id, planned_start=ps,
                  planned_end=ps + dt.timedelta(minutes=minutes), workers_required=required, time_critical=critical,
                  status="cancelled" if cancelled else "scheduled")
        self.s.add(v)
        self.s.flush()
        for pos, (w, after, stayed, am, dm) in enumerate(attend, 1):
            worker = self.workers[w]
            self.s.add(VisitWorker(visit_id=v.id, worker_id=worker.id, position=pos))
            arr = ps + dt.timedelta(minutes=after)
            self.s.add(Attendance(
                visit_id=v.id, resident_id=v.resident_id, worker_id=worker.id, kind="scheduled",
                arrival_at=arr, arrival_method=am,
                departure_at=None if stayed is None else arr + dt.timedelta(minutes=stayed), departure_method=dm))
        return v

    def unscheduled(self, resident: str, worker: str, start: str, minutes: int) -> None:
        arr = local(start)
        self.s.add(Attendance(visit_id=None, resident_id=self.residents[resident].id,
                              worker_id=self.workers[worker].id, kind="unscheduled", arrival_at=arr,
                              arrival_method="phone", departure_at=arr + dt.timedelta(minutes=minutes),
                              departure_method="phone"))


PHONE = "phone"
MANUAL = "manual"


def build_month(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        w = World(s)
        w.resident("RA", "Lewisham", "North", "Alice Brown")
        w.resident("RB", "Lewisham", "South", "Bob Green")
        w.resident("RC", "Private", "North", "Cara White")
        w.resident("RD", "Lewisham", "South", "Dan Black")
        w.resident("RE", "Lewisham", "North", "Eve Grey")
        w.worker("2001", "North", "Wendy Walker", "+447911123001")
        w.worker("2002", "South", "Sam Smith", "+447911123002")
        w.worker("2003", "South", "Priya Patel", "+447911123003")
        w.worker("2004", "North", "Tom Taylor", "+447911123004")
        w.worker("2005", "North", "Uma Upton", "+447911123005")
        w.package("RA", "PO-A", "Lewisham", "2.5", "2026-01-05")
        w.package("RB", "PO-B", "Lewisham", "3", "2026-01-05")
        w.package("RC", "PO-C1", "Private", "10", "2026-01-05", "2026-03-29")
        w.package("RC", "PO-C2", "Private", "14", "2026-03-30")
        w.package("RD", "PO-D", "Lewisham", "36", "2026-01-05")
        w.package("RE", "PO-E", "Lewisham", "5", "2026-01-05")

        # W1 at RA, 2-21 March 09:00, 60 min, on time; 17 phone/phone, 3 with a manual departure.
        for i, day in enumerate(range(2, 22)):
            dep = MANUAL if i in (3, 9, 15) else PHONE
            w.visit(f"RA-W1-{day:02d}", "RA", f"2026-03-{day:02d} 09:00", 60, [("2001", 0, 60, PHONE, dep)])
        w.visit("RA-LATE30", "RA", "2026-03-22 09:00", 60, [("2005", 30, 60, PHONE, PHONE)])
        w.visit("RA-LATE31", "RA", "2026-03-23 09:00", 60, [("2005", 31, 60, PHONE, PHONE)])
        w.visit("RA-EDGE-START", "RA", "2026-03-01 00:30", 60, [("2003", 0, 60, PHONE, PHONE)])
        w.visit("RA-EDGE-END", "RA", "2026-03-31 23:30", 60, [("2003", 0, None, PHONE, None)])
        w.visit("RA-CANC", "RA", "2026-03-24 09:00", 60, [("2004", 40, 5, MANUAL, MANUAL)], cancelled=True)
        # Out of range: 1 April 00:30 BST is 31 March 23:30 UTC; 28 Feb 23:30 GMT.
        w.visit("RA-OUT-AFTER", "RA", "2026-04-01 00:30", 10, [("2004", 50, 5, MANUAL, MANUAL)])
        w.visit("RA-OUT-BEFORE", "RA", "2026-02-28 23:30", 10, [("2004", 50, 5, MANUAL, MANUAL)])

        # W2 at RB, 2-5 March 10:00, 30 min; the 5 March one with a manual arrival.
        for day in range(2, 6):
            am = MANUAL if day == 5 else PHONE
            w.visit(f"RB-W2-{day:02d}", "RB", f"2026-03-{day:02d} 10:00", 30, [("2002", 0, 30, am, PHONE)])
        w.unscheduled("RB", "2002", "2026-03-10 12:00", 20)
        # Time-critical at RB, 08:00, 30 min planned.
        w.visit("RB-TC1", "RB", "2026-03-06 08:00", 30, [("2003", 15, 30, PHONE, PHONE)], critical=True)
        w.visit("RB-TC2", "RB", "2026-03-07 08:00", 30, [("2003", 16, 30, PHONE, PHONE)], critical=True)
        w.visit("RB-TC3", "RB", "2026-03-08 08:00", 30, [("2003", -15, 30, PHONE, PHONE)], critical=True)
        w.visit("RB-TC4", "RB", "2026-03-09 08:00", 30, [], critical=True)

        # RC: short visits; the 30 March one falls on PO-C2 by local date (29 March 23:30 UTC).
        w.visit("RC-SHORT15", "RC", "2026-03-10 14:00", 30, [("2004", 0, 15, PHONE, PHONE)])
        w.visit("RC-SHORT16", "RC", "2026-03-11 14:00", 30, [("2004", 0, 16, PHONE, PHONE)])
        w.visit("RC-P15", "RC", "2026-03-30 00:30", 15, [("2005", 0, 20, PHONE, PHONE)])

        # RD: double-ups, 09:00, 60 min each worker.
        w.visit("RD-DBL1", "RD", "2026-03-12 09:00", 60,
                [("2003", 0, 60, PHONE, PHONE), ("2004", 15, 60, PHONE, PHONE)], required=2)
        w.visit("RD-DBL2", "RD", "2026-03-13 09:00", 60,
                [("2003", 0, 60, PHONE, PHONE), ("2004", 16, 60, PHONE, PHONE)], required=2)
        w.visit("RD-DBL3", "RD", "2026-03-14 09:00", 60, [("2003", 0, 60, PHONE, PHONE)], required=2)


# --------------------------------------------------------------------------- tests

import pytest  # noqa: E402

from carecall.config import Settings  # noqa: E402
from reports.kpi import KpiReport, compute  # noqa: E402
from tests.helpers import factory_for  # noqa: E402


@pytest.fixture
def month(settings: Settings) -> KpiReport:
    factory = factory_for(settings)
    build_month(factory)
    return compute(factory, settings, FROM, TO, now=NOW)


def test_range_is_local_dates_and_visits_not_yet_due_are_left_out(month: KpiReport) -> None:
    # Due, in range, not cancelled: RA 20 + LATE30 + LATE31 + EDGE-START = 23, RB 4 + TC1-4 = 8,
    # RC 3, RD 3 -> 37. RA-EDGE-END (31 Mar 23:30 BST) is in range but still running at NOW.
    # RA-OUT-AFTER (1 Apr 00:30 BST = 31 Mar 23:30 UTC) and RA-OUT-BEFORE are outside; RA-CANC is cancelled.
    assert month.visits_due == 37
    assert month.visits_not_yet_due == 1


def test_compliance_share_and_worker_at_exactly_85_percent_is_not_below(month: KpiReport) -> None:
    c = month.compliance
    # Delivered attendances of due visits + unscheduled: W1 20 (17 phone), W2 4 + 1 unscheduled (4 phone),
    # W3 7 (EDGE-START, TC1-3, DBL1-3), W4 4 (SHORT15/16, DBL1/2), W5 3 (LATE30/31, P15) -> 35 of 39.
    assert (c.share.overall.numerator, c.share.overall.denominator) == (35, 39)
    assert str(c.share.overall.percent) == "89.7"
    assert c.share.overall.met is False  # 35*100 = 3500 < 90*39 = 3510
    # Lewisham (RA, RB, RD): 39 - 3 Private (SHORT15, SHORT16, P15) = 36, phone 35 - 3 = 32.
    assert (c.share.by_funder["Lewisham"].numerator, c.share.by_funder["Lewisham"].denominator) == (32, 36)
    assert (c.share.by_funder["Private"].numerator, c.share.by_funder["Private"].denominator) == (3, 3)
    # Team North: RA 23 attendances (20 W1 + 2 W5 + 1 W3; 17+3 phone) + RC 3 -> 23 of 26.
    assert (c.share.by_team["North"].numerator, c.share.by_team["North"].denominator) == (23, 26)
    by_number = {w.worker_number: w for w in c.workers}
    assert (by_number["2001"].phone, by_number["2001"].delivered) == (17, 20)
    assert by_number["2001"].below_floor is False  # 17/20 = exactly 85%
    assert (by_number["2002"].phone, by_number["2002"].delivered) == (4, 5)  # 80%
    assert [w.worker_number for w in c.workers_below_floor] == ["2002"]
    # Drill-down: the 4 attendances not phone-logged at both ends.
    assert sorted(r.visit_ref for r in c.rows) == ["RA-W1-05", "RA-W1-11", "RA-W1-17", "RB-W2-05"]


def test_punctuality_exactly_15_minutes_late_or_early_is_punctual(month: KpiReport) -> None:
    p = month.punctuality
    # Time-critical: TC1 +15 (punctual), TC2 +16 (late), TC3 -15 (punctual), TC4 missed -> 2 of 4.
    assert (p.time_critical.overall.numerator, p.time_critical.overall.denominator) == (2, 4)
    assert p.time_critical.overall.met is False
    # Other (window 30): 37 - 4 = 33 due; only RA-LATE31 (+31) outside; RA-LATE30 (+30) is punctual.
    assert (p.other.overall.numerator, p.other.overall.denominator) == (32, 33)
    assert {r.visit_ref: r.detail for r in p.rows} == {
        "RB-TC2": "time-critical: arrived 16 min late",
        "RB-TC4": "time-critical: missed",
        "RA-LATE31": "other: arrived 31 min late",
    }


def test_missed_and_late_visits_are_counted_and_listed(month: KpiReport) -> None:
    assert month.missed.count == 1 and [r.visit_ref for r in month.missed.rows] == ["RB-TC4"]
    assert month.missed.met is False
    # Late = first arrival beyond the visit's window: TC2 (+16 > 15), LATE31 (+31 > 30).
    assert month.late.count == 2
    assert [r.visit_ref for r in month.late.rows] == ["RB-TC2", "RA-LATE31"]  # by planned start
    assert month.late.by_team == {"South": 1, "North": 1}


def test_visit_of_exactly_15_minutes_counts_as_15_minutes_or_less(month: KpiReport) -> None:
    # SHORT15 stayed 15 -> short; SHORT16 stayed 16 -> not; P15 planned 15 (stayed 20) -> planned short only.
    assert [r.visit_ref for r in month.short_delivered.rows] == ["RC-SHORT15"]
    assert month.short_delivered.count == 1
    assert [r.visit_ref for r in month.short_planned.rows] == ["RC-P15"]
    assert month.short_planned.by_funder == {"Lewisham": 0, "Private": 1}


def test_double_up_arrivals_more_than_15_minutes_apart(month: KpiReport) -> None:
    # DBL1 15 min apart (together enough), DBL2 16 apart, DBL3 one worker only.
    assert month.double_up_visits == 2
    assert [r.visit_ref for r in month.double_up_apart.rows] == ["RD-DBL2"]
    assert [r.visit_ref for r in month.double_up_single.rows] == ["RD-DBL3"]


def test_hours_commissioned_planned_delivered_per_package(month: KpiReport) -> None:
    got = {p.purchase_order: (p.commissioned_hours, p.planned_hours, p.delivered_hours) for p in month.hours.packages}
    D = Decimal
    assert got == {
        # 2.5*31/7 = 11.07; planned 24 x 1 h (EDGE-END counts: planned, not due); delivered 23 h (EDGE-END open).
        "PO-A": (D("11.07"), D("24.00"), D("23.00")),
        # 3*31/7 = 13.29; planned 8 x 0.5 h; delivered 7 x 0.5 h (TC4 missed).
        "PO-B": (D("13.29"), D("4.00"), D("3.50")),
        # until 29 March: 10*29/7 = 41.43; 2 x 0.5 h planned; 15 + 16 = 31 min delivered = 0.52.
        "PO-C1": (D("41.43"), D("1.00"), D("0.52")),
        # from 30 March: 14*2/7 = 4.00; P15 (30 March 00:30 BST, 29 March by UTC date) is here.
        "PO-C2": (D("4.00"), D("0.25"), D("0.33")),
        # 36*31/7 = 159.43; 3 double-ups x 60 min x 2 workers = 6 h; delivered 2 + 2 + 1 h.
        "PO-D": (D("159.43"), D("6.00"), D("5.00")),
        "PO-E": (D("22.14"), D("0.00"), D("0.00")),
    }
    assert [p.purchase_order for p in month.hours.over_commissioned] == ["PO-A"]
    assert month.hours.met is False
    assert (month.hours.overall.commissioned, month.hours.overall.planned, month.hours.overall.delivered) == (
        D("251.36"), D("35.25"), D("32.35"))


def test_carer_consistency_by_band_of_the_5_27_table(month: KpiReport) -> None:
    cons = {p.purchase_order: (p.band, p.workers, p.within_primary, p.within_secondary)
            for p in month.consistency.packages}
    assert cons == {
        "PO-A": ("<3 hrs", 3, False, True),  # W1, W5, W3: "1 worker" fails, "no more than 3" holds
        "PO-B": ("3-10 hrs", 2, True, True),  # exactly 3 h/week is in 3-10; W2, W3
        "PO-C1": ("10-25 hrs", 1, True, True),  # exactly 10 h/week is in 10-25
        "PO-C2": ("10-25 hrs", 1, True, True),
        "PO-D": ("36+ hrs", 2, True, True),  # exactly 36 is 36+
    }
    assert len(month.consistency.unattended_packages) == 1  # PO-E: nothing to measure
    bands = {b.band.label: (b.primary.numerator, b.primary.denominator, b.primary.met,
                            b.secondary.numerator, b.secondary.denominator, b.secondary.met)
             for b in month.consistency.bands}
    assert bands == {
        "<3 hrs": (0, 1, False, 1, 1, True),
        "3-10 hrs": (1, 1, True, 1, 1, True),
        "10-25 hrs": (2, 2, True, 2, 2, True),
        "25-36 hrs": (0, 0, None, 0, 0, None),
        "36+ hrs": (1, 1, True, 1, 1, True),
    }
    assert month.consistency.met is False


def test_funder_filter_restricts_every_figure(settings: Settings) -> None:
    factory = factory_for(settings)
    build_month(factory)
    r = compute(factory, settings, FROM, TO, funder="Private", now=NOW)
    assert r.visits_due == 3
    assert (r.compliance.share.overall.numerator, r.compliance.share.overall.denominator) == (3, 3)
    assert [p.purchase_order for p in r.hours.packages] == ["PO-C1", "PO-C2"]
    assert r.missed.count == 0 and r.short_delivered.count == 1
