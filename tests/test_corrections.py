"""Corrections and the unmatched-calls queue: every change audited, manual times marked manual."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from carecall.config import Settings
from ivr import corrections
from ivr.corrections import CorrectionError
from ivr.db import unit_of_work
from ivr.models import Attendance, AttendanceKind, AuditEntry, CallRecord, Method, ReviewStatus, Visit, Worker
from tests.helpers import VISITS_HEADER, factory_for, import_world, visit_row

START = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)  # 09:00 GMT = 09:00 London (before BST)
NOW = START + dt.timedelta(hours=2)


@pytest.fixture
def world(settings: Settings):
    factory = factory_for(settings)
    rows = [visit_row("V1", "R001", START, 30, "1001", settings=settings),
            visit_row("V2", "R002", START, 30, "1002", settings=settings)]
    import_world(settings, factory, "\n".join([VISITS_HEADER, *rows]) + "\n")
    with unit_of_work(factory) as s:
        ids = {v.visit_ref: v.id for v in s.scalars(select(Visit))}
        ids.update({w.worker_number: w.id for w in s.scalars(select(Worker))})
    return factory, ids


def test_manual_arrival_and_departure_are_marked_manual_and_audited(settings, world):
    factory, ids = world
    tz = settings.tz
    with unit_of_work(factory) as s:
        corrections.manual_time(s, visit_id=ids["V1"], worker_id=ids["1001"], end="arrival",
                                at=START + dt.timedelta(minutes=5), reason="line_down", note="", actor="cora",
                                now=NOW, tz=tz)
        corrections.manual_time(s, visit_id=ids["V1"], worker_id=ids["1001"], end="departure",
                                at=START + dt.timedelta(minutes=35), reason="forgot_out", note="", actor="cora",
                                now=NOW, tz=tz)
    with unit_of_work(factory) as s:
        att = s.scalar(select(Attendance).where(Attendance.visit_id == ids["V1"]))
        assert (att.arrival_method, att.departure_method) == (Method.MANUAL, Method.MANUAL)
        assert att.arrival_entered_at == NOW and att.departure_entered_at == NOW
        assert att.arrival_verified is False and att.kind == AttendanceKind.SCHEDULED
        entries = s.scalars(select(AuditEntry).where(AuditEntry.entity_id == "V1").order_by(AuditEntry.id)).all()
        assert [(e.action, e.actor, e.reason_code) for e in entries] == [
            ("manual_arrival", "cora", "line_down"), ("manual_departure", "cora", "forgot_out")]
        assert json.loads(entries[0].before) == {}
        assert json.loads(entries[0].after)["arrival_at"] == "2026-03-10 09:05 GMT"
        assert json.loads(entries[1].before)["departure_at"] == ""
        assert json.loads(entries[1].after)["departure_at"] == "2026-03-10 09:35 GMT"


def test_correction_without_reason_or_other_without_note_changes_nothing(settings, world):
    factory, ids = world
    for reason, note in (("", ""), ("bogus", ""), ("other", "  ")):
        with pytest.raises(CorrectionError), unit_of_work(factory) as s:
            corrections.manual_time(s, visit_id=ids["V1"], worker_id=ids["1001"], end="arrival", at=START,
                                    reason=reason, note=note, actor="cora", now=NOW, tz=settings.tz)
    with unit_of_work(factory) as s:
        assert s.scalar(select(Attendance.id)) is None
        assert s.scalar(select(AuditEntry.id).where(AuditEntry.entity == "visit")) is None


def test_departure_before_arrival_and_future_times_are_refused(settings, world):
    factory, ids = world
    with unit_of_work(factory) as s:
        corrections.manual_time(s, visit_id=ids["V1"], worker_id=ids["1001"], end="arrival", at=START,
                                reason="forgot_in", note="", actor="c", now=NOW, tz=settings.tz)
    bad = [("departure", START - dt.timedelta(minutes=1)), ("arrival", NOW + dt.timedelta(hours=1))]
    for end, at in bad:
        with pytest.raises(CorrectionError), unit_of_work(factory) as s:
            corrections.manual_time(s, visit_id=ids["V1"], worker_id=ids["1001"], end=end, at=at,
                                    reason="forgot_out", note="", actor="c", now=NOW, tz=settings.tz)


def test_cancel_needs_no_arrival_and_records_the_reason(settings, world):
    factory, ids = world
    with unit_of_work(factory) as s:
        corrections.cancel_visit(s, visit_id=ids["V2"], reason="resident_in_hospital", note="admitted Monday",
                                 actor="cora", now=NOW)
    with unit_of_work(factory) as s:
        v = s.get(Visit, ids["V2"])
        assert v.status == "cancelled" and v.cancel_reason == "Resident in hospital: admitted Monday"
        e = s.scalar(select(AuditEntry).where(AuditEntry.action == "cancel"))
        assert json.loads(e.before)["status"] == "scheduled" and e.note == "admitted Monday"
    with pytest.raises(CorrectionError, match="already cancelled"), unit_of_work(factory) as s:
        corrections.cancel_visit(s, visit_id=ids["V2"], reason="other", note="again", actor="c", now=NOW)


def test_substitution_replaces_the_assignment_and_is_audited(settings, world):
    factory, ids = world
    with unit_of_work(factory) as s:
        corrections.substitute_worker(s, visit_id=ids["V1"], old_worker_id=ids["1001"], new_worker_id=ids["1003"],
                                      reason="other", note="sickness", actor="cora", now=NOW)
    with unit_of_work(factory) as s:
        v = s.get(Visit, ids["V1"])
        assert [a.worker_id for a in v.assignments] == [ids["1003"]]
        e = s.scalar(select(AuditEntry).where(AuditEntry.action == "substitute"))
        assert json.loads(e.before) == {"workers": ["1001"]} and json.loads(e.after) == {"workers": ["1003"]}


def _call(s, **kw) -> int:
    base = dict(uniqueid="1700000000.1", script="checkin", started_at=START + dt.timedelta(minutes=3),
                outcome="unknown_line", review_status=ReviewStatus.OPEN, caller_e164="+442086989999")
    base.update(kw)
    c = CallRecord(**base)
    s.add(c)
    s.flush()
    return c.id


def test_linking_an_unknown_line_call_records_a_phone_arrival_not_location_verified(settings, world):
    factory, ids = world
    with unit_of_work(factory) as s:
        call_id = _call(s)
    with unit_of_work(factory) as s:
        corrections.link_call(s, call_id=call_id, visit_id=ids["V1"], worker_id=ids["1001"], actor="cora",
                              note="worker rang from a neighbour", now=NOW, tz=settings.tz)
    with unit_of_work(factory) as s:
        att = s.scalar(select(Attendance).where(Attendance.visit_id == ids["V1"]))
        assert att.arrival_at == START + dt.timedelta(minutes=3)
        assert (att.arrival_method, att.arrival_verified, att.arrival_uniqueid) == ("phone", False, "1700000000.1")
        c = s.get(CallRecord, call_id)
        assert (c.review_status, c.reviewed_by, c.visit_id) == ("linked", "cora", ids["V1"])
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.entity_id == "V1")) == "link_call"
    with pytest.raises(CorrectionError, match="not waiting"), unit_of_work(factory) as s:
        corrections.link_call(s, call_id=call_id, visit_id=ids["V1"], worker_id=ids["1001"], actor="c", note="",
                              now=NOW, tz=settings.tz)


def test_linking_an_unscheduled_attendance_moves_it_onto_the_visit_and_keeps_verification(settings, world):
    factory, ids = world
    with unit_of_work(factory) as s:
        r1 = s.get(Visit, ids["V1"]).resident_id
        att = Attendance(visit_id=None, resident_id=r1, worker_id=ids["1003"], kind=AttendanceKind.UNSCHEDULED,
                         arrival_at=START + dt.timedelta(minutes=2), arrival_method="phone", arrival_verified=True,
                         arrival_uniqueid="u-2")
        s.add(att)
        s.flush()
        call_id = _call(s, uniqueid="u-2", outcome="arrival", resident_id=r1, worker_id=ids["1003"],
                        location_verified=True, attendance_id=att.id)
    with unit_of_work(factory) as s:
        corrections.link_call(s, call_id=call_id, visit_id=ids["V1"], worker_id=None, actor="cora", note="",
                              now=NOW, tz=settings.tz)
    with unit_of_work(factory) as s:
        att = s.scalar(select(Attendance).where(Attendance.visit_id == ids["V1"]))
        assert (att.worker_id, att.kind, att.arrival_verified) == (ids["1003"], AttendanceKind.SUBSTITUTE, True)


def test_reject_needs_a_reason_and_closes_the_call(settings, world):
    factory, _ids = world
    with unit_of_work(factory) as s:
        call_id = _call(s)
    with pytest.raises(CorrectionError), unit_of_work(factory) as s:
        corrections.reject_call(s, call_id=call_id, reason="", note="", actor="c", now=NOW)
    with unit_of_work(factory) as s:
        corrections.reject_call(s, call_id=call_id, reason="duplicate_call", note="test call", actor="cora",
                                now=NOW)
    with unit_of_work(factory) as s:
        c = s.get(CallRecord, call_id)
        assert c.review_status == "rejected" and c.review_note == "Duplicate or test call: test call"
        assert s.scalar(select(Attendance.id)) is None
