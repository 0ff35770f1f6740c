"""Quality calls (spec §5.34, §5.40): the monthly sample, answers and non-answers, the KPI figures."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from ivr.db import unit_of_work
from ivr.models import Resident
from outreach import survey
from outreach.config import NoticesConfig
from outreach.models import SurveyCall
from outreach.preferences import Preferences, save
from reports.kpi import compute
from reports.render import to_html
from tests.helpers import factory_for, import_world

TZ = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 3, 10, 11, 0, tzinfo=dt.UTC)  # a Tuesday, 11:00 GMT
KEY = b"k" * 32


def _world(settings, consent=("R001", "R002", "R003", "R004")):
    factory = factory_for(settings)
    import_world(settings, factory)
    with unit_of_work(factory) as s:
        for ref in consent:
            rid = s.scalar(select(Resident.id).where(Resident.reference == ref))
            save(s, rid, Preferences(survey_consent=True), "coordinator", NOW)
    return factory


def _draw(factory, cfg, now=NOW, key=KEY):
    with unit_of_work(factory) as s:
        return survey.draw(s, now, cfg, TZ, key)


def test_the_sample_is_drawn_once_a_month_from_those_who_agreed_and_can_be_called(settings):
    factory = _world(settings)
    with unit_of_work(factory) as s:
        s.execute(update(Resident).where(Resident.reference == "R002").values(processing_restricted=True))
    cfg = NoticesConfig(survey_sample=2)
    first = _draw(factory, cfg)
    assert len(first) == 2
    assert _draw(factory, cfg) == []  # once a month
    with factory() as s:
        refs = {s.get(Resident, c.resident_id).reference for c in s.scalars(select(SurveyCall))}
        assert refs <= {"R001", "R003"}  # R002 restricted, R004 has no landline
    assert len(_draw(factory, cfg, now=NOW + dt.timedelta(days=31))) == 2  # April


def test_two_servers_drawing_at_once_pick_the_same_residents(settings):
    factory = _world(settings)
    with factory() as s:
        pool = survey.eligible(s)
    import hashlib
    import random
    seed = hashlib.sha256(KEY + b"survey:2026-03").digest()
    a = random.Random(seed).sample(pool, 1)
    b = random.Random(seed).sample(pool, 1)
    assert a == b
    assert len(_draw(factory, NoticesConfig(survey_sample=1))) == 1


def test_calls_only_in_office_hours_and_answers_stored_with_non_answers(settings):
    factory = _world(settings)
    _draw(factory, NoticesConfig(survey_sample=10))
    with unit_of_work(factory) as s:
        assert survey.claim(s, NOW.replace(hour=19), TZ) == []  # evening
        assert survey.claim(s, NOW + dt.timedelta(days=4), TZ) == []  # Saturday
        jobs = survey.claim(s, NOW, TZ)
    assert len(jobs) == 3 and all(j.target.startswith("+44") for j in jobs)  # R004 has no landline
    with unit_of_work(factory) as s:
        survey.record_answers(s, jobs[0].survey_id, (4, 5, 3), True, "", NOW)
        survey.record_answers(s, jobs[1].survey_id, (2, None, None), False, "ended at did_what_needed", NOW)
    with factory() as s:
        rows = {c.id: (c.status, c.on_time, c.did_what_needed, c.would_recommend)
                for c in s.scalars(select(SurveyCall))}
    assert rows[jobs[0].survey_id] == ("completed", 4, 5, 3)
    assert rows[jobs[1].survey_id] == ("partial", 2, None, None)


def test_unanswered_is_tried_again_then_stored_as_unanswered(settings):
    factory = _world(settings, consent=("R001",))
    cfg = NoticesConfig(survey_sample=5, survey_attempts=2)
    _draw(factory, cfg)
    with unit_of_work(factory) as s:
        (job,) = survey.claim(s, NOW, TZ)
        survey.record_attempt(s, job.survey_id, answered=False, outcome="no answer", now=NOW, cfg=cfg)
    with unit_of_work(factory) as s:
        assert survey.claim(s, NOW + dt.timedelta(hours=1), TZ) == []  # two hours between tries
        (job,) = survey.claim(s, NOW + dt.timedelta(hours=2), TZ)
        survey.record_attempt(s, job.survey_id, answered=False, outcome="busy", now=NOW, cfg=cfg)
    with factory() as s:
        c = s.scalar(select(SurveyCall))
        assert (c.status, c.attempts, c.note) == ("unanswered", 2, "not answered after 2 attempt(s): busy")


def test_satisfaction_figures_per_funder_and_team_in_the_kpi_report(settings):
    factory = _world(settings)
    _draw(factory, NoticesConfig(survey_sample=10))
    with unit_of_work(factory) as s:
        jobs = survey.claim(s, NOW, TZ)
        by_resident = {s.get(SurveyCall, j.survey_id).funder: j.survey_id for j in jobs}
        survey.record_answers(s, by_resident["Lewisham"], (4, 5, 3), True, "", NOW)
        survey.record_answers(s, by_resident["Private"], (2, 3, None), False, "", NOW)
    report = compute(factory, settings, dt.date(2026, 3, 1), dt.date(2026, 3, 31), now=NOW)
    sat = report.satisfaction
    assert (sat.overall.called, sat.overall.answered) == (2, 2)
    assert (sat.overall.mean(0), sat.overall.good_percent(0)) == (3, 50)
    assert sat.by_funder["Lewisham"].mean(2) == 3 and sat.by_funder["Private"].mean(2) is None
    html = to_html(report)
    assert "Satisfaction from quality calls" in html and "Funder Lewisham" in html
    only = compute(factory, settings, dt.date(2026, 3, 1), dt.date(2026, 3, 31), funder="Private", now=NOW)
    assert only.satisfaction.overall.called == 1
