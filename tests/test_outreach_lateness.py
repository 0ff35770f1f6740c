"""Lateness notices (spec §5.26) as a function of the stored facts and ``now``, on both engines."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ivr.db import unit_of_work
from ivr.models import Resident, ResidentContact
from outreach import lateness
from outreach.config import NoticesConfig
from outreach.models import LatenessNotice, NoticeEvent
from outreach.preferences import Preferences, save
from scheduler.rules import Rules
from tests.test_alerts_world import at, attend, world

TZ = ZoneInfo("Europe/London")
CFG = NoticesConfig(lateness_attempts=2, lateness_retry_minutes=3)


def _prefs(factory, ref: str, **kw) -> int:
    with unit_of_work(factory) as s:
        rid = s.scalar(select(Resident.id).where(Resident.reference == ref))
        save(s, rid, Preferences(lateness_consent=True, **kw), "coordinator", at("08:00"))
        return int(rid)


def _plan(factory, now):
    with unit_of_work(factory) as s:
        return lateness.plan(s, now, CFG, Rules(), TZ)


def _notices(factory) -> list[tuple[str, str, str, str]]:
    with factory() as s:
        return [(n.channel, n.target, n.status, n.note) for n in s.scalars(select(LatenessNotice)
                                                                          .order_by(LatenessNotice.id))]


def _claim(factory, now):
    with unit_of_work(factory) as s:
        return lateness.claim(s, now)


def test_a_late_visit_gets_one_call_at_start_plus_n_and_never_a_second(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    _prefs(factory, "R001", lateness_minutes=15)
    assert _plan(factory, at("10:14", 59)) == []
    assert len(_plan(factory, at("10:15"))) == 1
    assert _plan(factory, at("10:16")) == []  # planned once
    assert _notices(factory) == [("call_resident", "+442086989911", "pending",
                                  "call to the resident's landline planned")]
    (job,) = _claim(factory, at("10:15", 5))
    assert (job.target, job.attempt) == ("+442086989911", 1)
    assert _claim(factory, at("10:15", 6)) == []  # claimed by one sender only
    with unit_of_work(factory) as s:  # the database itself refuses a second notice for the visit
        n = s.scalar(select(LatenessNotice))
        s.add(LatenessNotice(visit_id=n.visit_id, resident_id=n.resident_id, due_at=n.due_at, channel="call_resident"))
        try:
            s.flush()
            raise AssertionError("a second notice for the same visit was stored")
        except IntegrityError:
            s.rollback()


def test_the_worker_arriving_before_the_threshold_sends_nothing(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    _prefs(factory, "R001")
    attend(factory, "V1", "1001", at("10:14"))
    assert _plan(factory, at("10:15")) == [] and _plan(factory, at("10:40")) == []
    assert _notices(factory) == []


def test_the_worker_arriving_after_planning_but_before_the_call_cancels_it(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    _prefs(factory, "R001")
    _plan(factory, at("10:15"))
    attend(factory, "V1", "1001", at("10:15", 20))
    assert _claim(factory, at("10:15", 30)) == []
    assert _notices(factory)[0][2:] == ("skipped", "not sent: the worker arrived first")


def test_no_consent_no_notice_and_the_notice_comes_before_the_late_alert(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"), ("V2", "R002", "10:00", 60, "1002", "yes")))
    _prefs(factory, "R002", lateness_minutes=30)  # time-critical: late alert at 15 min, so the notice at 14
    assert _plan(factory, at("10:13", 59)) == []
    assert len(_plan(factory, at("10:14"))) == 1
    assert len(_notices(factory)) == 1  # R001 never agreed: nothing


def test_quiet_hours_do_not_call_restriction_and_no_landline_are_recorded_reasons(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"), ("V2", "R002", "10:00", 45, "1002", "no"),
                               ("V3", "R003", "10:00", 45, "1003", "no"), ("V4", "R004", "10:00", 45, "1001", "no")))
    _prefs(factory, "R001", quiet_start=9 * 60 + 30, quiet_end=11 * 60)
    _prefs(factory, "R002", do_not_call=True)
    _prefs(factory, "R003")
    _prefs(factory, "R004")  # no landline on file
    with unit_of_work(factory) as s:
        s.execute(update(Resident).where(Resident.reference == "R003").values(processing_restricted=True))
    _plan(factory, at("10:15"))
    assert sorted(n[3] for n in _notices(factory)) == [
        "not sent: do not call", "not sent: no landline registered",
        "not sent: processing restricted for this resident", "not sent: quiet hours"]
    with factory() as s:
        assert {e.event for e in s.scalars(select(NoticeEvent))} == {"skipped"}


def test_a_named_contact_by_email_or_phone_and_a_stale_notice(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"), ("V2", "R002", "10:00", 45, "1002", "no")))
    with unit_of_work(factory) as s:
        r1 = s.scalar(select(Resident.id).where(Resident.reference == "R001"))
        r2 = s.scalar(select(Resident.id).where(Resident.reference == "R002"))
        c1 = ResidentContact(resident_id=r1, name="Jane", email="jane@family.test")
        c2 = ResidentContact(resident_id=r2, name="Sam", phone_e164="+447700900123")
        s.add_all([c1, c2])
        s.flush()
        ids = (c1.id, c2.id)
    _prefs(factory, "R001", lateness_channel="email_contact", contact_id=ids[0])
    _prefs(factory, "R002", lateness_channel="call_contact", contact_id=ids[1])
    _plan(factory, at("10:15"))
    assert sorted(n[:3] for n in _notices(factory)) == [("call_contact", "+447700900123", "pending"),
                                                       ("email_contact", "jane@family.test", "pending")]


def test_found_too_late_after_a_server_outage_is_skipped_not_called(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    _prefs(factory, "R001")
    _plan(factory, at("10:40"))  # due 10:15, found 25 min later
    assert _notices(factory)[0][2:] == ("skipped", "not sent: found 25 min after it fell due (server down?)")


def test_unanswered_is_retried_then_given_up_and_every_step_is_in_the_history(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    _prefs(factory, "R001")
    _plan(factory, at("10:15"))
    (job,) = _claim(factory, at("10:15"))
    with unit_of_work(factory) as s:
        lateness.record_attempt(s, job.notice_id, answered=False, outcome="no answer", now=at("10:16"), cfg=CFG)
    assert _claim(factory, at("10:18", 59)) == []
    (job2,) = _claim(factory, at("10:19"))
    assert job2.attempt == 2
    with unit_of_work(factory) as s:
        lateness.record_attempt(s, job.notice_id, answered=False, outcome="busy", now=at("10:20"), cfg=CFG)
    assert _notices(factory)[0][2:] == ("unanswered", "gave up after 2 attempt(s): busy")
    with factory() as s:
        vid = s.scalar(select(LatenessNotice.visit_id))
        h = lateness.history(s, vid)
    assert [e["event"] for e in h["events"]] == ["planned", "attempt", "not answered", "attempt", "not answered"]


def test_an_answered_call_that_played_the_message_is_delivered(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    _prefs(factory, "R001")
    _plan(factory, at("10:15"))
    (job,) = _claim(factory, at("10:15"))
    with unit_of_work(factory) as s:
        lateness.record_attempt(s, job.notice_id, answered=True, outcome="answered", now=at("10:15", 10), cfg=CFG)
    assert _notices(factory)[0][2:] == ("sending", "answered; playing the message")  # answered is not heard
    with unit_of_work(factory) as s:
        lateness.record_dialog(s, job.notice_id, "played", "", at("10:15", 40))
    assert _notices(factory)[0][2:] == ("delivered", "message played")


def test_answered_but_the_message_never_played_fails_after_a_while(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    _prefs(factory, "R001")
    _plan(factory, at("10:15"))
    (job,) = _claim(factory, at("10:15"))
    with unit_of_work(factory) as s:
        lateness.record_attempt(s, job.notice_id, answered=True, outcome="answered", now=at("10:15", 10), cfg=CFG)
    assert _claim(factory, at("10:26")) == []
    assert _notices(factory)[0][2:] == ("failed", "answered, but the message was never played")


def test_quiet_hours_wrap_midnight():
    p = Preferences(quiet_start=21 * 60, quiet_end=8 * 60)
    assert p.in_quiet_hours(dt.datetime(2026, 3, 10, 22, 0))
    assert p.in_quiet_hours(dt.datetime(2026, 3, 10, 7, 59))
    assert not p.in_quiet_hours(dt.datetime(2026, 3, 10, 8, 0))
    assert not Preferences().in_quiet_hours(dt.datetime(2026, 3, 10, 3, 0))
