"""Staff actions on alerts: acknowledge, no-reply checks, resolve — kept with who and when."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ivr.db import unit_of_work
from scheduler.actions import AlertActionError, AlertNotFound, acknowledge, record_check, resolve
from scheduler.models import Alert, AlertAction, AlertCheck
from scheduler.store import raise_alert
from tests.test_alerts_world import at, visit_id, world


def _no_reply(factory) -> int:
    v1 = visit_id(factory, "V1")
    with unit_of_work(factory) as s:
        new = raise_alert(s, kind="no_reply", visit_id=v1, at=at("10:20"), detail="no reply")
    assert new is not None
    return new


def test_acknowledge_then_checks_then_resolve_keeps_the_whole_history(settings):
    factory = world(settings)
    alert_id = _no_reply(factory)
    with unit_of_work(factory) as s:
        acknowledge(s, alert_id, "jo.office", "calling the worker back", at("10:22"))
    with unit_of_work(factory) as s:
        record_check(s, alert_id, "door_time", "jo.office", at("10:25"), "waited 5 min")
        record_check(s, alert_id, "next_of_kin", "jo.office", at("10:31"))
    with unit_of_work(factory) as s:
        resolve(s, alert_id, "jo.office", "daughter says resident is at day centre", at("10:40"))
    with factory() as s:
        alert = s.get(Alert, alert_id)
        assert (alert.status, alert.acknowledged_by, alert.acknowledged_at) == ("resolved", "jo.office", at("10:22"))
        assert (alert.resolved_by, alert.resolved_at, alert.resolved_by_system) == ("jo.office", at("10:40"), False)
        assert [(c.step, c.done_at) for c in s.scalars(select(AlertCheck).order_by(AlertCheck.id))] == [
            ("door_time", at("10:25")), ("next_of_kin", at("10:31"))]
        history = [(a.action, a.actor) for a in s.scalars(select(AlertAction).order_by(AlertAction.id))]
    assert history == [("raised", "system"), ("acknowledged", "jo.office"), ("check", "jo.office"),
                       ("check", "jo.office"), ("resolved", "jo.office")]


def test_invalid_transitions_are_refused_with_a_clear_message_and_change_nothing(settings):
    factory = world(settings)
    alert_id = _no_reply(factory)
    with pytest.raises(AlertActionError, match="note"), unit_of_work(factory) as s:
        resolve(s, alert_id, "jo", "  ", at("10:30"))
    with pytest.raises(AlertActionError, match="unknown check"), unit_of_work(factory) as s:
        record_check(s, alert_id, "ring_the_bell", "jo", at("10:30"))
    with pytest.raises(AlertNotFound), unit_of_work(factory) as s:
        acknowledge(s, 9999, "jo", "", at("10:30"))
    with unit_of_work(factory) as s:
        acknowledge(s, alert_id, "jo", "", at("10:30"))
    with pytest.raises(AlertActionError, match="already acknowledged by jo"), unit_of_work(factory) as s:
        acknowledge(s, alert_id, "sam", "", at("10:31"))
    with unit_of_work(factory) as s:
        resolve(s, alert_id, "jo", "resident found well", at("10:40"))
    with pytest.raises(AlertActionError, match="already resolved"), unit_of_work(factory) as s:
        resolve(s, alert_id, "sam", "again", at("10:41"))
    with pytest.raises(AlertActionError, match="already resolved"), unit_of_work(factory) as s:
        record_check(s, alert_id, "nhs", "sam", at("10:41"))
    with factory() as s:
        assert s.scalar(select(Alert.resolved_by).where(Alert.id == alert_id)) == "jo"
        assert len(s.scalars(select(AlertAction)).all()) == 3  # raised, acknowledged, resolved


def test_checklist_is_only_for_no_reply_alerts(settings):
    factory = world(settings)
    v1 = visit_id(factory, "V1")
    with unit_of_work(factory) as s:
        late = raise_alert(s, kind="late", visit_id=v1, at=at("10:30"), due_at=at("10:30"))
    with pytest.raises(AlertActionError, match="no-reply"), unit_of_work(factory) as s:
        record_check(s, late, "nhs", "jo", at("10:31"))
