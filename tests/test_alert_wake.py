"""The real alert service on the wall clock: an alert is stored, and its first delivery
started, about one pass after its deadline — not up to one interval later.

The safety-net interval here is 60 s, so only the service's own wake-ups (the next
deadline read from the database, a recorded call) can meet the 4 s these tests allow.
Waits are for conditions, with timeouts; the margins are for a loaded 2-core machine.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import func, select, update
from twisted.internet import reactor, task

from carecall.runtime import Runtime
from ivr.models import Visit, utcnow
from scheduler.chain import ChainConfig
from scheduler.delivery import DeliveryConfig
from scheduler.models import Alert, AlertAction, AlertDelivery
from scheduler.rules import Rules
from scheduler.service import AlertService
from tests.callhelpers import R001_LINE, T0, start_server
from tests.helpers import add_visits, factory_for, import_world
from tests.test_alerts_servers import SmtpServer
from tests.test_alerts_world import world

# Seconds from a deadline to the alert stored and its first delivery started: the issue's
# p99 target is 5 s and the interval-only scheduler took up to 60 s here. (1.5 s was seen
# to be exceeded once, 1.73 s, in a clean-clone CI run of two xdist workers beside a
# browser loop; the benchmark, not this test, measures the distribution.)
LIMIT = 4.0
ALL_DAY = ChainConfig(enabled=True, office_days=("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
                      office_start="00:00", office_end="23:59")


def _plan(factory: Any, ref: str, start: dt.datetime, end: dt.datetime) -> None:
    with factory.begin() as s:
        s.execute(update(Visit).where(Visit.visit_ref == ref).values(planned_start=start, planned_end=end))


def _raised(runtime: Runtime) -> dict[tuple[str, int | None], dt.datetime]:
    """(kind, visit id) → wall time the "raised" event was published (after the pass committed)."""
    seen: dict[tuple[str, int | None], dt.datetime] = {}

    def on(kind: str, payload: dict[str, Any]) -> None:
        if kind == "alert" and payload.get("event") == "raised":
            seen.setdefault((payload["kind"], payload["visit_id"]), utcnow())

    runtime.events.subscribe(on)
    return seen


@pytest_twisted.inlineCallbacks
def test_an_alert_due_in_a_few_seconds_is_stored_and_delivered_within_1_5_s_while_the_interval_is_60_s(settings):
    factory = world(settings, (("LATE", "R001", "09:00", 60, "1001", "no"),
                               ("MISS", "R002", "09:00", 60, "1002", "no")))
    now = utcnow()
    late_due = now + dt.timedelta(seconds=4, milliseconds=300)
    miss_due = now + dt.timedelta(seconds=6, milliseconds=700)
    _plan(factory, "LATE", late_due - dt.timedelta(minutes=30), late_due + dt.timedelta(minutes=30))
    # MISS is late already (raised by the catch-up pass at start); missed at its planned end, in 6.7 s.
    _plan(factory, "MISS", miss_due - dt.timedelta(minutes=45), miss_due)
    with factory() as s:
        ids = dict(s.execute(select(Visit.visit_ref, Visit.id)).all())
    runtime = Runtime.create(settings, reactor)
    runtime.start()
    raised = _raised(runtime)
    mailed: dict[int, dt.datetime] = {}
    with SmtpServer() as smtp:
        cfg = DeliveryConfig(office_email="office@care.test", smtp_port=smtp.port)
        service = AlertService(runtime, interval=60, rules=Rules(), cfg=cfg, chain_cfg=ALL_DAY)
        try:
            service.startService()
            give_up = time.monotonic() + 30
            while len(mailed) < 3 and time.monotonic() < give_up:
                for m in smtp.messages:
                    mailed.setdefault(int(m["X-Carecall-Alert"]), utcnow())
                yield task.deferLater(reactor, 0.02, lambda: None)
        finally:
            yield service.stopService()
            runtime.stop()
    with factory() as s:
        alerts = {(a.kind, a.visit_id): a for a in s.scalars(select(Alert))}
        chain_started = {a.alert_id: a.at for a in s.scalars(select(AlertAction).where(AlertAction.actor == "chain"))}
    assert set(alerts) == {("late", ids["LATE"]), ("late", ids["MISS"]), ("missed", ids["MISS"])}
    assert service.ticks < 20  # woken for the deadlines, not polling
    for key, due in ((("late", ids["LATE"]), late_due), (("missed", ids["MISS"]), miss_due)):
        alert = alerts[key]
        assert alert.due_at == due
        stored = (raised[key] - due).total_seconds()
        first_mail = (mailed[alert.id] - due).total_seconds()
        assert 0 <= stored < LIMIT, (key, stored)
        assert 0 <= first_mail < LIMIT, (key, first_mail)
    # The missed visit climbs: its chain's first step (the office web, in office hours) was
    # started in the pass that raised it.
    missed = alerts[("missed", ids["MISS"])]
    assert missed.id in chain_started and chain_started[missed.id] < miss_due + dt.timedelta(seconds=LIMIT)


@pytest_twisted.inlineCallbacks
def test_two_services_on_one_database_wake_together_and_store_and_mail_each_alert_once(settings):
    factory = world(settings, tuple((f"V{i}", f"R00{1 + i % 4}", "09:00", 60, f"100{1 + i % 4}", "no")
                                    for i in range(6)))
    now = utcnow()
    dues = {}
    for i in range(6):  # six late deadlines 3.0 … 5.5 s ahead; both services wake for each
        due = now + dt.timedelta(seconds=3 + i / 2)
        _plan(factory, f"V{i}", due - dt.timedelta(minutes=30), due + dt.timedelta(hours=1))
        dues[f"V{i}"] = due
    runtimes = [Runtime.create(settings, reactor) for _ in range(2)]
    services = []
    with SmtpServer() as smtp:
        cfg = DeliveryConfig(office_email="office@care.test", smtp_port=smtp.port)
        try:
            for rt in runtimes:
                rt.start()
                services.append(AlertService(rt, interval=60, rules=Rules(), cfg=cfg))
                services[-1].startService()
            give_up = time.monotonic() + 30
            while len(smtp.messages) < 6 and time.monotonic() < give_up:
                yield task.deferLater(reactor, 0.05, lambda: None)
            yield task.deferLater(reactor, 1.0, lambda: None)  # both pass again over the same facts
        finally:
            for svc in services:
                yield svc.stopService()
            for rt in runtimes:
                rt.stop()
        messages = list(smtp.messages)
    with factory() as s:
        stored = s.execute(select(Visit.visit_ref, Alert.due_at, Alert.raised_at).join(Visit)
                           .where(Alert.kind == "late")).all()
        deliveries = s.scalar(select(func.count()).select_from(AlertDelivery))
    assert sorted(r.visit_ref for r in stored) == sorted(dues)
    assert all(r.due_at == dues[r.visit_ref] for r in stored)
    # Both woke for the deadlines (the interval is 60 s); the timing itself is the test above's.
    late = [(r.raised_at - r.due_at).total_seconds() for r in stored]
    assert max(late) < 2 * LIMIT, late
    assert deliveries == 6 and len(messages) == 6
    assert all(svc.ticks >= 2 for svc in services), [svc.ticks for svc in services]


@pytest.fixture
def call_world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    return factory


@pytest.mark.parametrize("effects", ["thread", "process"])
@pytest_twisted.inlineCallbacks
def test_a_departure_recorded_by_a_real_call_raises_the_short_visit_alert_within_1_5_s(settings, call_world, effects):
    add_visits(settings, call_world, ("V1", "R001", T0, 45, "1001"))
    server = start_server(settings, T0, effects=effects)
    recorded: list[float] = []
    server.runtime.events.subscribe(lambda kind, p: recorded.append(time.monotonic()) if kind == "recorded" else None)
    short: list[float] = []
    server.runtime.events.subscribe(
        lambda kind, p: short.append(time.monotonic())
        if kind == "alert" and p.get("kind") == "short_visit" and p.get("event") == "raised" else None)
    # The service runs on the call server's pinned clock, so the departure is "now" to both.
    service = AlertService(server.runtime, interval=60, rules=Rules(), cfg=DeliveryConfig(),
                           clock=lambda: server.clock.now)
    try:
        service.startService()
        server.at(T0 + dt.timedelta(minutes=2))
        arrival = yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
        assert arrival.completed
        server.at(T0 + dt.timedelta(minutes=7))  # 5 min of 45 planned: a short visit
        departure = yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
        assert departure.completed
        give_up = time.monotonic() + 20
        while not short and time.monotonic() < give_up:
            yield task.deferLater(reactor, 0.02, lambda: None)
    finally:
        yield service.stopService()
        yield server.stop()
    assert len(recorded) == 2 and short, (recorded, short)
    assert short[0] - recorded[1] < LIMIT
    with call_world() as s:
        (alert,) = s.scalars(select(Alert).where(Alert.kind == "short_visit"))
    assert alert.due_at == T0 + dt.timedelta(minutes=7)


@pytest_twisted.inlineCallbacks
def test_a_no_reply_call_raises_its_alert_and_its_first_e_mail_is_sent_within_1_5_s(settings, call_world):
    """The call raises the alert itself (same transaction); the pass it wakes starts the delivery."""
    add_visits(settings, call_world, ("V1", "R001", T0, 30, "1001"))
    server = start_server(settings, T0 - dt.timedelta(minutes=20))
    recorded: list[float] = []
    server.runtime.events.subscribe(lambda kind, p: recorded.append(time.monotonic()) if kind == "recorded" else None)
    mailed: list[float] = []
    with SmtpServer() as smtp:
        cfg = DeliveryConfig(office_email="office@care.test", smtp_port=smtp.port)
        service = AlertService(server.runtime, interval=60, rules=Rules(), cfg=cfg, clock=lambda: server.clock.now)
        try:
            service.startService()
            result = yield server.call(script="noreply", callerid="07911 123001", digits=["1001", "1234"])
            assert result.completed
            give_up = time.monotonic() + 20
            while not smtp.messages and time.monotonic() < give_up:
                yield task.deferLater(reactor, 0.02, lambda: None)
            if smtp.messages:
                mailed.append(time.monotonic())
        finally:
            yield service.stopService()
            yield server.stop()
        messages = list(smtp.messages)
    assert len(recorded) == 1 and len(messages) == 1
    assert messages[0]["Subject"].startswith("No reply alert")
    assert mailed[0] - recorded[0] < LIMIT
