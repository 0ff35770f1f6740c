"""The alert rules with injected time: each kind at its deadline and not a second before, once.

World (tests/test_alerts_world.py): V1 R001 10:00–10:45 worker 1001; V2 R002 10:00–11:00
time-critical worker 1002; V3 R003 10:00–11:00 double-up 1003+1004. Times are GMT = UTC.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from ivr.db import unit_of_work
from ivr.models import Visit
from scheduler.models import Alert, AlertAction, AlertStatus
from scheduler.rules import Rules
from scheduler.store import raise_alert
from tests.test_alerts_world import (
    at,
    attend,
    call,
    cancel,
    kinds,
    reimport,
    run,
    stored,
    visit_id,
    world,
)


def test_late_fires_at_start_plus_30_and_time_critical_at_plus_15_not_a_second_before(settings):
    factory = world(settings)
    attend(factory, "V3", "1003", at("10:01"))
    attend(factory, "V3", "1004", at("10:02"))
    v1, v2 = visit_id(factory, "V1"), visit_id(factory, "V2")
    # V2 is time-critical: 10:00 + 15 min = 10:15; V1 is not: 10:00 + 30 min = 10:30.
    assert kinds(run(factory, at("10:14", 59))) == []
    assert kinds(run(factory, at("10:15"))) == [("late", v2)]
    assert kinds(run(factory, at("10:29", 59))) == []
    assert kinds(run(factory, at("10:30"))) == [("late", v1)]
    late = [a for a in stored(factory) if a.kind == "late"]
    assert [(a.visit_id, a.due_at, a.raised_at) for a in late] == [
        (v2, at("10:15"), at("10:15")), (v1, at("10:30"), at("10:30"))]
    assert all("Brown" not in a.detail and "Green" not in a.detail for a in late)  # never a resident's name


def test_missed_fires_at_planned_end_only_without_any_arrival(settings):
    factory = world(settings)
    attend(factory, "V2", "1002", at("10:05"))
    attend(factory, "V3", "1003", at("10:01"))
    attend(factory, "V3", "1004", at("10:02"))
    v1 = visit_id(factory, "V1")
    run(factory, at("10:44", 59))
    assert [a.kind for a in stored(factory)] == ["late"]  # V1 late at 10:30 only
    assert kinds(run(factory, at("10:45"))) == [("missed", v1)]  # V1 ends 10:45
    assert kinds(run(factory, at("11:00"))) == []  # V2, V3 ended with arrivals: not missed


def test_no_departure_fires_30_minutes_after_planned_end_per_worker(settings):
    factory = world(settings)
    attend(factory, "V1", "1001", at("10:00"))  # V1 ends 10:45 → no departure deadline 11:15
    attend(factory, "V3", "1003", at("10:00"), at("11:00"))
    attend(factory, "V3", "1004", at("10:00"))  # V3 ends 11:00 → 11:30, only 1004 has not left
    v1, v3 = visit_id(factory, "V1"), visit_id(factory, "V3")
    attend(factory, "V2", "1002", at("10:00"), at("11:00"))
    assert kinds(run(factory, at("11:14", 59))) == []
    assert kinds(run(factory, at("11:15"))) == [("no_departure", v1)]
    assert kinds(run(factory, at("11:29", 59))) == []
    res = run(factory, at("11:30"))
    assert kinds(res) == [("no_departure", v3)]
    assert res.raised[0]["worker_id"] is not None and "1004" in res.raised[0]["detail"]


def test_no_departure_is_settled_by_the_system_when_the_worker_leaves(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    attend(factory, "V1", "1001", at("10:00"))
    run(factory, at("11:15"))
    attend(factory, "V1", "1001", None, at("11:20"))
    res = run(factory, at("11:20", 10))
    assert [r["kind"] for r in res.settled] == ["no_departure"]
    (alert,) = stored(factory)
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_by_system
    assert "11:20" in alert.resolution_note


def test_short_visit_at_15_minutes_or_under_half_the_planned_time(settings):
    factory = world(settings, (
        ("S1", "R001", "09:00", 45, "1001", "no"),
        ("S2", "R002", "09:00", 45, "1002", "no"),
        ("S3", "R003", "09:00", 45, "1003", "no"),
        ("S4", "R004", "09:00", 15, "1004", "no"),
    ))
    a1 = attend(factory, "S1", "1001", at("09:00"), at("09:15"))  # 15 ≤ 15 and 45 planned: short
    attend(factory, "S2", "1002", at("09:00"), at("09:22"))  # 22 < 45/2 = 22.5: short
    attend(factory, "S3", "1003", at("09:00"), at("09:23"))  # 23 ≥ 22.5 and > 15: fine
    attend(factory, "S4", "1004", at("09:00"), at("09:12"))  # 12 of 15 planned: ≥ 7.5 and not "more planned"
    assert kinds(run(factory, at("09:14", 59))) == []
    res = run(factory, at("09:15"))
    assert [(r["kind"], r["due_at"]) for r in res.raised] == [("short_visit", at("09:15").isoformat())]
    assert res.raised[0]["dedupe_key"] == f"short_visit:{a1}"
    assert [r["kind"] for r in run(factory, at("10:00")).raised] == ["short_visit"]  # S2 at 09:22


def test_double_up_apart_fires_15_minutes_after_the_first_arrival(settings):
    factory = world(settings, (
        ("D1", "R001", "10:00", 60, "1001;1002", "no"),
        ("D2", "R002", "10:00", 60, "1003;1004", "no"),
    ))
    attend(factory, "D1", "1001", at("10:02"))
    attend(factory, "D1", "1002", at("10:20"))  # 18 min apart: fires at 10:02 + 15 = 10:17
    attend(factory, "D2", "1003", at("10:00"))
    attend(factory, "D2", "1004", at("10:15"))  # exactly 15 apart: fine
    d1 = visit_id(factory, "D1")
    assert kinds(run(factory, at("10:16", 59))) == []
    res = run(factory, at("10:17"))
    assert kinds(res) == [("double_up_apart", d1)]
    assert "second not yet" in res.raised[0]["detail"]
    assert [r["kind"] for r in run(factory, at("10:59")).raised] == []


def test_failed_logins_count_attempts_not_calls_per_line_and_per_worker_within_an_hour(settings):
    factory = world(settings)
    line = "+442086989911"
    call(factory, at("09:00"), outcome="arrival", failed=2, caller=line, number="1001")  # 2 wrong, then right
    c2 = call(factory, at("09:50"), outcome="arrival", failed=1, caller=line, number="1002")
    # Line: 2 + 1 = 3 attempts within 09:00–09:50: fires at 09:50. Worker 1001 had 2, 1002 had 1: nothing.
    assert kinds(run(factory, at("09:49", 59))) == []
    res = run(factory, at("09:50"))
    assert [(r["kind"], r["dedupe_key"]) for r in res.raised] == [
        ("failed_login", f"failed_login:line:{line}:2026031009")]
    assert "+44" not in res.raised[0]["detail"] and "911" in res.raised[0]["detail"]  # masked
    with factory() as s:
        assert s.scalar(select(Alert.call_record_id)) == c2
    # Two attempts at 11:00 and one at 12:01 are more than an hour apart: nothing.
    call(factory, at("11:00"), outcome="arrival", failed=2, caller="+442086989922")
    call(factory, at("12:01"), outcome="failed_login", failed=1, caller="+442086989922")
    # One call that failed three times for worker 1003 from unknown lines: fires at once.
    call(factory, at("12:30"), outcome="failed_login", failed=3, number="1003")
    res = run(factory, at("12:30"))
    assert [r["dedupe_key"] for r in res.raised if r["kind"] == "failed_login"] == [
        "failed_login:worker:1003:2026031012"]


def test_substitute_and_unscheduled_attendances_are_informational(settings):
    factory = world(settings)
    attend(factory, "V1", "1004", at("10:05"), kind="substitute")
    attend(factory, None, "1003", at("14:00"), kind="unscheduled", resident_ref="R004")
    res = run(factory, at("10:05"))
    assert [(r["kind"], r["severity"]) for r in res.raised] == [("substitute", 1)]
    res = run(factory, at("14:00"))
    assert [(r["kind"], r["severity"]) for r in res.raised if r["severity"] == 1] == [("unscheduled", 1)]


def test_cancelled_visits_raise_nothing_of_any_kind(settings):
    factory = world(settings)
    for ref in ("V1", "V2", "V3"):
        cancel(factory, ref)
    attend(factory, "V3", "1003", at("10:00"), at("10:05"))  # would be short and double-up apart
    call(factory, at("10:20"), outcome="no_reply", script="noreply", visit_ref="V1", number="1001")
    for hhmm in ("10:15", "10:30", "11:00", "12:00", "18:00"):
        assert run(factory, at(hhmm)).raised == []
    assert stored(factory) == []


def test_a_visit_cancelled_after_its_late_alert_settles_the_alert(settings):
    factory = world(settings)
    run(factory, at("10:15"))
    cancel(factory, "V2")
    res = run(factory, at("10:16"))
    assert [(r["kind"], r["note"]) for r in res.settled] == [("late", "visit cancelled")]


def test_each_alert_is_stored_exactly_once_however_many_passes_run(settings):
    factory = world(settings)
    total = 0
    for minute in range(0, 181, 1):  # every minute from 10:00 to 13:00
        total += len(run(factory, at("10:00") + dt.timedelta(minutes=minute)).raised)
    # V1 late+missed, V2 late+missed, V3 late+missed: 6; nobody arrived, so nothing else.
    assert total == 6 and len(stored(factory)) == 6
    assert len({a.dedupe_key for a in stored(factory)}) == 6


def test_restart_catch_up_raises_every_deadline_passed_while_down(settings):
    factory = world(settings)
    attend(factory, "V3", "1003", at("10:40"))  # late (10:30) but arrived before the server came back
    # The server was down from 09:00 until 12:00: one pass at start sees everything.
    res = run(factory, at("12:00"))
    got = sorted((r["kind"], r["visit_id"]) for r in res.raised)
    v1, v2, v3 = (visit_id(factory, r) for r in ("V1", "V2", "V3"))
    # V1: late, missed; V2: late, missed; V3: late (arrived 10:40 after the 10:30 deadline),
    # double-up apart (1004 never came: 10:40 + 15), no departure (11:00 + 30 = 11:30).
    assert got == sorted([("late", v1), ("missed", v1), ("late", v2), ("missed", v2), ("late", v3),
                          ("double_up_apart", v3), ("no_departure", v3)])
    assert [(r["kind"], r["note"]) for r in res.settled] == [("late", "worker 1003 arrived 2026-03-10 10:40")]
    assert run(factory, at("12:00", 15)).raised == []


def test_catch_up_does_not_reach_beyond_the_lookback_window(settings):
    factory = world(settings)
    rules = Rules(lookback_hours=1)
    # At 12:00 with a 1 h look-back only deadlines after 11:00 count: none of V1–V3's (≤ 11:00).
    assert run(factory, at("12:00"), rules).raised == []


def test_a_replanned_visit_moves_its_deadlines_and_no_stale_alert_fires(settings):
    factory = world(settings)
    v1 = visit_id(factory, "V1")
    # Before 10:30 the office moves V1 to 11:00–11:45: late now 11:30, missed 11:45.
    reimport(settings, factory, ("V1", "R001", "11:00", 45, "1001", "no"))
    assert [r for r in run(factory, at("10:30")).raised if r["visit_id"] == v1] == []
    assert [r for r in run(factory, at("10:45")).raised if r["visit_id"] == v1] == []
    assert [r["kind"] for r in run(factory, at("11:30")).raised if r["visit_id"] == v1] == ["late"]


def test_replanning_after_an_alert_settles_it_and_the_new_deadline_still_fires(settings):
    factory = world(settings)
    v1 = visit_id(factory, "V1")
    run(factory, at("10:30"))  # V1 late raised for 10:30
    reimport(settings, factory, ("V1", "R001", "12:00", 45, "1001", "no"))
    res = run(factory, at("10:31"))
    assert [(r["kind"], r["visit_id"]) for r in res.settled] == [("late", v1)]
    assert "re-planned" in res.settled[0]["note"]
    assert [r["kind"] for r in run(factory, at("12:30")).raised if r["visit_id"] == v1] == ["late"]


def test_late_alert_is_resolved_by_the_system_when_the_worker_arrives(settings):
    factory = world(settings)
    run(factory, at("10:30"))
    attend(factory, "V1", "1001", at("10:37"))
    res = run(factory, at("10:37", 20))
    assert [(r["kind"], r["note"]) for r in res.settled] == [("late", "worker 1001 arrived 2026-03-10 10:37")]
    late = next(a for a in stored(factory) if a.kind == "late" and a.visit_id == visit_id(factory, "V1"))
    assert late.status == "resolved" and late.resolved_by_system and late.resolved_by == "system"
    assert run(factory, at("10:45")).raised == []  # arrived before the end: not missed either


def test_no_reply_call_without_its_alert_is_caught_by_the_pass(settings):
    factory = world(settings)
    c = call(factory, at("10:20"), outcome="no_reply", script="noreply", visit_ref="V1", number="1001", worker="1001")
    res = run(factory, at("10:20", 5))
    assert [(r["kind"], r["dedupe_key"], r["severity"]) for r in res.raised if r["kind"] != "late"] == [
        ("no_reply", f"no_reply:{visit_id(factory, 'V1')}", 5)]
    with factory() as s:
        assert s.scalar(select(Alert.call_record_id).where(Alert.kind == "no_reply")) == c


def test_raise_alert_inserts_in_the_callers_transaction_and_refuses_a_second_copy(settings):
    factory = world(settings)
    v1 = visit_id(factory, "V1")
    with factory() as s, s.begin():
        first = raise_alert(s, kind="no_reply", visit_id=v1, at=at("10:20"), detail="no reply")
        again = raise_alert(s, kind="no_reply", visit_id=v1, at=at("10:21"), detail="no reply")
        assert isinstance(first, int) and again is None
        s.rollback()  # the caller's transaction decides: nothing stored
    assert stored(factory) == []
    with factory() as s, s.begin():
        new = raise_alert(s, kind="no_reply", visit_id=v1, at=at("10:20"))
    with factory() as s:
        assert [a.action for a in s.scalars(select(AlertAction).where(AlertAction.alert_id == new))] == ["raised"]
    # And the rules pass, seeing the same fact, does not add another.
    call(factory, at("10:20"), outcome="no_reply", script="noreply", visit_ref="V1")
    assert [r["kind"] for r in run(factory, at("10:25")).raised] == ["late"]  # V2 (10:15), not a 2nd no reply
    assert [a.kind for a in stored(factory)].count("no_reply") == 1


def test_the_pass_reads_only_the_visits_near_now(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    with unit_of_work(factory) as s:
        rid = s.scalar(select(Visit.resident_id))
        for day in range(1, 41):  # 40 visits on the days before and 40 after
            for sign in (-1, 1):
                start = at("10:00") + sign * dt.timedelta(days=day)
                s.add(Visit(visit_ref=f"far{sign}{day}", resident_id=rid, planned_start=start,
                            planned_end=start + dt.timedelta(minutes=30)))
    res = run(factory, at("10:30"))
    assert res.visits_read == 1  # V1 only, of 81 stored
