"""End to end with a real Asterisk 22: an alert rings the on-call "phone", which answers and keys 1 + PIN.

Asterisk is the shared rig (tests/asterisk_rig.py): the project's own ``asterisk-config/``
with only host and port changed; carecall logs in to the AMI as the shipped
manager.conf's own ``carecall`` user (read = call, write = originate). carecall runs as in
production: the alert service's pass every second, the chain, the AMI originator, and
the FastAGI server answering ``agi://…/alert``. The phones are Local channels whose
dialplan plays the person: answer, wait, key 1, then the PIN (SendDTMF); ring and never
answer; or an extension that does not exist (a channel that cannot be dialled). They are
a test-only context added to the rig's own test dialplan (``rig.conf``), never shipped.
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
from tests.asterisk_fixtures import in_thread
from tests.asterisk_rig import RIG_DIALPLAN, AsteriskRig
from tests.helpers import factory_for, import_world
from tests.pg import free_port
from web.models import User

pytestmark = pytest.mark.asterisk  # skipped with the rig's reason when no asterisk binary is installed

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
; The second contact: answers, listens to the facts and keys 1 during the question
; ("press 1 to accept …": asked up to 3 times from ~8 s in, ~9 s each), then the PIN 4444.
exten => 07700900004,1,Answer()
 same => n,Wait(16)
 same => n,SendDTMF(1)
 same => n,Wait(1.5)
 same => n,SendDTMF(4444)
 same => n,Wait(30)
 same => n,Hangup()
"""

PEOPLE = (("alice", "+447700900001", "1111"), ("ring", "+447700900002", "2222"),
          ("dead", "+447700900003", "3333"), ("bob", "+447700900004", "4444"))


@pytest.fixture
def asterisk(asterisk_rig: AsteriskRig):
    """The rig with the test phones in its test dialplan and the AGI globals pointing at our server."""
    rig = asterisk_rig
    (rig.etc / "rig.conf").write_text(RIG_DIALPLAN + PHONES)
    rig.reload_dialplan()
    rig.wait(lambda: "07700900004" in rig.rx("dialplan show carecall-test-phones"), what="the test phones")
    assert "AGI(" in rig.rx("dialplan show carecall-outbound"), "extensions_alerts.conf not loaded"
    rig.agi_port = free_port()  # type: ignore[attr-defined]
    rig.set_agi(rig.agi_port, None)  # type: ignore[attr-defined]
    yield rig
    (rig.etc / "rig.conf").write_text(RIG_DIALPLAN)


class Site:
    """carecall as a server: FastAGI on the port Asterisk's dialplan names, the alert service ticking."""

    def __init__(self, settings, asterisk: AsteriskRig, on_call: str, second: str | None,
                 channel: str = "Local/{number}@carecall-test-phones") -> None:
        ami = {"port": asterisk.ami_port, "username": asterisk.ami_user, "secret": asterisk.ami_secret,
               "ring_seconds": 6}
        if channel:  # "" = the shipped default, PJSIP/{number}@carecall-trunk
            ami["channel"] = channel
        raw = {
            "alerts": {"interval_seconds": 1},
            "oncall": {"enabled": True, "office_days": [], "no_answer_minutes": 0, "answered_minutes": 5,
                       "kinds": ["no_reply"]},
            "ami": ami,
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
def _run(settings, asterisk, on_call, second, **kw):
    site = Site(settings, asterisk, on_call, second, **kw)
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
    assert f"agi://127.0.0.1:{asterisk.agi_port}/alert?alert={alert_id}&delivery=" in asterisk.log_text()


@pytest_twisted.inlineCallbacks
def test_a_phone_that_does_not_answer_is_recorded_and_the_next_contact_is_called(settings, asterisk):
    site, alert_id, alert = yield _run(settings, asterisk, "ring", "bob")
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "bob")
    assert site.calls(alert_id) == [(2, "ring", "failed", "no answer"), (3, "bob", "sent", "accepted")]
    notes = [n for _, _, n in site.history(alert_id)]
    assert "step 2: call to ring (*********002): no answer; the next person in 0 min" in notes
    assert notes.index("step 3: second contact: ringing bob (second contact on the rota) on *********004") > \
        notes.index("step 2: call to ring (*********002): no answer; the next person in 0 min")
    # Bob answered the question itself (one file per command: a real Asterisk plays one).
    assert "Playing 'if-correct-press" in asterisk.log_text()


