"""Contacts, access and key-safe codes on the office web, and the people on alert and visit pages.

One real ``carecall run`` per engine (SQLite and PostgreSQL), driven over TCP like a
browser: the resident page edits contacts (phones normalised, bad input refused with
nothing changed), the key-safe code is sealed in its own table and shown only by a POST
"reveal" from a user with key-safe access (403 otherwise), which writes the audit log;
the no-departure alert page and the visit page carry the resident's name, address,
phones (UK format, ``tel:`` links), contacts and the worker's name, mobile and last
logged place; the JSON API carries none of it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from carecall.config import load_settings
from ivr import keysafe
from ivr.db import unit_of_work
from ivr.importer import import_csv
from ivr.keysafe import KeySafeCode
from ivr.models import Attendance, AuditEntry, Resident, ResidentContact, Visit, Worker
from ivr.pins import load_or_create_key
from ivr.sealed import Sealer
from scheduler.models import Alert
from scheduler.store import raise_alert
from tests.conftest import fresh_database
from tests.helpers import VISITS_HEADER, context_for, factory_for, import_world, on_today, visit_row
from tests.webclient import Client, add_users, cli, running_server
from web.models import User

CONTACTS = """resident_reference,name,relation,relation_note,phone,phone2,email,notify_missed
R003,Paula White,next of kin,daughter,07911 123101,020 8698 1101,paula@example.org,yes
R003,Mr Singh,other,neighbour,020 8698 1102,,,no
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("people")
    with fresh_database(request, request.param, tmp) as url:
        settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "carecall.key"),
                                 data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        rows = [visit_row("P-PREV", "R001", now - dt.timedelta(minutes=200), 30, "1003", settings=settings),
                visit_row("P-NODEP", "R003", now - dt.timedelta(minutes=120), 45, "1003", settings=settings),
                visit_row("P-LATER", "R002", on_today(now, 30, settings), 30, "1002", settings=settings)]
        import_world(settings, factory, "\n".join([VISITS_HEADER, *rows]) + "\n")
        report = import_csv(factory, "contacts", CONTACTS, context_for(settings))
        assert report.ok, report.errors
        with unit_of_work(factory) as s:
            r3 = s.scalar(select(Resident).where(Resident.reference == "R003"))
            r3.access_notes, r3.keysafe_reference = "Side gate; dog in the kitchen", "KS-17 by the back door"
            w = s.scalar(select(Worker).where(Worker.worker_number == "1003"))
            prev = s.scalar(select(Visit).where(Visit.visit_ref == "P-PREV"))
            nodep = s.scalar(select(Visit).where(Visit.visit_ref == "P-NODEP"))
            s.add(Attendance(visit_id=prev.id, resident_id=prev.resident_id, worker_id=w.id,
                             arrival_at=prev.planned_start, arrival_method="phone", arrival_verified=True,
                             departure_at=prev.planned_end, departure_method="phone", departure_verified=True))
            att = Attendance(visit_id=nodep.id, resident_id=nodep.resident_id, worker_id=w.id,
                             arrival_at=nodep.planned_start + dt.timedelta(minutes=3), arrival_method="phone",
                             arrival_verified=True)
            s.add(att)
            s.flush()
            alert_id = raise_alert(s, kind="no_departure", visit_id=nodep.id, worker_id=w.id,
                                   resident_id=nodep.resident_id, attendance_id=att.id, at=now,
                                   due_at=nodep.planned_end + dt.timedelta(minutes=30),
                                   detail="worker 1003 arrived, no departure")
            keysafe.set_code(s, Sealer(load_or_create_key(settings.secret_path)), r3.id, "1357", actor="setup",
                             now=now)
            ids = {"R003": r3.id, "nodep": nodep.id, "alert": alert_id if isinstance(alert_id, int) else None}
        add_users(settings)
        r = cli(settings, "user", "add", "keyholder", "--role", "manager", "--keysafe-access", "--password-stdin",
                stdin="correct horse battery\n")
        assert r.returncode == 0 and "key-safe access" in r.stdout, r.stderr
        with unit_of_work(factory) as s:
            if ids["alert"] is None:
                ids["alert"] = s.scalar(select(Alert.id).where(Alert.kind == "no_departure"))
        try:
            with running_server(settings, tmp) as base:
                yield {"settings": settings, "factory": factory, "base": base, "ids": ids}
        finally:
            factory.kw["bind"].dispose()


def logged_in(site: dict[str, Any], user: str) -> tuple[Client, str]:
    c = Client(site["base"])
    assert c.login(user).status == 303
    return c, c.csrf()


