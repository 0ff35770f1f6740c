"""The alert call through the real FastAGI server (a simulated Asterisk over TCP): the script registry,
the alert dialog and its database effects together, on both engines."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest_twisted
from sqlalchemy import select
from twisted.internet import reactor

from agi.fastagi import FastAGIFactory
from agi.outbound import AmiConfig
from agi.simulator import CallScript, simulate
from carecall.runtime import Runtime
from ivr.db import unit_of_work
from ivr.models import utcnow
from scheduler import chain
from scheduler.alert_calls import set_phone_pin
from scheduler.chain import ChainConfig
from scheduler.models import Alert, AlertDelivery
from scheduler.oncall_models import RotaEntry
from scheduler.store import raise_alert
from tests.helpers import factory_for, import_world
from web.models import User


class Site:
    def __init__(self, settings) -> None:
        self.settings = dataclasses.replace(settings, agi_effects="thread",
                                            raw={"oncall": {"enabled": True, "office_days": []}})
        self.factory = factory_for(self.settings)
        import_world(self.settings, self.factory)
        self.runtime = Runtime.create(self.settings, reactor)
        now = utcnow()
        with unit_of_work(self.factory) as s:
            alice = User(username="alice", role="coordinator", password_hash="-", phone_e164="+447911123456")
            s.add(alice)
            s.flush()
            set_phone_pin(s, alice, "1111", self.runtime.hasher)
            s.add(RotaEntry(user_id=alice.id, position="on_call", starts_at=now - dt.timedelta(hours=1),
                            ends_at=now + dt.timedelta(hours=1)))
            self.alert_id = raise_alert(s, kind="no_reply", at=now, key="no_reply:test:1")
        with unit_of_work(self.factory) as s:
            cfg = ChainConfig.from_settings(self.settings)
            chain.start_new(s, now, cfg)
            chain.advance(s, now, cfg, AmiConfig())
            (ring,) = chain.claim_calls(s, now)
        self.delivery_id = ring.delivery_id

    def start(self) -> None:
        self.runtime.start()
        self.listener = reactor.listenTCP(0, FastAGIFactory.from_runtime(self.runtime), interface="127.0.0.1")
        self.port = self.listener.getHost().port

    @pytest_twisted.inlineCallbacks
    def stop(self):
        yield self.listener.stopListening()
        self.runtime.stop()

    def ring(self, digits: list[str]):
        script = f"alert?alert={self.alert_id}&delivery={self.delivery_id}"
        return simulate(reactor, "127.0.0.1", self.port,
                        CallScript(callerid="carecall", digits=digits, script=script, port=self.port), timeout=20)


@pytest_twisted.inlineCallbacks
def test_the_alert_script_is_served_by_the_fastagi_server_and_1_plus_pin_accepts(settings):
    site = Site(settings)
    site.start()
    try:
        result = yield site.ring(["1", "1111"])
    finally:
        yield site.stop()
    assert result.completed, result.transcript
    commands = [c for c, _ in result.transcript]
    assert commands[0] == "ANSWER" and "SAY ALPHA" not in " ".join(commands)  # no resident on this alert
    assert any(c.startswith("GET DATA agent-pass 6000 4") for c in commands)
    with site.factory() as s:
        alert = s.get(Alert, site.alert_id)
        delivery = s.get(AlertDelivery, site.delivery_id)
        assert (alert.status, alert.acknowledged_by) == ("acknowledged", "alice")
        assert (delivery.status, delivery.outcome) == ("sent", "accepted")


@pytest_twisted.inlineCallbacks
def test_2_passes_it_on_and_the_chain_moves_now(settings):
    site = Site(settings)
    site.start()
    try:
        result = yield site.ring(["2"])
    finally:
        yield site.stop()
    assert result.completed, result.transcript
    with site.factory() as s:
        alert = s.get(Alert, site.alert_id)
        outcome = s.scalar(select(AlertDelivery.outcome).where(AlertDelivery.id == site.delivery_id))
    assert alert.status == "open" and outcome == "passed_on"
    assert alert.chain_next_at is not None and alert.chain_next_at <= utcnow()
