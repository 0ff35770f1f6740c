"""Missed-visit notices (spec §3.44): consenting family contacts and the funder's brokerage are
e-mailed through a real SMTP server on loopback, via the alert outbox (logged, retried)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from carecall.config import ConfigError, parse_table
from ivr.db import unit_of_work
from ivr.models import Resident, ResidentContact
from outreach.config import NoticesConfig
from scheduler.delivery import DeliveryConfig, deliver_once
from scheduler.models import Alert, AlertAction, AlertDelivery
from tests.pg import free_port
from tests.test_alerts_servers import SmtpServer
from tests.test_alerts_world import at, attend, run, world

NOTICES = NoticesConfig(brokerage_email={"Lewisham": "brokerage@lewisham.test"}, provider_name="Riverside Care",
                        office_phone="020 7946 0000")


def _cfg(port: int, notices: NoticesConfig = NOTICES) -> DeliveryConfig:
    return DeliveryConfig(office_email="office@care.test", smtp_port=port, email_from="alerts@care.test",
                          base_url="https://ecm.care.test", notices=notices)


def _contacts(factory, ref: str, *rows: tuple[str, str, bool]) -> None:
    with unit_of_work(factory) as s:
        rid = s.scalar(select(Resident.id).where(Resident.reference == ref))
        for i, (name, email, notify) in enumerate(rows, 1):
            s.add(ResidentContact(resident_id=rid, position=i, name=name, email=email, notify_missed=notify,
                                  relation_note="daughter"))


def _deliveries(factory) -> list[tuple[str, str, int, str]]:
    with factory() as s:
        return [(d.purpose, d.target, d.attempt, d.status)
                for d in s.scalars(select(AlertDelivery).order_by(AlertDelivery.id))]


def test_missed_visit_emails_consenting_contacts_and_the_brokerage_with_nothing_personal_in_the_subject(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    _contacts(factory, "R001", ("Jane Brown", "jane@family.test", True), ("Tom Brown", "tom@family.test", False),
              ("No Mail", "", True))
    with SmtpServer() as smtp:
        run(factory, at("10:30"))  # late only
        deliver_once(factory, at("10:30"), _cfg(smtp.port))
        assert [rcpts for _, rcpts in smtp.envelopes] == [["office@care.test"]]
        run(factory, at("10:45"))  # missed: planned end passed with no arrival
        results = deliver_once(factory, at("10:45"), _cfg(smtp.port))
    assert [e for _, e in results] == ["", "", ""]
    by_rcpt = {rcpts[0]: msg for (_, rcpts), msg in zip(smtp.envelopes, smtp.messages, strict=True)}
    assert sorted(by_rcpt) == ["brokerage@lewisham.test", "jane@family.test", "office@care.test"]
    family, brokerage = by_rcpt["jane@family.test"], by_rcpt["brokerage@lewisham.test"]
    for msg in (family, brokerage):
        assert msg["Subject"] == "Care visit update from Riverside Care"
        text = msg.as_string()
        assert "Alice" not in text and "Brown" not in text and "Elm Road" not in text and "SE6" not in text
        assert "/alerts/" not in text  # no link into the office web
    body = family.get_content()
    assert "Tuesday 10 March 2026, 10:00–10:45" in body
    assert "office was alerted at 10:45" in body and "020 7946 0000" in body
    assert "R001" not in body  # the family knows whose visit it is
    body = brokerage.get_content()
    assert "Resident:   R001" in body and "Tuesday 10 March 2026, 10:00–10:45" in body
    assert "no care worker logged an arrival" in body
    with factory() as s:
        (missed,) = s.scalars(select(Alert).where(Alert.kind == "missed"))
        notes = [a.note for a in s.scalars(select(AlertAction).where(AlertAction.alert_id == missed.id,
                                                                     AlertAction.action == "notices"))]
    assert notes == ["missed-visit notice e-mails planned: 1 family contact(s), brokerage"]


def test_a_failed_notice_is_logged_and_retried_like_any_delivery(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    _contacts(factory, "R001", ("Jane Brown", "jane@family.test", True))
    run(factory, at("10:45"))
    deliver_once(factory, at("10:45"), _cfg(free_port()))  # mail server down
    rows = _deliveries(factory)
    assert ("notice_family", "jane@family.test", 1, "failed") in rows
    assert ("notice_family", "jane@family.test", 2, "pending") in rows
    with SmtpServer() as smtp:
        deliver_once(factory, at("10:45", 30), _cfg(smtp.port))
    # The office's own e-mails (late, missed) were retried too.
    assert sorted({r[0] for _, r in smtp.envelopes}) == ["brokerage@lewisham.test", "jane@family.test",
                                                         "office@care.test"]
    assert ("notice_family", "jane@family.test", 2, "sent") in _deliveries(factory)


def test_no_notice_when_the_worker_came_after_all_or_processing_is_restricted(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"), ("V2", "R002", "10:00", 45, "1002", "no")))
    _contacts(factory, "R001", ("Jane Brown", "jane@family.test", True))
    _contacts(factory, "R002", ("Sam Green", "sam@family.test", True))
    with unit_of_work(factory) as s:
        s.execute(update(Resident).where(Resident.reference == "R002").values(processing_restricted=True))
    # V1's worker arrived at 10:47, after the planned end, and the server was down until 10:50:
    # the catch-up pass raises the missed alert and settles it at once. Not a missed visit.
    attend(factory, "V1", "1001", at("10:47"))
    with SmtpServer() as smtp:
        run(factory, at("10:50"))
        deliver_once(factory, at("10:50"), _cfg(smtp.port))
    # R002 restricted: no family e-mail, but the brokerage is still told (the contract's own duty).
    outside = sorted(r[0] for _, r in smtp.envelopes if r[0] != "office@care.test")
    assert outside == ["brokerage@lewisham.test"]
    with factory() as s:
        assert s.scalar(select(Alert.status).where(Alert.kind == "missed", Alert.visit_id.is_not(None))
                        .order_by(Alert.id).limit(1)) == "resolved"


def test_missed_notices_can_be_switched_off_and_a_bad_brokerage_address_is_named():
    assert parse_table("notices", {"brokerage_email": {"Lewisham": "b@l.test"}}).brokerage_email == {
        "Lewisham": "b@l.test"}
    with pytest.raises(ConfigError, match=r"\[notices\] brokerage_email: not an e-mail address for Lewisham"):
        parse_table("notices", {"brokerage_email": {"Lewisham": "brokerage"}})
    with pytest.raises(ConfigError, match=r"unknown setting \[notices\] brokerage"):
        parse_table("notices", {"brokerage": {}})
    assert parse_table("notices", {"missed_enabled": False}).missed_enabled is False


def test_switched_off_sends_only_the_office_email(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    _contacts(factory, "R001", ("Jane Brown", "jane@family.test", True))
    run(factory, at("10:45"))
    with SmtpServer() as smtp:
        deliver_once(factory, at("10:45"), _cfg(smtp.port, NoticesConfig(missed_enabled=False)))
    assert {r[0] for _, r in smtp.envelopes} == {"office@care.test"}
