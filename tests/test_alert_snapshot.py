"""The pass reads only what can be due, and that changes no alert.

:func:`scheduler.store.load_snapshot` solves each rule's deadline for the stored column
(a visit is read for "late" only once its start + 15/30 min has passed, an arrival for
"double-up" only once it is 15 min old). This test builds a random morning of visits,
attendances, calls and open alerts, then at many instants compares the alerts and
settlements computed from that narrow read with those computed from every row in the
database. A range written one minute too tight makes them differ.
"""

from __future__ import annotations

import datetime as dt
import random
import threading

from sqlalchemy import select, update

from ivr.db import reading, unit_of_work
from ivr.models import Attendance, Visit
from scheduler.rules import MINUTE, Rules, deadlines, due_alerts, settlements
from scheduler.store import _attendance_query, _calls, _snapshot, load_snapshot, pass_would_write, raise_alert
from tests.test_alerts_world import DAY, at, attend, call, run, world

RESIDENTS = ("R001", "R002", "R003", "R004")
WORKERS = ("1001", "1002", "1003", "1004")


def random_morning(settings, rng: random.Random):
    rows = []
    for i in range(40):
        start = f"{rng.randint(7, 11):02d}:{rng.choice((0, 5, 15, 20, 30, 45, 50)):02d}"
        workers = ";".join(rng.sample(WORKERS, 2)) if rng.random() < 0.25 else rng.choice(WORKERS)
        rows.append((f"V{i}", rng.choice(RESIDENTS), start, rng.choice((15, 30, 45, 60)), workers,
                     "yes" if rng.random() < 0.3 else "no"))
    factory = world(settings, tuple(rows))
    with factory() as s:
        visits = list(s.execute(select(Visit.visit_ref, Visit.planned_start, Visit.planned_end)))
    for ref, start, _end in visits:
        for worker in rng.sample(WORKERS, rng.choice((0, 1, 1, 2))):
            arrival = start + rng.randint(-30, 300) * MINUTE + rng.randint(0, 59) * dt.timedelta(seconds=1)
            departure = None if rng.random() < 0.3 else arrival + rng.randint(3, 90) * MINUTE
            kind = "scheduled" if rng.random() < 0.8 else "substitute"
            attend(factory, ref, worker, arrival, departure, kind=kind)
    for _ in range(10):  # unscheduled attendances (no visit)
        arrival = at("07:00") + rng.randint(0, 300) * MINUTE
        departure = None if rng.random() < 0.5 else arrival + rng.randint(5, 60) * MINUTE
        attend(factory, None, rng.choice(WORKERS), arrival, departure, kind="unscheduled",
               resident_ref=rng.choice(RESIDENTS))
    for _ in range(4):  # departures only (a manual correction's shape): due at the departure
        departure = at("07:00") + rng.randint(0, 300) * MINUTE
        attend(factory, None, rng.choice(WORKERS), None, departure, kind="unscheduled",
               resident_ref=rng.choice(RESIDENTS))
    for _ in range(12):
        started = at("07:00") + rng.randint(0, 300) * MINUTE
        outcome = rng.choice(("failed_login", "no_reply", "no_visit", "arrival"))
        call(factory, started, outcome=outcome, failed=rng.choice((0, 1, 2, 3)), caller="+442086989911",
             number=rng.choice(WORKERS), script="noreply" if outcome in ("no_reply", "no_visit") else "checkin",
             visit_ref=rng.choice(visits)[0] if outcome == "no_reply" else None)
    rules = Rules()
    with unit_of_work(factory) as s:  # open alerts, some on a deadline since re-planned
        for ref, start, end in rng.sample(visits, 12):
            vid = s.scalar(select(Visit.id).where(Visit.visit_ref == ref))
            kind = rng.choice(("late", "missed"))
            due = start + rules.late_after(False) if kind == "late" else end
            if rng.random() < 0.3:
                due += 10 * MINUTE
            raise_alert(s, kind=kind, visit_id=vid, at=due, due_at=due)
    return factory


