"""Delivery: e-mail through a real SMTP server, retries, escalations (phones: tests/test_alert_chain*.py)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from ivr.db import unit_of_work
from scheduler import delivery
from scheduler.actions import acknowledge, resolve
from scheduler.delivery import DeliveryConfig, deliver_once
from scheduler.models import Alert, AlertAction, AlertDelivery
from scheduler.store import raise_alert
from tests.pg import free_port
from tests.test_alerts_servers import SmtpServer
from tests.test_alerts_world import at, run, visit_id, world

SECOND = dt.timedelta(seconds=1)


def _cfg(smtp_port: int, **kw) -> DeliveryConfig:
    return DeliveryConfig(office_email="office@care.test", smtp_port=smtp_port, email_from="alerts@care.test",
                          base_url="https://ecm.care.test", **kw)


def _attempts(factory) -> list[tuple[int, str, int, str, str]]:
    with factory() as s:
        return [(d.alert_id, d.channel, d.attempt, d.status, d.error)
                for d in s.scalars(select(AlertDelivery).order_by(AlertDelivery.id))]


def test_alert_email_has_local_time_kind_resident_reference_and_link_but_never_the_name(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    with SmtpServer() as smtp:
        run(factory, at("10:30"))
        results = deliver_once(factory, at("10:30", 2), _cfg(smtp.port))
    (alert,) = [a for a in _all(factory)]
    assert [error for _, error in results] == [""]
    (msg,) = smtp.messages
    assert smtp.envelopes == [("alerts@care.test", ["office@care.test"])]
    # 10:30 UTC on 10 March is 10:30 in London (GMT).
    assert msg["Subject"] == "Late alert — resident R001 — 2026-03-10 10:30"
    body = msg.get_content()
    assert "Time:      2026-03-10 10:30 (Europe/London)" in body and "Kind:      late" in body
    assert "Resident:  R001" in body and f"https://ecm.care.test/alerts/{alert.id}" in body
    assert "Alice" not in msg.as_string() and "Brown" not in msg.as_string()
    assert _attempts(factory) == [(alert.id, "email", 1, "sent", "")]


def test_local_time_in_the_email_follows_british_summer_time(settings):
    factory = world(settings)
    v1 = visit_id(factory, "V1")
    with unit_of_work(factory) as s:
        raise_alert(s, kind="no_reply", visit_id=v1, at=at("10:00"),
                    due_at=dt.datetime(2026, 7, 1, 9, 0, tzinfo=dt.UTC))
    with SmtpServer() as smtp:
        deliver_once(factory, at("10:00"), _cfg(smtp.port))
    assert smtp.messages[0]["Subject"].endswith("2026-07-01 10:00")  # 09:00 UTC = 10:00 BST


def test_email_goes_to_the_funders_office_when_one_is_configured(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"), ("V3", "R003", "10:00", 45, "1003", "no")))
    with SmtpServer() as smtp:
        run(factory, at("10:30"))
        deliver_once(factory, at("10:30"), _cfg(smtp.port, email_by_funder={"Private": "private@care.test"}))
    # R001 is funded by Lewisham (default office), R003 privately.
    assert sorted(rcpts[0] for _, rcpts in smtp.envelopes) == ["office@care.test", "private@care.test"]


def test_failed_email_is_retried_with_backoff_and_every_attempt_is_logged(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    run(factory, at("10:30"))
    cfg = _cfg(free_port())  # nothing listens there: connection refused
    (_, error), = deliver_once(factory, at("10:30"), cfg)
    assert "Connection refused" in error or "ConnectionRefused" in error
    with SmtpServer() as smtp:
        cfg = _cfg(smtp.port)
        smtp.fail_next = 1  # then a temporary 451 from the server
        # Attempt 2 is due 30 s after attempt 1 (retry_base_seconds); one second early sends nothing.
        assert deliver_once(factory, at("10:30", 29), cfg) == []
        (_, error), = deliver_once(factory, at("10:30", 30), cfg)
        assert "451" in error
        # Attempt 3 is due 60 s after attempt 2 (doubling back-off).
        assert deliver_once(factory, at("10:31", 29), cfg) == []
        (_, error), = deliver_once(factory, at("10:31", 30), cfg)
        assert error == ""
    assert [(a, st) for _, _, a, st, _ in _attempts(factory)] == [(1, "failed"), (2, "failed"), (3, "sent")]
    assert len(smtp.messages) == 1


def test_the_old_fire_and_forget_voice_keys_are_refused_with_where_they_went(settings):
    import dataclasses

    import pytest

    from carecall.config import ConfigError, validate_tables

    for raw in ({"voice": True}, {"voice": False}, {"on_call_number": "07700900123"}, {"ami_secret": "x"}):
        with pytest.raises(ConfigError, match=r"\[oncall\] and \[ami\]"):
            DeliveryConfig.from_settings(dataclasses.replace(settings, raw={"alerts": raw}))
        # At start the table check names the key (the server does not start).
        assert validate_tables({"alerts": raw}) == [f"unknown setting [alerts] {next(iter(raw))}"]


def test_email_delivery_leaves_the_chains_phone_calls_alone(settings):
    from scheduler.models import DeliveryChannel, DeliveryPurpose, DeliveryStatus

    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    run(factory, at("10:45"))
    missed = next(a.id for a in _all(factory) if a.kind == "missed")
    with unit_of_work(factory) as s:
        s.add(AlertDelivery(alert_id=missed, purpose=DeliveryPurpose.CHAIN, channel=DeliveryChannel.VOICE,
                            target="+447700900123", status=DeliveryStatus.PENDING, created_at=at("10:45"),
                            next_attempt_at=at("10:45"), step=2))
    with SmtpServer() as smtp:
        results = deliver_once(factory, at("10:46"), _cfg(smtp.port))
    assert sorted((j.kind, j.channel) for j, _ in results) == [("late", "email"), ("missed", "email")]
    with factory() as s:
        voice = s.scalars(select(AlertDelivery).where(AlertDelivery.channel == "voice")).one()
    assert voice.status == "pending"  # the chain's to ring, not e-mail's to send


def test_unacknowledged_alert_escalates_to_the_second_contact_after_15_minutes(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"), ("V2", "R002", "10:00", 45, "1002", "no")))
    run(factory, at("10:30"))  # two late alerts raised at 10:30
    v2_alert = next(a.id for a in _all(factory) if a.visit_id == visit_id(factory, "V2"))
    with unit_of_work(factory) as s:
        acknowledge(s, v2_alert, "jo", "on it", at("10:40"))
    cfg = _cfg(1, second_contact_email="manager@care.test")
    with unit_of_work(factory) as s:
        assert delivery.escalate(s, at("10:44", 59), cfg) == []
    with unit_of_work(factory) as s:
        (esc,) = delivery.escalate(s, at("10:45"), cfg)  # 10:30 + 15 min; V2's was acknowledged
    with unit_of_work(factory) as s:
        assert delivery.escalate(s, at("11:30"), cfg) == []  # once only
    v1 = visit_id(factory, "V1")
    with factory() as s:
        alert = s.get(Alert, esc["id"])
        assert alert.visit_id == v1 and alert.escalated_at == at("10:45")
        targets = s.execute(select(AlertDelivery.target, AlertDelivery.purpose)
                            .where(AlertDelivery.alert_id == alert.id)).all()
        assert [tuple(t) for t in targets] == [("manager@care.test", "escalated")]
        assert s.scalar(select(AlertAction.note).where(AlertAction.action == "escalated")).startswith(
            "not acknowledged within 15 min")


def test_no_reply_unresolved_after_30_minutes_is_handed_to_out_of_hours_even_if_acknowledged(settings):
    factory = world(settings)
    v1, v2 = visit_id(factory, "V1"), visit_id(factory, "V2")
    with unit_of_work(factory) as s:
        nr = raise_alert(s, kind="no_reply", visit_id=v1, at=at("18:00"))
        other = raise_alert(s, kind="no_reply", visit_id=v2, at=at("18:00"))
    with unit_of_work(factory) as s:
        acknowledge(s, nr, "jo", "ringing round", at("18:05"))
        resolve(s, other, "jo", "resident answered the door late", at("18:10"))
    cfg = _cfg(1, out_of_hours_email="edt@council.test")
    with unit_of_work(factory) as s:
        assert delivery.escalate(s, at("18:29", 59), cfg) == []
    with unit_of_work(factory) as s:
        assert [e["id"] for e in delivery.escalate(s, at("18:30"), cfg)] == [nr]
    with SmtpServer() as smtp:
        deliver_once(factory, at("18:30"), _cfg(smtp.port, out_of_hours_email="edt@council.test"))
    handover = [m for m in smtp.messages if m["To"] == "edt@council.test"]
    assert len(handover) == 1 and handover[0]["Subject"].startswith("OUT OF HOURS HANDOVER: No reply alert")


def test_a_delivery_claimed_by_a_server_that_died_is_retried(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    run(factory, at("10:30"))
    cfg = _cfg(1)
    with unit_of_work(factory) as s:
        delivery.plan_deliveries(s, at("10:30"), cfg)
        (_job,) = delivery.claim_due(s, at("10:30"), cfg)  # ... and the process is killed here
    with unit_of_work(factory) as s:
        assert delivery.claim_due(s, at("10:39", 59), cfg) == []  # not stale before 10 min
    with unit_of_work(factory) as s:
        delivery.claim_due(s, at("10:40"), cfg)  # marks it failed, schedules attempt 2 at +30 s
    assert [(a, st, e.split(":")[0]) for _, _, a, st, e in _attempts(factory)] == [
        (1, "failed", "interrupted"), (2, "pending", "")]


def _all(factory) -> list[Alert]:
    with factory() as s:
        return list(s.scalars(select(Alert).order_by(Alert.id)))
