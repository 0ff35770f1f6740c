"""The contacts CSV kind (all or nothing, like every import), UK display of numbers, key-safe sealing."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from ivr import keysafe
from ivr.importer import import_csv
from ivr.models import AuditEntry, ResidentContact
from ivr.phone import format_uk
from ivr.pins import load_or_create_key
from ivr.sealed import Sealer
from tests.helpers import context_for, factory_for, import_world

HEADER = "resident_reference,name,relation,relation_note,phone,phone2,email,notify_missed,billing_address\n"


def contacts(factory):
    with factory() as s:
        return [(c.resident.reference, c.position, c.name, c.relation, c.phone_e164, c.phone2_e164, c.notify_missed)
                for c in s.scalars(select(ResidentContact).order_by(ResidentContact.resident_id,
                                                                    ResidentContact.position))]


def test_contacts_import_normalises_phones_orders_by_file_and_replaces_a_residents_list(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    ctx = context_for(settings)
    text = HEADER + ("R001,Carol Brown,next of kin,daughter,07911 123101,+44 (0)20 8698 1101,c@example.org,yes,\n"
                     "R001,Mr Patel,other,neighbour,020 8698 1102,,,no,\n"
                     'R003,Paul White,representative,son,07911 123103,,,yes,"9 Birch Way, London"\n')
    report = import_csv(factory, "contacts", text, ctx)
    assert report.ok and report.summary() == "contacts: 3 created, 0 updated"
    assert contacts(factory) == [
        ("R001", 1, "Carol Brown", "next_of_kin", "+447911123101", "+442086981101", True),
        ("R001", 2, "Mr Patel", "other", "+442086981102", None, False),
        ("R003", 1, "Paul White", "representative", "+447911123103", None, True)]
    # Sending R001's list again replaces R001's contacts only; R003's stay.
    report = import_csv(factory, "contacts", HEADER + "R001,Mr Patel,other,,020 8698 1102,,,no,\n", ctx)
    assert report.ok and report.summary() == "contacts: 1 created, 1 updated"
    assert [c[:3] for c in contacts(factory)] == [("R001", 1, "Mr Patel"), ("R003", 1, "Paul White")]


def test_a_contacts_file_with_any_bad_row_writes_nothing_and_names_every_bad_line(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    before = contacts(factory)
    text = HEADER + ("R001,Carol Brown,next of kin,,07911 123101,,,yes,\n"
                     "R999,Nobody,next of kin,,,,,no,\n"
                     "R001,Bad Phone,other,,12345,,,no,\n"
                     "R001,Cousin,cousin,,,,,no,\n"
                     "R001,Mail,other,,,,not-an-address,no,\n"
                     "R001,,other,,,,,no,\n")
    report = import_csv(factory, "contacts", text, context_for(settings))
    assert [(e.line, e.message.split(":")[0].split(" ")[0]) for e in report.errors] == [
        (3, "resident_reference"), (4, "phone"), (5, "relation"), (6, "email"), (7, "name")]
    assert contacts(factory) == before
    with factory() as s:
        assert s.scalar(select(AuditEntry).where(AuditEntry.entity == "contacts")) is None


def test_phone_numbers_are_shown_in_uk_national_format():
    assert format_uk("+442086989911") == "020 8698 9911"
    assert format_uk("+447911123001") == "07911 123001"
    assert format_uk("+33142685300") == "+33 1 42 68 53 00"
    assert format_uk(None) == "" and format_uk("") == ""


def test_a_key_safe_code_is_sealed_to_its_resident_and_setting_it_audits_no_value(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    sealer = Sealer(load_or_create_key(settings.secret_path))
    now = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
    with factory() as s:
        keysafe.set_code(s, sealer, 1, "0912", actor="mgr", now=now)
        s.commit()
        row = s.get(keysafe.KeySafeCode, 1)
        assert "0912" not in row.sealed_code
        assert keysafe.reveal(s, sealer, 1, actor="mgr", now=now) == "0912"
        s.commit()
        entries = [(e.action, e.actor, e.before + e.after) for e in s.scalars(select(AuditEntry)
                   .where(AuditEntry.action.like("keysafe%")).order_by(AuditEntry.id))]
        assert [a for a, _, _ in entries] == ["keysafe_set", "keysafe_reveal"]
        assert all("0912" not in text for _, _, text in entries)
        with pytest.raises(keysafe.KeySafeError):
            keysafe.reveal(s, sealer, 2, actor="mgr", now=now)  # none held for resident 2
        with pytest.raises(keysafe.KeySafeError):
            keysafe.set_code(s, sealer, 1, "x" * 21, actor="mgr", now=now)
        keysafe.set_code(s, sealer, 1, None, actor="mgr", now=now)
        s.commit()
        assert s.get(keysafe.KeySafeCode, 1) is None