def everything(session, now: dt.datetime, rules: Rules):
    all_visits = set(session.scalars(select(Visit.id)))
    all_attendances = session.execute(_attendance_query().order_by(Attendance.id)).all()
    # The calls are read as the pass reads them: this compares the visits and attendances.
    return _snapshot(session, all_visits, all_attendances, calls=_calls(session, now - rules.lookback, now, rules))


def test_the_narrow_read_raises_and_settles_exactly_what_reading_everything_does(settings):
    rng = random.Random(20261123)
    factory = random_morning(settings, rng)
    rules = Rules(lookback_hours=2)  # a short look-back puts the window's far edge inside the morning too
    instants = [DAY.replace(hour=6) + k * 7 * MINUTE + rng.randint(0, 59) * dt.timedelta(seconds=1)
                for k in range(75)]
    second = dt.timedelta(seconds=1)
    with factory() as s:
        # Every deadline to the second on both sides, as it enters the window and as it leaves it.
        late_day = DAY + dt.timedelta(days=1)
        wide = Rules(lookback_hours=48)
        dues = {d.due_at for d in due_alerts(everything(s, late_day, wide), late_day, wide)}
        dues |= {d for v in everything(s, DAY, rules).visits.values() for d in deadlines(v, rules).values()}
        edges = sorted({t for d in dues for t in (d - second, d, d + rules.lookback - second, d + rules.lookback)})
        instants += edges
        compared = raised = settled = 0
        for now in instants:
            narrow, open_alerts = load_snapshot(s, now, rules)
            full = everything(s, now, rules)
            want = due_alerts(full, now, rules)
            assert due_alerts(narrow, now, rules) == want, now
            want_settled = settlements(open_alerts, full, now, rules)
            assert settlements(open_alerts, narrow, now, rules) == want_settled, now
            assert len(narrow.visits) <= len(full.visits)
            compared += 1
            raised += len(want)
            settled += len(want_settled)
    # The world must exercise the rules, or the comparison proves nothing.
    assert compared > 100 and raised > 100 and settled > 10
    with factory() as s:
        kinds = {d.kind for now in instants[:75] for d in due_alerts(everything(s, now, rules), now, rules)}
    assert {"late", "missed", "no_departure", "short_visit", "double_up_apart", "substitute", "unscheduled",
            "no_reply", "failed_login"} <= kinds


def test_a_visit_still_before_its_deadlines_is_not_read(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    attend(factory, "V1", "1001", at("10:02"))
    with factory() as s:
        snap, _ = load_snapshot(s, at("10:10"), Rules())
        assert snap.visits == {}  # started and attended, but late is 10:30 and double-up does not apply
        snap, _ = load_snapshot(s, at("10:30"), Rules())
        assert list(snap.visits) == [s.scalar(select(Visit.id))]


def test_a_pass_asks_under_no_lock_whether_it_has_anything_to_write(settings):
    factory = world(settings)  # V2 is time-critical: late at 10:15
    rules = Rules()

    def would(now: dt.datetime) -> bool:
        with reading(factory) as s:
            return pass_would_write(s, now, rules)[0]

    assert would(at("10:14", 59)) is False
    assert would(at("10:15")) is True
    assert [r["kind"] for r in run(factory, at("10:15")).raised] == ["late"]
    assert would(at("10:15")) is False  # stored: a second pass has nothing to write
    attend(factory, "V2", "1002", at("10:16"))
    assert would(at("10:17")) is True  # the late alert can be settled
    assert len(run(factory, at("10:17")).settled) == 1
    assert would(at("10:17")) is False

    # A check-in's write transaction is open (on SQLite it holds the database's one write
    # lock): the quiet pass still reads and answers, instead of waiting behind it.
    answers: list[bool] = []
    with factory.kw["bind"].begin() as writer:
        writer.execute(update(Visit).where(Visit.visit_ref == "V1").values(time_critical=False))
        reader = threading.Thread(target=lambda: answers.append(would(at("10:18"))))
        reader.start()
        reader.join(timeout=5)
        assert answers == [False], "the pass waited for the writer"
