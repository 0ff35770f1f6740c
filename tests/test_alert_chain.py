"""The escalation chain with an injected clock: web → on-call phone → second contact → manager, and on.

The phone calls' outcomes are fed in as the AMI would report them (OriginateResult) and
the alert call's effects through the same store the FastAGI server uses; the real AMI
and Asterisk are in tests/test_ami_outbound.py and tests/test_alert_chain_asterisk.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from agi.outbound import AmiConfig, OriginateResult
from carecall.config import ConfigError, parse_table
from ivr.alert_dialog import AcceptAlert, Accepted, AlertCallEnded, AlertCallStarted, PassAlertOn, PinRejected
from ivr.db import unit_of_work
from ivr.pins import PinHasher, load_or_create_key
from scheduler import chain
from scheduler.actions import acknowledge
from scheduler.alert_calls import AlertCallStore, set_phone_pin
from scheduler.chain import ChainConfig
from scheduler.models import Alert, AlertAction, AlertDelivery
from scheduler.oncall_models import RotaEntry
from scheduler.store import raise_alert
from tests.test_alerts_world import visit_id, world
from web.models import User

# Tuesday 10 March 2026, 22:00 (GMT): out of office hours.
NIGHT = dt.datetime(2026, 3, 10, 22, 0, tzinfo=dt.UTC)
DAY = dt.datetime(2026, 3, 10, 11, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
AMI = AmiConfig(ring_seconds=30, response_grace_seconds=15, connect_timeout=5)
CFG = ChainConfig(enabled=True)
NO_ANSWER = OriginateResult(False, "no answer", 3)
ANSWERED = OriginateResult(True, "answered", 4, uniqueid="1.1")


class World:
    def __init__(self, settings, rota=True):
        self.factory = world(settings)
        self.hasher = PinHasher(load_or_create_key(settings.secret_path))
        with unit_of_work(self.factory) as s:
            users = {}
            for name, role, phone, pin in (("alice", "coordinator", "+447700900001", "1111"),
                                           ("bob", "coordinator", "+447700900002", "2222"),
                                           ("mgr", "manager", "+447700900009", "9999"),
                                           ("nophone", "coordinator", None, None)):
                u = User(username=name, role=role, password_hash="-", phone_e164=phone)
                s.add(u)
                s.flush()
                if pin:
                    set_phone_pin(s, u, pin, self.hasher)
                users[name] = u.id
            self.users = users
            if rota:
                for who, position in (("alice", "on_call"), ("bob", "second")):
                    s.add(RotaEntry(user_id=users[who], position=position, starts_at=NIGHT - 5 * 60 * MIN,
                                    ends_at=NIGHT + 10 * 60 * MIN))
        self.v1 = visit_id(self.factory, "V1")

    def raise_(self, kind="missed", at=NIGHT) -> int:
        with unit_of_work(self.factory) as s:
            alert_id = raise_alert(s, kind=kind, visit_id=self.v1, at=at, due_at=at)
        assert alert_id is not None
        return alert_id

    def tick(self, now, cfg=CFG):
        """What the alert service's pass does for the chain."""
        with unit_of_work(self.factory) as s:
            chain.start_new(s, now, cfg)
            events = chain.advance(s, now, cfg, AMI)
        with unit_of_work(self.factory) as s:
            rings = chain.claim_calls(s, now)
        return events, rings

    def outcome(self, ring, result, now, cfg=CFG):
        with unit_of_work(self.factory) as s:
            return chain.record_call(s, ring.delivery_id, result, now, cfg)

    def call(self, cfg=CFG):
        return AlertCallStore(self.factory, self.hasher, cfg)

    def alert(self, alert_id) -> Alert:
        with self.factory() as s:
            a = s.get(Alert, alert_id)
            s.expunge(a)
            return a

    def history(self, alert_id) -> list[tuple[str, str, str]]:
        with self.factory() as s:
            return [(a.actor, a.action, a.note) for a in s.scalars(
                select(AlertAction).where(AlertAction.alert_id == alert_id).order_by(AlertAction.id))]

    def deliveries(self, alert_id) -> list[tuple[int, int | None, str, str, str]]:
        with self.factory() as s:
            return [(d.step, d.user_id, d.target, d.status, d.outcome) for d in s.scalars(
                select(AlertDelivery).where(AlertDelivery.alert_id == alert_id, AlertDelivery.channel == "voice")
                .order_by(AlertDelivery.id))]


