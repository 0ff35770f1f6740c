"""Lateness notices and quality calls with a real Asterisk 22 ringing the resident's "landline".

Asterisk runs the project's own ``asterisk-config/`` (only the FastAGI address and the
AMI port changed: tests/asterisk_alerts_fixture.py). carecall runs as in production:
the alert service's tick every second plans and claims the notices, the AMI originator
places the call, and the FastAGI server answers ``agi://…/notice`` / ``…/survey``. The
resident's landline is a Local channel whose dialplan plays the resident: answer and
listen, or answer and key 4, 5, 3. The prompts are core sounds copied under the names
docs/outreach.md asks a site to record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import time

import pytest
import pytest_twisted
from sqlalchemy import select
from tests.asterisk_alerts_fixture import BINARY, PREFIX, PrivateAsterisk, available
from twisted.internet import reactor, task

from agi.fastagi import FastAGIFactory
from carecall.runtime import Runtime
from ivr.db import unit_of_work
from ivr.models import Attendance, Resident, Visit, Worker, utcnow
from outreach import lateness
from outreach.models import LatenessNotice, SurveyCall
from outreach.preferences import Preferences, save
from scheduler.service import make_service
from tests.helpers import VISITS_HEADER, factory_for, import_world, visit_row
from tests.pg import free_port

pytestmark = pytest.mark.skipif(
    not available(), reason=f"no Asterisk at {BINARY}: run ../shared/asterisk/install.sh (CI installs it)")

# R001's landline 020 8698 9911 listens to the notice; R003's 020 8698 9933 answers the survey
# 4, 5, 3 (each key while its question's GET DATA runs: prompts are ~1 s, the digit timeout 8 s).
PHONES = """
[carecall-test-phones]
exten => 02086989911,1,Answer()
 same => n,Wait(30)
 same => n,Hangup()
exten => 02086989933,1,Answer()
 same => n,Wait(4)
 same => n,SendDTMF(4)
 same => n,Wait(4)
 same => n,SendDTMF(5)
 same => n,Wait(4)
 same => n,SendDTMF(3)
 same => n,Wait(20)
 same => n,Hangup()
