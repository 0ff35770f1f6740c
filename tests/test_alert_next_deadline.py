"""The scheduler's wake-up time: :func:`scheduler.store.next_deadline`.

The service sleeps until the next deadline the database holds, so that time must never
be later than the first alert the rules would raise (a late wake is a late alert), and
must be a real deadline (an early wake is a wasted pass). For each alert kind a world
is built whose earliest deadline, at a random second, is that kind's; the next deadline
must be exactly the ``due_at`` of the alert the rules then raise, and nothing may fire
before it. A random morning (the snapshot test's) then checks, at many instants, that it
is the earliest of the fact deadlines computed here in Python and never after the
earliest alert.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import select, update

from ivr.models import Visit
from scheduler.models import AlertKind
from scheduler.rules import MINUTE, Rules, due_alerts
from scheduler.store import next_deadline
from tests.test_alert_snapshot import everything, random_morning
from tests.test_alerts_world import at, attend, call, visit_id, world

SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)
NOW = at("10:00")


def _plan(factory, ref: str, start: dt.datetime, end: dt.datetime, **values) -> None:
    with factory.begin() as s:
        s.execute(update(Visit).where(Visit.visit_ref == ref).values(planned_start=start, planned_end=end, **values))


def _build(settings, kind: str, r: dt.timedelta):
    """A world whose earliest deadline after NOW is ``kind``'s, at NOW + r (r < 10 min)."""
    due = NOW + r
    if kind == AlertKind.DOUBLE_UP_APART:
        factory = world(settings, (("V1", "R001", "09:00", 60, "1001;1002", "no"),))
    else:
        factory = world(settings, (("V1", "R001", "09:00", 60, "1001", "no"),))
    if kind == AlertKind.LATE:  # late = start + 30 min (or 15 if time-critical), nobody came
        critical = bool(r.total_seconds() % 2)
        start = due - (15 if critical else 30) * MINUTE
        _plan(factory, "V1", start, start + HOUR, time_critical=critical)
    elif kind == AlertKind.MISSED:  # late passed already; missed at the planned end
        _plan(factory, "V1", due - 50 * MINUTE, due)
    elif kind == AlertKind.NO_DEPARTURE:  # arrived, never left: planned end + 30 min
        end = due - 30 * MINUTE
        _plan(factory, "V1", end - 45 * MINUTE, end)
        attend(factory, "V1", "1001", end - 40 * MINUTE)
    elif kind == AlertKind.DOUBLE_UP_APART:  # the first of two arrived, the second not within 15 min
        arrival = due - 15 * MINUTE
        _plan(factory, "V1", arrival - 2 * MINUTE, arrival + HOUR)
        attend(factory, "V1", "1001", arrival)
    elif kind == AlertKind.SHORT_VISIT:  # a departure stamped ahead (a correction typed early)
        _plan(factory, "V1", due - 6 * MINUTE, due + HOUR)
        attend(factory, "V1", "1001", due - 5 * MINUTE, due)
    elif kind in AlertKind.INFORMATIONAL:
        _plan(factory, "V1", NOW - 3 * HOUR, NOW - 2 * HOUR)  # every deadline of V1 long past
        attend(factory, "V1" if kind == AlertKind.SUBSTITUTE else None, "1003", due, kind=kind,
               resident_ref="R002")
    elif kind == AlertKind.NO_REPLY:
        _plan(factory, "V1", NOW - 3 * HOUR, NOW - 2 * HOUR)
        call(factory, due, outcome="no_reply", script="noreply", number="1001", visit_ref="V1", worker="1001")
    elif kind == AlertKind.FAILED_LOGIN:  # the third failed PIN within the hour crosses the threshold
        _plan(factory, "V1", NOW - 3 * HOUR, NOW - 2 * HOUR)
        for when in (NOW - 20 * MINUTE, NOW - 10 * MINUTE, due):
            call(factory, when, outcome="failed_login", failed=1, caller="+442086989911", number="1001")
    else:  # pragma: no cover - a new kind needs its case here
        raise AssertionError(kind)
    return factory


KINDS = (AlertKind.LATE, AlertKind.MISSED, AlertKind.NO_DEPARTURE, AlertKind.DOUBLE_UP_APART, AlertKind.SHORT_VISIT,
         AlertKind.SUBSTITUTE, AlertKind.UNSCHEDULED, AlertKind.NO_REPLY, AlertKind.FAILED_LOGIN)


