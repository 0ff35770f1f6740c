"""End to end with a real Asterisk 22: an alert rings the on-call "phone", which answers and keys 1 + PIN.

Asterisk runs the project's own ``asterisk-config/`` (only the FastAGI address and the
AMI port changed; see tests/asterisk_alerts_fixture.py). carecall runs as in
production: the alert service's pass every second, the chain, the AMI originator, and
the FastAGI server answering ``agi://…/alert``. The phones are Local channels whose
dialplan plays the person: answer, wait, key 1, then the PIN (SendDTMF); ring and never
answer; or an extension that does not exist (a channel that cannot be dialled).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid

import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import reactor, task

from agi.fastagi import FastAGIFactory
from carecall.runtime import Runtime
from ivr.db import unit_of_work
from ivr.models import Resident, utcnow
from scheduler.alert_calls import set_phone_pin
from scheduler.models import Alert, AlertAction, AlertDelivery
from scheduler.oncall_models import RotaEntry
from scheduler.service import make_service
from scheduler.store import raise_alert
from tests.asterisk_alerts_fixture import BINARY, PrivateAsterisk, available
from tests.helpers import factory_for, import_world
from tests.pg import free_port
from web.models import User

pytestmark = pytest.mark.skipif(
    not available(), reason=f"no Asterisk at {BINARY}: run ../shared/asterisk/install.sh (CI installs it)")

PHONES = """
[carecall-test-phones]
; Answers, listens to the facts, keys 1 (accept), then the PIN 1111.
exten => 07700900001,1,Answer()
 same => n,Wait(3)
 same => n,SendDTMF(1)
 same => n,Wait(1.5)
 same => n,SendDTMF(1111)
 same => n,Wait(30)
 same => n,Hangup()
; Rings and never answers.
exten => 07700900002,1,Ringing()
 same => n,Wait(120)
; 07700900003 has no extension here: a channel that cannot be dialled.
; The second contact: answers and accepts with PIN 4444.
exten => 07700900004,1,Answer()
 same => n,Wait(3)
 same => n,SendDTMF(1)
 same => n,Wait(1.5)
 same => n,SendDTMF(4444)
 same => n,Wait(30)
 same => n,Hangup()