def test_out_of_hours_no_answer_then_the_second_contact_accepts_with_the_pin(settings):
    w = World(settings)
    a = w.raise_()
    events, (ring,) = w.tick(NIGHT)
    assert ring.number == "+447700900001" and ring.step == 2 and events[0]["id"] == a
    assert w.deliveries(a) == [(2, w.users["alice"], "+447700900001", "sending", "")]
    # Not answered: failed, never "sent"; the next person after no_answer_minutes (2).
    assert w.outcome(ring, NO_ANSWER, NIGHT + MIN) is True
    assert w.deliveries(a) == [(2, w.users["alice"], "+447700900001", "failed", "no answer")]
    assert w.tick(NIGHT + 3 * MIN - dt.timedelta(seconds=1)) == ([], [])
    _, (ring2,) = w.tick(NIGHT + 3 * MIN)
    assert (ring2.number, ring2.step) == ("+447700900002", 3)
    assert w.alert(a).unaccepted_escalated  # red on the board: phones are ringing, nobody has it
    # Bob answers: the call itself marks the delivery answered, before or after the AMI's word.
    store = w.call()
    brief = store.run(AlertCallStarted(a, ring2.delivery_id, "1.2", NIGHT + 4 * MIN))
    assert (brief.kind, brief.resident_ref, brief.open) == ("missed", "R001", True)
    assert w.outcome(ring2, ANSWERED, NIGHT + 4 * MIN) is False
    assert isinstance(store.run(AcceptAlert(a, ring2.delivery_id, "1111", NIGHT + 5 * MIN, False)), PinRejected)
    assert store.run(AcceptAlert(a, ring2.delivery_id, "2222", NIGHT + 5 * MIN, False)) == Accepted("bob")
    alert = w.alert(a)
    assert (alert.status, alert.acknowledged_by, alert.acknowledged_at) == ("acknowledged", "bob", NIGHT + 5 * MIN)
    assert not alert.unaccepted_escalated
    assert w.deliveries(a)[-1] == (3, w.users["bob"], "+447700900002", "sent", "accepted")
    notes = [n for _, _, n in w.history(a)]
    assert notes[1:] == [
        "step 1: office web: skipped (out of office hours)",
        "step 2: on-call phone: ringing alice (on the rota) on *********001",
        "step 2: call to alice (*********001): no answer; the next person in 2 min",
        "step 3: second contact: ringing bob (second contact on the rota) on *********002",
        "step 3: bob answered the alert call",
        "step 3: wrong phone PIN from bob",
        "on the alert call (step 3)",
    ]
    assert w.history(a)[-1][:2] == ("bob", "accepted by phone")
    # Accepted: the chain stops.
    assert w.tick(NIGHT + 60 * MIN) == ([], [])


def test_in_office_hours_the_web_comes_first_and_acknowledging_there_stops_the_chain(settings):
    w = World(settings)
    a = w.raise_(at=DAY)
    assert w.tick(DAY)[1] == []
    assert w.history(a)[-1][2] == "step 1: office web: the office has 10 min to acknowledge it"
    assert w.tick(DAY + 9 * MIN) == ([], [])
    with unit_of_work(w.factory) as s:
        acknowledge(s, a, "jo", "on it", DAY + 9 * MIN)
    assert w.tick(DAY + 11 * MIN) == ([], [])
    assert w.deliveries(a) == []


def test_in_office_hours_unacknowledged_it_rings_the_rota_then_the_manager_on_a_gap(settings):
    w = World(settings, rota=False)
    a = w.raise_(at=DAY)
    w.tick(DAY)
    _, (ring,) = w.tick(DAY + 10 * MIN)
    assert ring.number == "+447700900009"  # nobody on the rota: the manager
    assert w.history(a)[-1][2] == "step 2: on-call phone: ringing mgr (rota gap: the manager) on *********009"


def test_pass_it_on_rings_the_next_person_at_once(settings):
    w = World(settings)
    a = w.raise_()
    _, (ring,) = w.tick(NIGHT)
    store = w.call()
    store.run(AlertCallStarted(a, ring.delivery_id, "1.1", NIGHT + MIN))
    w.outcome(ring, ANSWERED, NIGHT + MIN)
    assert store.run(PassAlertOn(a, ring.delivery_id, NIGHT + 2 * MIN)) is None
    _, (ring2,) = w.tick(NIGHT + 2 * MIN)
    assert ring2.number == "+447700900002"
    assert ("chain", "passed on", "step 2: alice passed it on (key 2 on the call)") in w.history(a)
    assert w.deliveries(a)[0][3:] == ("sent", "passed_on")