"""
SOUNDS = {"provider-name": "hello", "worker-running-late": "please-try-call-later", "survey-intro": "beep",
          "survey-on-time": "beep", "survey-did-what-needed": "beep", "survey-recommend": "beep"}


@pytest.fixture(scope="module")
def asterisk(tmp_path_factory):
    ast = PrivateAsterisk(tmp_path_factory.mktemp("asterisk"), agi_port=free_port(), backup_port=free_port(),
                          ami_port=free_port(), phones=PHONES)
    ast.start()
    yield ast
    ast.stop()


@pytest.fixture
def sounds(tmp_path):
    core = PREFIX / "var" / "lib" / "asterisk" / "sounds" / "en"
    d = tmp_path / "sounds"
    d.mkdir()
    for name, source in SOUNDS.items():
        shutil.copy(core / f"{source}.gsm", d / f"{name}.gsm")
    return d


class Site:
    def __init__(self, settings, asterisk: PrivateAsterisk, sounds, survey_sample: int = 0) -> None:
        raw = {
            "alerts": {"interval_seconds": 1},
            "ami": {"port": asterisk.ami_port, "secret": "change-me", "ring_seconds": 8,
                    "channel": "Local/{number}@carecall-test-phones"},
            "notices": {"provider_sound": str(sounds / "provider-name"), "sounds_dir": str(sounds),
                        "survey_sample": survey_sample},
        }
        self.settings = dataclasses.replace(settings, raw=raw, agi_effects="thread", digit_timeout_ms=8000)
        self.factory = factory_for(self.settings)
        self.asterisk = asterisk
        self.runtime = Runtime.create(self.settings, reactor)

    def start(self) -> None:
        self.runtime.start()
        self.port = reactor.listenTCP(self.asterisk.agi_port, FastAGIFactory.from_runtime(self.runtime),
                                      interface="127.0.0.1")
        self.service = make_service(self.runtime)
        self.service.outreach.survey_any_hour = True  # the test runs at any hour
        self.service.startService()

    @pytest_twisted.inlineCallbacks
    def stop(self):
        yield self.service.stopService()
        yield self.service.outreach.calls_done()
        yield self.port.stopListening()
        self.runtime.stop()

    @pytest_twisted.inlineCallbacks
    def until(self, cond, what: str, seconds: float = 90):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = cond()
            if found:
                return found
            yield task.deferLater(reactor, 0.25, lambda: None)
        raise AssertionError(f"{what} not seen in {seconds} s; Asterisk log tail:\n{self.asterisk.log()[-3000:]}")


def _consent(factory, ref: str, **kw) -> int:
    with unit_of_work(factory) as s:
        rid = s.scalar(select(Resident.id).where(Resident.reference == ref))
        save(s, rid, Preferences(**kw), "coordinator", utcnow())
        return int(rid)


@pytest_twisted.inlineCallbacks
def test_a_late_visit_rings_the_landline_and_plays_the_notice_and_an_arrived_worker_sends_nothing(
        settings, asterisk, sounds):
    site = Site(settings, asterisk, sounds)
    now = utcnow().replace(microsecond=0)
    tz = site.settings.tz
    # R001: planned 16 min ago, nobody there (notice at 15). R002: same, but the worker came at +5 min.
    # R003: planned 10 min ago: not due yet (and never, within this test).
    rows = [visit_row("N-LATE", "R001", now - dt.timedelta(minutes=16), 60, "1001", settings=site.settings),
            visit_row("N-CAME", "R002", now - dt.timedelta(minutes=16), 60, "1002", settings=site.settings),
            visit_row("N-SOON", "R003", now - dt.timedelta(minutes=10), 60, "1003", settings=site.settings)]
    import_world(site.settings, site.factory, "\n".join([VISITS_HEADER, *rows]) + "\n")
    for ref in ("R001", "R002", "R003"):
        _consent(site.factory, ref, lateness_consent=True)
    with unit_of_work(site.factory) as s:
        v = s.scalar(select(Visit).where(Visit.visit_ref == "N-CAME"))
        w = s.scalar(select(Worker).where(Worker.worker_number == "1002"))
        s.add(Attendance(visit_id=v.id, resident_id=v.resident_id, worker_id=w.id, arrival_method="phone",
                         arrival_at=v.planned_start + dt.timedelta(minutes=5), arrival_verified=True))
        late_id = s.scalar(select(Visit.id).where(Visit.visit_ref == "N-LATE"))
    site.start()
    try:
        def delivered():
            with site.factory() as s:
                n = s.scalar(select(LatenessNotice).where(LatenessNotice.visit_id == late_id))
                return n if n is not None and n.status == "delivered" else None

        notice = yield site.until(delivered, "the notice delivered")
        yield site.service.outreach.calls_done()
    finally:
        yield site.stop()
    assert (notice.channel, notice.target, notice.attempts, notice.note) == (
        "call_resident", "+442086989911", 1, "message played")
    with site.factory() as s:
        assert s.scalar(select(LatenessNotice).where(LatenessNotice.visit_id != late_id)) is None
        events = [e["event"] for e in lateness.history(s, late_id)["events"]]
    assert events[:2] == ["planned", "attempt"] and sorted(events[2:]) == ["answered", "played"]
    log = asterisk.log()
    assert f"agi://127.0.0.1:{asterisk.agi_port}/notice?id={notice.id}" in log
    assert log.count(f"Playing '{sounds}/provider-name.gsm'") == 2
    assert log.count(f"Playing '{sounds}/worker-running-late.gsm'") == 2
    assert "02086989922" not in log and "02086989933" not in log  # R002 (arrived) and R003 (not due) never rung
    _ = tz


@pytest_twisted.inlineCallbacks
def test_a_quality_call_answered_4_5_3_stores_those_answers(settings, asterisk, sounds):
    site = Site(settings, asterisk, sounds, survey_sample=5)
    import_world(site.settings, site.factory)
    rid = _consent(site.factory, "R003", survey_consent=True)  # the only resident who agreed
    site.start()
    try:
        def answered():
            with site.factory() as s:
                c = s.scalar(select(SurveyCall).where(SurveyCall.resident_id == rid))
                return c if c is not None and c.status in ("completed", "partial") else None

        call = yield site.until(answered, "the survey answers")
        yield site.service.outreach.calls_done()
    finally:
        yield site.stop()
    assert (call.status, call.on_time, call.did_what_needed, call.would_recommend) == ("completed", 4, 5, 3)
    assert call.target == "+442086989933" and call.attempts == 1
    with site.factory() as s:
        assert s.scalar(select(SurveyCall).where(SurveyCall.resident_id != rid)) is None
    assert f"/survey?id={call.id}" in asterisk.log()