@pytest_twisted.inlineCallbacks
def test_a_channel_that_cannot_be_dialled_is_recorded_failed_never_sent_and_escalated(settings, asterisk):
    site, alert_id, alert = yield _run(settings, asterisk, "dead", "bob")
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "bob")
    assert site.calls(alert_id) == [(2, "dead", "failed", "failed"), (3, "bob", "sent", "accepted")]
    failed = [h for h in site.history(alert_id) if h[1] == "call failed"]
    assert failed == [("chain", "call failed", "step 2: call to dead (*********003): failed; the next person in 0 min")]
    assert "No such extension/context 07700900003@carecall-test-phones" in asterisk.log_text()


class AnsweringSipPhone:
    """pjsua as the carrier's far end: answers the INVITE the trunk sends, then keys 1 and the PIN (RFC 4733)."""

    def __init__(self, rig: AsteriskRig, pin: str) -> None:
        import shutil
        import subprocess
        import threading

        from tests.asterisk_rig import free_udp_port

        self.lines: list[str] = []
        self.rig = rig
        # This test's call is the only one from here on: its prompts are looked for after this point.
        self.since = rig.log_offset()
        argv = [str(rig.pjsua), "--null-audio", "--no-tcp", f"--local-port={rig.registrar_port}",
                f"--rtp-port={free_udp_port() & ~1}", "--auto-answer=200", "--max-calls=1", "--clock-rate=8000",
                "--no-vad", "--log-level=3", "--app-log-level=3"]
        stdbuf = shutil.which("stdbuf")
        self.proc = subprocess.Popen([stdbuf, "-oL", "-eL", *argv] if stdbuf else argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.pin = pin
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "state changed to CONFIRMED" in line:
                import threading

                threading.Thread(target=self._keys, daemon=True).start()

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def _keys(self) -> None:
        # Like a person: key 1 once the question is being asked (1 is an escape digit while it
        # plays), then the PIN once its prompt plays (GET DATA collects from then on). Waiting
        # for Asterisk's own "Playing" lines, not for time: on a loaded machine the call's
        # facts can take longer than any fixed pause.
        self.rig.wait_log(r"Playing 'if-correct-press", 60, self.since)
        self._send("#\n1\n")
        self.rig.wait_log(r"Playing 'agent-pass", 60, self.since)
        self._send(f"#\n{self.pin}\n")

    def stop(self) -> None:
        import contextlib
        import subprocess

        with contextlib.suppress(OSError):
            self._send("q\n")
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest_twisted.inlineCallbacks
def test_the_shipped_channel_dials_through_the_carecall_trunk_and_a_sip_phone_accepts(settings, asterisk):
    """``PJSIP/{number}@carecall-trunk`` as shipped: the INVITE goes to the (loopback) carrier, a SIP phone."""
    phone = AnsweringSipPhone(asterisk, "1111")

    def reachable() -> bool:
        # The shipped AOR qualifies its contact every 60 s; after earlier tests, with nobody on the
        # loopback carrier port, it is marked unavailable and the trunk refuses to dial. Re-qualify.
        asterisk.rx("pjsip qualify carecall-trunk")
        contacts = asterisk.rx("pjsip show contacts")
        return "Avail" in contacts and "Unavail" not in contacts

    yield in_thread(asterisk.wait, reachable, 20, "the SIP phone reachable on the trunk")
    try:
        site, alert_id, alert = yield _run(settings, asterisk, "alice", None, channel="")
    finally:
        phone.stop()
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "alice")
    assert site.calls(alert_id) == [(2, "alice", "sent", "accepted")]
    log = asterisk.log_text()
    assert "Called 07700900001@carecall-trunk" in log and "PJSIP/carecall-trunk-" in log
    assert any("CONFIRMED" in line for line in phone.lines)