def test_answered_without_a_decision_moves_on_after_answered_minutes(settings):
    w = World(settings)
    a = w.raise_()
    _, (ring,) = w.tick(NIGHT)
    store = w.call()
    store.run(AlertCallStarted(a, ring.delivery_id, "1.1", NIGHT + MIN))
    store.run(AlertCallEnded(a, ring.delivery_id, NIGHT + 2 * MIN, "no key pressed"))
    # The OriginateResponse can arrive after the dialog; it does not undo the decision's timer.
    w.outcome(ring, ANSWERED, NIGHT + 2 * MIN)
    assert w.tick(NIGHT + 7 * MIN - dt.timedelta(seconds=1))[1] == []
    assert w.tick(NIGHT + 7 * MIN)[1][0].number == "+447700900002"
    assert w.deliveries(a)[0][3:] == ("sent", "no_decision")


def test_an_alert_nobody_accepts_keeps_climbing_and_repeats_the_manager(settings):
    w = World(settings)
    a = w.raise_()
    now = NIGHT
    numbers = []
    for _ in range(5):
        _, rings = w.tick(now)
        for ring in rings:
            numbers.append(ring.number)
            w.outcome(ring, OriginateResult(False, "busy", 5), now)
        now += CFG.repeat_minutes * MIN
    assert numbers == ["+447700900001", "+447700900002", "+447700900009", "+447700900009", "+447700900009"]
    assert "step 5: still not accepted, again the manager: ringing mgr (the manager) on *********009" in [
        n for _, _, n in w.history(a)]
    assert w.alert(a).unaccepted_escalated and w.alert(a).status == "open"
    assert {d[3] for d in w.deliveries(a)} == {"failed"}


def test_people_without_a_phone_are_skipped_and_a_failed_channel_is_not_sent(settings):
    w = World(settings, rota=False)
    with unit_of_work(w.factory) as s:
        s.add(RotaEntry(user_id=w.users["nophone"], position="on_call", starts_at=NIGHT - MIN,
                        ends_at=NIGHT + 60 * MIN))
    a = w.raise_()
    _, (ring,) = w.tick(NIGHT)
    assert ring.number == "+447700900009"
    notes = [n for _, _, n in w.history(a)]
    assert "step 2: on-call phone: nophone (on the rota) has no phone number; skipped" in notes
    assert "step 3: second contact: nobody on the rota; skipped" in notes
    w.outcome(ring, OriginateResult(False, "failed", 0), NIGHT)
    assert w.deliveries(a) == [(4, w.users["mgr"], "+447700900009", "failed", "failed")]


def test_only_the_configured_kinds_climb_and_each_kind_may_have_its_own_chain(settings):
    w = World(settings)
    late = w.raise_(kind="late")
    assert w.tick(NIGHT) == ([], [])
    assert w.alert(late).chain_step == 0
    cfg = parse_table("oncall", {"enabled": True, "chains": {"no_reply": ["manager"]}})
    no_reply = w.raise_(kind="no_reply")
    _, (ring,) = w.tick(NIGHT, cfg)
    assert (ring.alert_id, ring.number, ring.step) == (no_reply, "+447700900009", 1)


def test_a_step_is_started_once_however_many_passes_run(settings):
    w = World(settings)
    a = w.raise_()
    _, rings = w.tick(NIGHT)
    assert len(rings) == 1
    assert w.tick(NIGHT) == ([], []) and w.tick(NIGHT + MIN) == ([], [])
    assert len(w.deliveries(a)) == 1


def test_old_alerts_do_not_start_a_chain_when_it_is_switched_on(settings):
    w = World(settings)
    old = w.raise_(at=NIGHT - 2 * 60 * MIN)
    assert w.tick(NIGHT) == ([], [])
    assert w.alert(old).chain_step == 0


def test_oncall_and_prompt_tables_name_their_bad_values():
    for bad, match in (({"chain": ["web", "pager"]}, "unknown step"), ({"chains": {"lateish": ["web"]}}, "kind"),
                       ({"office_days": ["monday"]}, "office_days"), ({"office_start": "9am"}, "HH:MM"),
                       ({"office_start": "18:00", "office_end": "09:00"}, "after"),
                       ({"no_answer_minutes": -1}, "negative"), ({"repeat_minutes": 0}, "positive"),
                       ({"ring": 5}, "unknown setting")):
        with pytest.raises(ConfigError, match=match):
            parse_table("oncall", bad)
    assert parse_table("alert_prompts", {"kinds": {"missed": "custom/missed"}}).for_kind("missed") == "custom/missed"
    with pytest.raises(ConfigError, match="kind"):
        parse_table("alert_prompts", {"kinds": {"lost": "x"}})