def test_no_departure_alert_page_shows_who_lives_there_whom_to_ring_and_the_worker(site):
    c, _ = logged_in(site, "coordinator")
    page = c.get(f"/alerts/{site['ids']['alert']}")
    assert page.status == 200
    t = page.text
    for text in ("Cara White", "3 Ash Close, London", "SE6 3CC", "Side gate; dog in the kitchen",
                 "KS-17 by the back door", "Paula White", "daughter", "paula@example.org", "Mr Singh", "neighbour",
                 "Priya Patel"):
        assert text in t, text
    # Phones in UK national format, each a tel: link to the E.164 number.
    assert '<a class="tel" href="tel:+442086989933">020 8698 9933</a>' in t  # the home's landline
    assert '<a class="tel" href="tel:+447911123101">07911 123101</a>' in t  # next of kin
    assert '<a class="tel" href="tel:+447911123003">07911 123003</a>' in t  # the worker's mobile
    # Where the worker was last logged: the arrival at this visit (R003), local time.
    last = re.search(r'class="worker-last">([^<]+)<', t).group(1)
    assert last.startswith("arrival at R003 (SE6 3CC) at ")
    # A coordinator without key-safe access sees that a code is held, but no reveal button.
    assert "reveal-submit" not in t and "code held" in t


def test_visit_page_shows_the_same_people_state_and_links_to_its_alerts(site):
    c, _ = logged_in(site, "coordinator")
    t = c.get(f"/visits/{site['ids']['nodep']}").text
    assert "Cara White" in t and "07911 123003" in t and "Paula White" in t
    assert 'data-state="no departure"' in t  # the board's word, not "scheduled"
    assert f'href="/alerts/{site["ids"]["alert"]}">no departure</a>' in t


def test_key_safe_code_is_sealed_revealed_only_with_access_and_every_reveal_audited(site):
    rid, factory = site["ids"]["R003"], site["factory"]
    coord, ctoken = logged_in(site, "coordinator")
    # Setting needs key-safe access too.
    r = coord.post(f"/residents/{rid}/keysafe", {"csrf_token": ctoken, "code": "4821"})
    assert r.status == 403
    keeper, ktoken = logged_in(site, "keyholder")
    r = keeper.post(f"/residents/{rid}/keysafe", {"csrf_token": ktoken, "code": "4821"})
    assert r.status == 303, r.text
    with unit_of_work(factory) as s:
        row = s.get(KeySafeCode, rid)
        assert row is not None and "4821" not in row.sealed_code and row.set_by == "keyholder"
        # Bound to its row: the same sealed value does not open as another resident's code.
        sealer = Sealer(load_or_create_key(site["settings"].secret_path))
        assert sealer.open(row.sealed_code, context=keysafe.context(rid)) == "4821"
        with pytest.raises(ValueError):
            sealer.open(row.sealed_code, context=keysafe.context(rid + 1))
        assert "4821" not in json.dumps([e.after + e.before for e in s.scalars(select(AuditEntry))])
    # The coordinator's reveal: 403 and the code is nowhere in the answer; no reveal audited.
    r = coord.post(f"/residents/{rid}/keysafe/reveal", {"csrf_token": ctoken, "back": "/alerts/1"})
    assert r.status == 403 and "4821" not in r.text
    # The resident page does not show it either, to anybody, until revealed.
    assert "4821" not in keeper.get(f"/residents/{rid}").text
    r = keeper.post(f"/residents/{rid}/keysafe/reveal",
                    {"csrf_token": ktoken, "back": f"/alerts/{site['ids']['alert']}"})
    assert r.status == 200 and re.search(r'id="keysafe-code">4821<', r.text)
    assert "no-store" in (r.header("Cache-Control") or "")
    assert f'href="/alerts/{site["ids"]["alert"]}"' in r.text  # back where they came from
    with unit_of_work(factory) as s:
        reveals = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "keysafe_reveal")))
        assert [(e.actor, e.entity, e.entity_id) for e in reveals] == [("keyholder", "resident", "R003")]
    # A GET cannot reveal, and an outside "back" address is not followed.
    assert keeper.get(f"/residents/{rid}/keysafe/reveal").status in (404, 405)
    r = keeper.post(f"/residents/{rid}/keysafe/reveal", {"csrf_token": ktoken, "back": "//evil.example/x"})
    assert 'href="//evil.example' not in r.text
    # A manager grants the coordinator key-safe access on the users page: now the reveal works.
    with unit_of_work(factory) as s:
        cid = s.scalar(select(User.id).where(User.username == "coordinator"))
    mgr, mtoken = logged_in(site, "manager")
    r = mgr.post(f"/users/{cid}", {"csrf_token": mtoken, "role": "coordinator", "active": "on",
                                   "keysafe_access": "on"})
    assert r.status == 303
    r = coord.post(f"/residents/{rid}/keysafe/reveal", {"csrf_token": ctoken})
    assert r.status == 200 and "4821" in r.text
    r = mgr.post(f"/users/{cid}", {"csrf_token": mtoken, "role": "coordinator", "active": "on"})
    assert coord.post(f"/residents/{rid}/keysafe/reveal", {"csrf_token": ctoken}).status == 403