@pytest.mark.parametrize("kind", KINDS)
def test_the_next_deadline_is_the_instant_the_rules_raise_each_kind(settings, kind):
    rng = random.Random(f"next-{kind}")
    r = dt.timedelta(seconds=rng.randint(1, 599), microseconds=rng.randint(0, 999_999))
    factory = _build(settings, kind, r)
    rules = Rules()
    with factory() as s:
        nd = next_deadline(s, NOW, rules, HOUR)
        assert nd == NOW + r
        # Nothing fires between now and that instant; at it, this kind does, due exactly then.
        assert [d for d in due_alerts(everything(s, nd - dt.timedelta(microseconds=1), rules),
                                      nd - dt.timedelta(microseconds=1), rules) if d.due_at > NOW] == []
        fired = [d for d in due_alerts(everything(s, nd, rules), nd, rules) if d.due_at > NOW]
        assert fired and {(d.kind, d.due_at) for d in fired} == {(kind, nd)}  # failed login: by line and by number
        # Past the horizon it is not looked for (the next pass asks again); an instant later it is gone.
        assert next_deadline(s, NOW, rules, r - SECOND) is None
        assert next_deadline(s, nd, rules, HOUR) != nd


def _fact_deadlines(snap, rules: Rules) -> list[dt.datetime]:
    """Every rule's deadline of every stored fact, written out here independently of store.py."""
    out = []
    for v in snap.visits.values():
        out += [v.planned_start + rules.late_after(v.time_critical), v.planned_end,
                v.planned_end + rules.no_departure_minutes * MINUTE]
    for a in snap.attendances:
        if a.arrival_at is not None:
            out.append(a.arrival_at + rules.double_up_minutes * MINUTE)
            if a.kind in AlertKind.INFORMATIONAL:
                out.append(a.arrival_at)
        if a.departure_at is not None:
            out.append(a.departure_at)
    out += [c.started_at for c in snap.calls
            if c.failed_pin_attempts > 0 or c.outcome in ("failed_login", "no_reply", "no_visit")]
    return out


def test_on_a_random_morning_the_next_deadline_is_the_earliest_fact_and_never_after_an_alert(settings):
    rng = random.Random(20261201)
    factory = random_morning(settings, rng)
    rules = Rules(lookback_hours=2)
    wide = Rules(lookback_hours=48)
    day_end = at("23:59")
    horizon = 20 * MINUTE
    checked = woke_for_alert = 0
    with factory() as s:
        full = everything(s, day_end, wide)
        facts = sorted(_fact_deadlines(full, rules))
        alerts = sorted({d.due_at for d in due_alerts(full, day_end, wide)})
        instants = [at("06:00") + k * 3 * MINUTE + rng.randint(0, 179) * SECOND for k in range(100)]
        instants += [t - SECOND for t in alerts[::3]] + alerts[1::3]  # just before and exactly at a deadline
        for now in instants:
            nd = next_deadline(s, now, rules, horizon)
            upcoming = [t for t in facts if now < t <= now + horizon]
            assert nd == (min(upcoming) if upcoming else None), now
            first_alert = next((t for t in alerts if t > now), None)
            if first_alert is not None and first_alert <= now + horizon:
                assert nd is not None and nd <= first_alert, now
                woke_for_alert += nd == first_alert
            checked += 1
    assert checked > 100 and woke_for_alert > 30  # the morning has deadlines to find


def test_each_deadline_of_a_visit_wakes_the_scheduler_once_then_the_next(settings):
    """From each deadline the next one is found, and a visit whose deadlines are all past wakes nothing."""
    factory = world(settings, (("V1", "R001", "09:00", 60, "1001", "no"),))
    assert visit_id(factory, "V1")
    with factory() as s:
        # late 09:30, missed 10:00, no departure 10:30 (only if someone arrived; still a fact here)
        assert next_deadline(s, at("09:00"), Rules(), HOUR) == at("09:30")
        assert next_deadline(s, at("09:30"), Rules(), HOUR) == at("10:00")
        assert next_deadline(s, at("10:00"), Rules(), HOUR) == at("10:30")
        assert next_deadline(s, at("10:30"), Rules(), HOUR) is None
        assert s.scalar(select(Visit.time_critical)) is False
