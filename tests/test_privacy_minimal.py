"""Nothing personal where it is not needed: alert e-mails, the audit of a package edit,
the privacy commands' output and the server's log carry references, never names,
addresses or phone numbers."""

from __future__ import annotations

import json

from sqlalchemy import select

from ivr.db import unit_of_work
from ivr.models import AuditEntry, CarePackage, Resident, Visit, Worker
from scheduler.delivery import DeliveryConfig, claim_due, compose_email, plan_deliveries
from scheduler.store import raise_alert
from tests.billing_world import World, utc
from tests.helpers import factory_for, import_world
from tests.privacy_world import plant
from tests.webclient import cli
from web.admin import _save_package

PERSONAL = ("Alice Brown", "1 Elm Road", "SE6 1AA", "+442086989911", "020 8698 9911", "Wendy Walker",
            "+447911123001")


def test_alert_emails_name_the_resident_by_reference_only(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    w = World(factory)
    ref = w.visit("R001", utc(2026, 3, 2, 9), 30, workers=("1001",), ref="V-E1")
    now = utc(2026, 3, 2, 9, 20)
    cfg = DeliveryConfig(office_email="office@care.test")
    with unit_of_work(factory) as s:
        v = s.scalar(select(Visit).where(Visit.visit_ref == ref))
        wid = s.scalar(select(Worker.id).where(Worker.worker_number == "1001"))
        raise_alert(s, kind="no_reply", visit_id=v.id, worker_id=wid, resident_id=v.resident_id, at=now)
        plan_deliveries(s, now, cfg)
    with unit_of_work(factory) as s:
        [job] = claim_due(s, now, cfg)
    msg = compose_email(job, cfg)
    text = str(msg["Subject"]) + msg.get_content()
    assert "R001" in msg["Subject"]
    for value in PERSONAL:
        assert value not in text, value


def test_a_package_edit_is_audited_with_the_reference_not_the_name(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    with unit_of_work(factory) as s:
        p = s.scalar(select(CarePackage).join(Resident).where(Resident.reference == "R001"))
        values = {"purchase_order": p.purchase_order, "funder": p.funder, "weekly_hours": p.weekly_hours,
                  "hourly_rate": p.hourly_rate, "weekend_rate": p.weekend_rate,
                  "bank_holiday_rate": p.bank_holiday_rate, "start_date": p.start_date, "end_date": None}
        _save_package(s, p.id, values, "coord")
    with factory() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.entity == "package")).one()
    assert json.loads(entry.after)["resident_reference"] == "R001"
    assert "Alice Brown" not in entry.before + entry.after


def test_privacy_commands_print_references_and_counts_not_details(settings, tmp_path):
    plant(settings)
    outputs = []
    for args in (("privacy", "export", "--resident", "R001", "--out", str(tmp_path)),
                 ("privacy", "views", "--resident", "R001"),
                 ("privacy", "retention", "--dry-run")):
        r = cli(settings, *args)
        assert r.returncode == 0, r.stderr
        outputs.append(r.stdout + r.stderr)
    assert "subject-access-resident-1-" in outputs[0]  # file names carry the row id, not the reference or name
    assert "resident page" in outputs[1] and "subject-access export" in outputs[1]
    for out in outputs:
        for value in PERSONAL:
            assert value not in out, value
