"""The no-reply call (``agi://…/noreply``) over real TCP, and the server's time limits."""

from __future__ import annotations

import datetime as dt

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from agi.fastagi import FastAGIFactory
from carecall.runtime import Runtime
from ivr.callstore import CallStore, MatchWindows
from ivr.dialog import DialogConfig
from tests.callhelpers import R001_LINE, T0, attendances, calls, start_server
from tests.helpers import add_visits, factory_for, import_world

MIN = dt.timedelta(minutes=1)


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    return factory


@pytest.fixture
def server(settings, world):
    srv = start_server(settings)
    yield srv
    pytest_twisted.blockon(srv.stop())



@pytest_twisted.inlineCallbacks
def test_noreply_records_the_workers_due_visit_and_thanks_the_caller(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"), ("OTHER", "R002", T0, 30, "1002"))
    server.at(T0 - 20 * MIN)  # 20 min before the planned start: inside the 30 min lead
    result = yield server.call(script="noreply", callerid="07911 123001", digits=["1001", "1234"])
    assert result.completed
    assert 'STREAM FILE auth-thankyou ""' in [c for c, _ in result.transcript]
    [rec] = calls(world)
    assert rec.outcome == "no_reply" and rec.script == "noreply" and rec.visit_id is not None
    assert rec.detail == "caller ID is the worker's mobile" and rec.caller_e164 == "+447911123001"
    assert attendances(world) == []
    kind, payload = server.events[-1]
    assert kind == "call" and payload["outcome"] == "no_reply" and payload["visit_id"] == rec.visit_id
    # The alert is raised at once, in the same transaction as the call record.
    from scheduler.models import Alert

    with world() as s:
        [alert] = s.query(Alert).all()
    assert (alert.kind, alert.status, alert.visit_id, alert.call_record_id) == (
        "no_reply", "open", rec.visit_id, rec.id)
    assert alert.raised_at == T0 - 20 * MIN


@pytest_twisted.inlineCallbacks
def test_noreply_called_twice_for_one_visit_raises_one_alert(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    yield server.call(script="noreply", callerid=None, digits=["1001", "1234"], uniqueid="nr.1")
    yield server.call(script="noreply", callerid=None, digits=["1001", "1234"], uniqueid="nr.2")
    from scheduler.models import Alert

    assert [c.outcome for c in calls(world)] == ["no_reply", "no_reply"]
    with world() as s:
        assert [a.kind for a in s.query(Alert).all()] == ["no_reply"]


@pytest_twisted.inlineCallbacks
def test_noreply_with_two_visits_due_asks_the_residents_phone_code(settings, world, server):
    add_visits(settings, world, ("A", "R001", T0, 30, "1001"), ("B", "R002", T0 + 10 * MIN, 30, "1001"))
    result = yield server.call(script="noreply", callerid=R001_LINE, digits=["1001", "1234", "102"])
    assert result.completed
    assert "GET DATA telephone-number 6000 8" in [c for c, _ in result.transcript]
    [rec] = calls(world)
    from ivr.models import Visit

    with world() as s:
        assert s.get(Visit, rec.visit_id).visit_ref == "B"
    assert rec.detail == "caller ID is not the worker's mobile"


@pytest_twisted.inlineCallbacks
def test_noreply_without_a_due_visit_is_queued_for_review_and_the_office_is_told_at_once(settings, world, server):
    from scheduler.models import Alert

    add_visits(settings, world, ("LATER", "R001", T0 + dt.timedelta(hours=3), 30, "1001"))
    result = yield server.call(script="noreply", callerid=None, digits=["1001", "1234"])
    [rec] = calls(world)
    assert rec.outcome == "no_visit" and rec.review_status == "open" and rec.visit_id is None
    # The alert is stored in the call's own transaction, so the worker hears what the office got.
    with world() as s:
        (alert,) = s.query(Alert).all()
    assert (alert.kind, alert.call_record_id, alert.visit_id) == ("no_reply", rec.id, None)
    assert alert.dedupe_key == f"no_reply:call:{rec.id}"  # the pass's safety net would use the same key
    assert alert.detail == "no reply reported by worker 1001: no visit matched"
    commands = [c for c, _ in result.transcript]
    assert result.completed and 'STREAM FILE auth-thankyou ""' in commands
    assert 'STREAM FILE im-sorry ""' not in commands


@pytest_twisted.inlineCallbacks
def test_noreply_ignores_a_visit_the_worker_already_arrived_at(settings, world, server):
    add_visits(settings, world, ("V1", "R001", T0, 30, "1001"))
    yield server.call(callerid=R001_LINE, digits=["1001", "1234"])
    yield server.call(script="noreply", callerid=R001_LINE, digits=["1001", "1234"])
    assert [c.outcome for c in calls(world)] == ["arrival", "no_visit"]


def test_silent_peer_is_cut_after_the_idle_timeout_and_the_call_says_how_far_it_got(settings, world):
    """Injected time: a task.Clock drives the timeout, database effects run inline."""
    clock = task.Clock()
    clock.advance(T0.timestamp())
    runtime = Runtime.create(settings)
    store = CallStore(runtime.engine, runtime.hasher, MatchWindows.from_settings(settings))
    factory = FastAGIFactory(DialogConfig.from_settings(settings), store,
                             lambda fn, *a: defer.maybeDeferred(fn, *a), clock, idle_timeout=60, call_limit=600)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"agi_network: yes\nagi_network_script: checkin\nagi_request: agi://h/checkin\n"
                       b"agi_uniqueid: idle.1\nagi_callerid: 02086989911\n\n")
    assert transport.value() == b"ANSWER\n"
    transport.clear()
    proto.dataReceived(b"200 result=0\n")
    assert transport.value() == b"GET DATA agent-user 6000 8\n"
    clock.advance(59)
    assert not transport.disconnecting and factory.active == 1
    clock.advance(2)  # 61 s of silence > 60 s
    assert transport.disconnected or transport.disconnecting
    proto.connectionLost()
    [rec] = calls(world)
    assert (rec.outcome, rec.stage, rec.uniqueid) == ("hangup", "worker_number", "idle.1")
    assert factory.active == 0
    runtime.stop()