def test_resident_page_edits_contacts_in_order_and_refuses_bad_input_changing_nothing(site):
    rid, factory = site["ids"]["R003"], site["factory"]
    c, token = logged_in(site, "coordinator")
    page = c.get(f"/residents/{rid}").text
    assert "Paula White" in page and 'value="07911 123101"' in page  # shown as typed in the UK

    def contacts() -> list[tuple[int, str, str | None]]:
        with unit_of_work(factory) as s:
            return [(x.position, x.name, x.phone_e164) for x in s.scalars(
                select(ResidentContact).where(ResidentContact.resident_id == rid).order_by(ResidentContact.position))]

    before = contacts()
    r = c.post(f"/residents/{rid}/contacts", {"csrf_token": token, "name": "Nurse Jo", "relation": "other",
                                              "phone": "not a phone", "email": "jo@"})
    assert r.status == 400 and "contact phone" in r.text and "contact email" in r.text
    assert contacts() == before
    r = c.post(f"/residents/{rid}/contacts", {"csrf_token": token, "name": "Nurse Jo", "relation": "other",
                                              "relation_note": "district nurse", "phone": "+44 (0)20 8698 1200"})
    assert r.status == 303
    assert contacts()[-1] == (3, "Nurse Jo", "+442086981200")
    with unit_of_work(factory) as s:
        jo = s.scalar(select(ResidentContact.id).where(ResidentContact.name == "Nurse Jo"))
        singh = s.scalar(select(ResidentContact.id).where(ResidentContact.name == "Mr Singh"))
    assert c.post(f"/residents/{rid}/contacts/{jo}", {"csrf_token": token, "action": "up"}).status == 303
    assert [n for _, n, _ in contacts()] == ["Paula White", "Nurse Jo", "Mr Singh"]
    assert c.post(f"/residents/{rid}/contacts/{singh}", {"csrf_token": token, "action": "remove"}).status == 303
    assert [(p, n) for p, n, _ in contacts()] == [(1, "Paula White"), (2, "Nurse Jo")]
    r = c.post(f"/residents/{rid}/contacts/{jo}", {"csrf_token": token, "action": "save", "name": "Jo Nurse",
                                                   "relation": "other", "phone": "020 8698 1201"})
    assert r.status == 303 and contacts()[1] == (2, "Jo Nurse", "+442086981201")
    # Finance reads but does not edit.
    f, ftoken = logged_in(site, "finance")
    assert f.post(f"/residents/{rid}/contacts", {"csrf_token": ftoken, "name": "X"}).status == 403
    with unit_of_work(factory) as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).where(AuditEntry.entity_id == "R003")
                                               .order_by(AuditEntry.id))]
    assert {"contact_add", "contact_up", "contact_remove", "contact_edit"} <= set(actions)


def test_access_notes_and_key_safe_reference_are_editable_and_workers_list_shows_mobiles(site):
    c, token = logged_in(site, "coordinator")
    with unit_of_work(site["factory"]) as s:
        r1 = s.scalar(select(Resident).where(Resident.reference == "R001"))
        rid = r1.id
    r = c.post(f"/residents/{rid}", {"csrf_token": token, "name": "Alice Brown", "address": "1 Elm Road, London",
                                     "postcode": "SE6 1AA", "lines": "020 8698 9911", "phone_code": "101",
                                     "access_notes": "Ring twice", "keysafe_reference": "KS-1 left of door",
                                     "active": "on"})
    assert r.status == 303, r.text
    with unit_of_work(site["factory"]) as s:
        r1 = s.get(Resident, rid)
        assert (r1.access_notes, r1.keysafe_reference) == ("Ring twice", "KS-1 left of door")
    listing = c.get("/workers").text
    assert "07911 123001" in listing and "Wendy Walker" in listing


def test_the_json_api_carries_no_name_address_or_phone(site):
    r = cli(site["settings"], "user", "token", "manager")
    assert r.returncode == 0
    api = Client(site["base"])
    api.bearer = r.stdout.strip()
    today = dt.datetime.now(site["settings"].tz).date().isoformat()
    bodies = [api.get(p).text for p in ("/api/v1/alerts", f"/api/v1/visits?day={today}",
                                        f"/api/v1/attendances?day={today}")]
    assert all(b.startswith("{") for b in bodies), bodies
    assert '"no_departure"' in bodies[0] and "R003" in bodies[0]
    with unit_of_work(site["factory"]) as s:
        personal = [x for r in s.scalars(select(Resident)) for x in (r.name, r.address, r.postcode)]
        personal += [x for w in s.scalars(select(Worker)) for x in (w.name,)]
        personal += [x for ct in s.scalars(select(ResidentContact)) for x in (ct.name, ct.email)]
        phones = [ln for r in s.scalars(select(Resident)) for ln in (x.e164 for x in r.lines)]
        phones += [w.mobile_e164 for w in s.scalars(select(Worker)) if w.mobile_e164]
    for body in bodies:
        for text in [p for p in personal if p] + phones + [p[3:] for p in phones]:
            assert text not in body, text