"""

PEOPLE = (("alice", "+447700900001", "1111"), ("ring", "+447700900002", "2222"),
          ("dead", "+447700900003", "3333"), ("bob", "+447700900004", "4444"))


@pytest.fixture(scope="module")
def asterisk(tmp_path_factory):
    ast = PrivateAsterisk(tmp_path_factory.mktemp("asterisk"), agi_port=free_port(), backup_port=free_port(),
                          ami_port=free_port(), phones=PHONES)
    ast.start()
    yield ast
    ast.stop()


class Site:
    """carecall as a server: FastAGI on the port Asterisk's dialplan names, the alert service ticking."""

    def __init__(self, settings, asterisk: PrivateAsterisk, on_call: str, second: str | None) -> None:
        raw = {
            "alerts": {"interval_seconds": 1},
            "oncall": {"enabled": True, "office_days": [], "no_answer_minutes": 0, "answered_minutes": 5,
                       "kinds": ["no_reply"]},
            "ami": {"port": asterisk.ami_port, "secret": "change-me", "ring_seconds": 6,
                    "channel": "Local/{number}@carecall-test-phones"},
        }
        self.settings = dataclasses.replace(settings, raw=raw, agi_effects="thread")
        self.factory = factory_for(self.settings)
        import_world(self.settings, self.factory)
        self.runtime = Runtime.create(self.settings, reactor)
        now = utcnow()
        with unit_of_work(self.factory) as s:
            self.users = {}
            for name, phone, pin in PEOPLE:
                u = User(username=name, role="coordinator", password_hash="-", phone_e164=phone)
                s.add(u)
                s.flush()
                set_phone_pin(s, u, pin, self.runtime.hasher)
                self.users[name] = u.id
            s.add(User(username="mgr", role="manager", password_hash="-"))  # no phone: never rung here
            for who, position in ((on_call, "on_call"), (second, "second")):
                if who is not None:
                    s.add(RotaEntry(user_id=self.users[who], position=position, starts_at=now - dt.timedelta(hours=1),
                                    ends_at=now + dt.timedelta(hours=1)))
            self.resident = s.scalars(select(Resident).where(Resident.reference == "R004")).one().id
        self.asterisk = asterisk

    def start(self) -> None:
        self.runtime.start()
        self.port = reactor.listenTCP(self.asterisk.agi_port, FastAGIFactory.from_runtime(self.runtime),
                                      interface="127.0.0.1")
        self.service = make_service(self.runtime)
        self.service.startService()

    @pytest_twisted.inlineCallbacks
    def stop(self):
        yield self.service.stopService()
        yield self.service.calls_done()
        yield self.port.stopListening()
        self.runtime.stop()

    def raise_alert(self) -> int:
        with unit_of_work(self.factory) as s:
            alert_id = raise_alert(s, kind="no_reply", resident_id=self.resident, at=utcnow(),
                                   key=f"no_reply:test:{uuid.uuid4().hex}")
        assert alert_id is not None
        return alert_id

    def alert(self, alert_id: int) -> Alert:
        with self.factory() as s:
            a = s.get(Alert, alert_id)
            s.expunge(a)
            return a

    def calls(self, alert_id: int) -> list[tuple[int, str, str, str]]:
        names = {v: k for k, v in self.users.items()}
        with self.factory() as s:
            return [(d.step, names.get(d.user_id, "?"), d.status, d.outcome) for d in s.scalars(
                select(AlertDelivery).where(AlertDelivery.alert_id == alert_id, AlertDelivery.channel == "voice")
                .order_by(AlertDelivery.id))]

    def history(self, alert_id: int) -> list[tuple[str, str, str]]:
        with self.factory() as s:
            return [(a.actor, a.action, a.note) for a in s.scalars(
                select(AlertAction).where(AlertAction.alert_id == alert_id).order_by(AlertAction.id))]

    @pytest_twisted.inlineCallbacks
    def until_accepted(self, alert_id: int, seconds: float = 60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.alert(alert_id).status != "open":
                return self.alert(alert_id)
            yield task.deferLater(reactor, 0.25, lambda: None)
        raise AssertionError(f"alert not accepted in {seconds} s: calls {self.calls(alert_id)}, "
                             f"history {self.history(alert_id)}")


@pytest_twisted.inlineCallbacks
def _run(settings, asterisk, on_call, second):
    site = Site(settings, asterisk, on_call, second)
    site.start()
    try:
        alert_id = site.raise_alert()
        alert = yield site.until_accepted(alert_id)
        # The call that accepted is over and its outcome recorded before we look at the rest.
        yield site.service.calls_done()
        return site, alert_id, alert
    finally:
        yield site.stop()


@pytest_twisted.inlineCallbacks
def test_the_on_call_phone_answers_and_keys_1_and_the_pin_the_alert_is_accepted_by_that_user(settings, asterisk):
    site, alert_id, alert = yield _run(settings, asterisk, "alice", "bob")
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "alice")
    assert site.calls(alert_id) == [(2, "alice", "sent", "accepted")]
    history = site.history(alert_id)
    assert ("alice", "accepted by phone", "on the alert call (step 2)") in history
    assert ("chain", "chain", "step 2: alice answered the alert call") in history
    log = asterisk.log()
    assert f"agi://127.0.0.1:{asterisk.agi_port}/alert?alert={alert_id}&delivery=" in log


@pytest_twisted.inlineCallbacks
def test_a_phone_that_does_not_answer_is_recorded_and_the_next_contact_is_called(settings, asterisk):
    site, alert_id, alert = yield _run(settings, asterisk, "ring", "bob")
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "bob")
    assert site.calls(alert_id) == [(2, "ring", "failed", "no answer"), (3, "bob", "sent", "accepted")]
    notes = [n for _, _, n in site.history(alert_id)]
    assert "step 2: call to ring (*********002): no answer; the next person in 0 min" in notes
    assert notes.index("step 3: second contact: ringing bob (second contact on the rota) on *********004") > \
        notes.index("step 2: call to ring (*********002): no answer; the next person in 0 min")


@pytest_twisted.inlineCallbacks
def test_a_channel_that_cannot_be_dialled_is_recorded_failed_never_sent_and_escalated(settings, asterisk):
    site, alert_id, alert = yield _run(settings, asterisk, "dead", "bob")
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "bob")
    assert site.calls(alert_id) == [(2, "dead", "failed", "failed"), (3, "bob", "sent", "accepted")]
    failed = [h for h in site.history(alert_id) if h[1] == "call failed"]
    assert failed == [("chain", "call failed", "step 2: call to dead (*********003): failed; the next person in 0 min")]
    assert "No such extension/context 07700900003@carecall-test-phones" in asterisk.log()
