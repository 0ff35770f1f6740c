"""Data rights in the office web, against a real server on each engine: every view and
reveal is logged; NI numbers are validated, sealed, and shown only to manager/finance
through a logged reveal; the restriction flag is editable and audited; managers export
and erase from the web."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from carecall.config import load_settings
from ivr.db import unit_of_work
from ivr.models import AuditEntry, Resident, Visit, Worker
from ivr.sensitive import WorkerNINumber, open_ni, site_sealer
from privacy.models import PersonalDataView
from scheduler.store import raise_alert
from tests.conftest import fresh_database
from tests.helpers import VISITS_HEADER, factory_for, import_world, on_today, visit_row
from tests.webclient import Client, add_users, cli, running_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("privacy-web")
    with fresh_database(request, request.param, tmp) as url:
        settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "carecall.key"),
                                 data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        rows = [visit_row("V-1", "R001", on_today(now, -5, settings), 45, "1001", settings=settings),
                visit_row("V-3", "R003", on_today(now, -10, settings), 30, "1003", settings=settings)]
        import_world(settings, factory, "\n".join([VISITS_HEADER, *rows]) + "\n")
        with unit_of_work(factory) as s:
            v = s.scalar(select(Visit).where(Visit.visit_ref == "V-1"))
            w1 = s.scalar(select(Worker.id).where(Worker.worker_number == "1001"))
            alert = raise_alert(s, kind="no_reply", visit_id=v.id, worker_id=w1, resident_id=v.resident_id, at=now)
            ids = {"alert": alert, "visit": v.id}
            ids.update({f"w{w.worker_number}": w.id for w in s.scalars(select(Worker))})
            ids.update({r.reference: r.id for r in s.scalars(select(Resident))})
        add_users(settings)
        try:
            config = "[web]\nlogin_ip_free_attempts = 1000\n[alerts]\nenabled = false\n[retention]\nenabled = false\n"
            with running_server(settings, tmp, config) as base:
                yield {"settings": settings, "base": base, "factory": factory, "ids": ids, "tmp": tmp}
        finally:
            factory.kw["bind"].dispose()


def client(site, role: str) -> Client:
    c = Client(site["base"])
    assert c.login(role).status == 303
    return c


def views(site, **subject) -> list[tuple[str, str, str, str]]:
    (column, value), = subject.items()
    with site["factory"]() as s:
        rows = s.scalars(select(PersonalDataView).where(getattr(PersonalDataView, column) == value)
                         .order_by(PersonalDataView.id)).all()
        return [(v.actor, v.role, v.channel, v.what) for v in rows]


WORKER_FORM = {"name": "Tom Taylor", "mobile_e164": "", "team": "", "pin": "", "active": "on"}


def test_every_page_view_of_personal_details_is_logged(site):
    ids = site["ids"]
    c = client(site, "coordinator")
    assert c.get(f"/residents/{ids['R003']}").status == 200
    assert ("coordinator", "coordinator", "web", "resident page") in views(site, resident_id=ids["R003"])
    assert c.get(f"/workers/{ids['w1003']}").status == 200
    assert ("coordinator", "coordinator", "web", "worker page") in views(site, worker_id=ids["w1003"])
    assert c.get(f"/visits/{ids['visit']}").status == 200
    assert ("coordinator", "coordinator", "web", "visit page") in views(site, resident_id=ids["R001"])
    assert ("coordinator", "coordinator", "web", "visit page") in views(site, worker_id=ids["w1001"])
    assert c.get(f"/alerts/{ids['alert']}").status == 200
    assert ("coordinator", "coordinator", "web", "alert page") in views(site, resident_id=ids["R001"])
    assert c.get("/residents/new").status == 200  # a blank form shows nobody


def test_api_reads_are_logged_once_an_hour_per_person(site):
    token = cli(site["settings"], "user", "token", "finance").stdout.strip()
    api = Client(site["base"])
    api.bearer = token
    for _ in range(2):
        r = api.get("/api/v1/visits")
        assert r.status == 200 and {v["resident_reference"] for v in json.loads(r.text)["visits"]} >= {"R001", "R003"}
    assert views(site, resident_id=site["ids"]["R003"]).count(("finance", "finance", "api", "api visits")) == 1
    assert views(site, worker_id=site["ids"]["w1003"]).count(("finance", "finance", "api", "api visits")) == 1


def test_ni_number_is_validated_sealed_and_never_shown_on_the_page(site):
    ids, factory = site["ids"], site["factory"]
    c = client(site, "manager")
    token = c.csrf(f"/workers/{ids['w1004']}")
    r = c.post(f"/workers/{ids['w1004']}", {**WORKER_FORM, "ni_number": "ZZ 12 34 56 A", "csrf_token": token})
    assert r.status == 400 and "is not a National Insurance number" in r.text
    with factory() as s:
        assert s.get(WorkerNINumber, ids["w1004"]) is None
    r = c.post(f"/workers/{ids['w1004']}", {**WORKER_FORM, "ni_number": "jk 12 34 56 d", "csrf_token": token})
    assert r.status == 303, r.text
    with factory() as s:
        row = s.get(WorkerNINumber, ids["w1004"])
        assert row.sealed.startswith("s1:") and "JK123456D" not in row.sealed
        assert open_ni(s, site_sealer(site["settings"].secret_path), ids["w1004"]) == "JK123456D"
        audit = s.scalars(select(AuditEntry).where(AuditEntry.entity == "worker",
                                                   AuditEntry.entity_id == "1004")).all()[-1]
        assert json.loads(audit.after)["ni_number"] == "changed" and "JK123456D" not in audit.before + audit.after
    page = c.get(f"/workers/{ids['w1004']}")
    assert "JK123456D" not in page.text and "JK 12 34 56 D" not in page.text
    assert 'placeholder="held (sealed)"' in page.text and 'id="ni-reveal"' in page.text
    # Saving the form again with the field empty keeps the number.
    r = c.post(f"/workers/{ids['w1004']}", {**WORKER_FORM, "ni_number": "", "csrf_token": token})
    assert r.status == 303
    with factory() as s:
        assert open_ni(s, site_sealer(site["settings"].secret_path), ids["w1004"]) == "JK123456D"


def test_ni_reveal_is_for_manager_and_finance_only_and_each_is_logged(site):
    ids = site["ids"]
    m = client(site, "manager")
    token = m.csrf(f"/workers/{ids['w1002']}")
    assert m.post(f"/workers/{ids['w1002']}", {**WORKER_FORM, "name": "Sam Smith", "ni_number": "AB123456C",
                                               "csrf_token": token}).status == 303
    before = views(site, worker_id=ids["w1002"]).count(("finance", "finance", "web", "NI number revealed"))
    f = client(site, "finance")
    page = f.get(f"/workers/{ids['w1002']}")
    assert 'id="ni-reveal"' in page.text and "AB123456C" not in page.text
    r = f.post(f"/workers/{ids['w1002']}/ni", {"csrf_token": f.csrf(f"/workers/{ids['w1002']}")})
    assert r.status == 200 and "AB 12 34 56 C" in r.text
    assert views(site, worker_id=ids["w1002"]).count(("finance", "finance", "web", "NI number revealed")) == before + 1
    c = client(site, "coordinator")
    page = c.get(f"/workers/{ids['w1002']}")
    assert 'id="ni-reveal"' not in page.text
    r = c.post(f"/workers/{ids['w1002']}/ni", {"csrf_token": c.csrf(f"/workers/{ids['w1002']}")})
    assert r.status == 403 and "AB 12 34 56 C" not in r.text
    assert not [v for v in views(site, worker_id=ids["w1002"]) if v[0] == "coordinator" and "NI" in v[3]]


def test_workers_csv_takes_ni_numbers_checked_by_format(site):
    c = client(site, "manager")
    token = c.csrf("/import")
    bad = b"worker_number,name,pin,mobile,ni_number\n1005,New Person,1111,,QQ12345C\n"
    r = c.upload("/import", {"csrf_token": token, "kind": "workers"}, "file", "w.csv", bad)
    assert r.status == 400 and "line 2" in r.text and "ni_number is not a National Insurance number" in r.text
    assert "QQ12345C" not in r.text
    with site["factory"]() as s:
        assert s.scalar(select(Worker).where(Worker.worker_number == "1005")) is None
    good = b"worker_number,name,pin,mobile,ni_number\n1005,New Person,1111,,ce 65 43 21 b\n"
    r = c.upload("/import", {"csrf_token": token, "kind": "workers"}, "file", "w.csv", good)
    assert r.status == 200, r.text
    with site["factory"]() as s:
        w = s.scalar(select(Worker).where(Worker.worker_number == "1005"))
        assert open_ni(s, site_sealer(site["settings"].secret_path), w.id) == "CE654321B"


def test_restriction_flag_is_edited_on_the_resident_page_and_audited(site):
    ids = site["ids"]
    c = client(site, "coordinator")
    token = c.csrf(f"/residents/{ids['R002']}")
    form = {"name": "Bob Green", "address": "2 Oak Lane, London", "postcode": "SE6 2BB", "funder": "Lewisham",
            "team": "", "phone_code": "102", "lines": "+442086989922; +441134960123", "active": "on",
            "processing_restricted": "on", "csrf_token": token}
    assert c.post(f"/residents/{ids['R002']}", form).status == 303
    with site["factory"]() as s:
        assert s.get(Resident, ids["R002"]).processing_restricted is True
        audit = s.scalars(select(AuditEntry).where(AuditEntry.entity == "resident",
                                                   AuditEntry.entity_id == "R002")).all()[-1]
        assert (json.loads(audit.before)["processing_restricted"], json.loads(audit.after)["processing_restricted"]) \
            == (False, True)
    assert 'name="processing_restricted" checked' in c.get(f"/residents/{ids['R002']}").text
    assert 'name="processing_restricted" checked' not in c.get("/residents/new").text


def test_managers_see_views_export_and_erase_from_the_web(site):
    ids = site["ids"]
    for role in ("coordinator", "finance"):
        assert client(site, role).get(f"/privacy/residents/{ids['R004']}").status == 403
    client(site, "coordinator").get(f"/residents/{ids['R004']}")
    m = client(site, "manager")
    assert 'id="privacy-link"' in m.get(f"/residents/{ids['R004']}").text
    page = m.get(f"/privacy/residents/{ids['R004']}")
    assert page.status == 200 and "Dan Black" in page.text
    assert re.search(r"<td>coordinator</td><td>coordinator</td><td>web</td><td>resident page</td>", page.text)
    r = m.get(f"/privacy/residents/{ids['R004']}/export.json")
    assert r.status == 200 and r.header("Content-Disposition").startswith("attachment")
    data = json.loads(r.text)
    assert data["tables"]["residents"]["rows"][0]["name"] == "Dan Black"
    assert "Alice Brown" not in r.text
    pdf = m.get(f"/privacy/residents/{ids['R004']}/export.pdf")
    assert pdf.status == 200 and pdf.body.startswith(b"%PDF")
    assert views(site, resident_id=ids["R004"]).count(("manager", "manager", "web", "subject-access export")) == 2
    token = m.csrf(f"/privacy/residents/{ids['R004']}")
    r = m.post(f"/privacy/residents/{ids['R004']}/erase", {"confirm": "R001", "csrf_token": token})
    assert r.status == 400 and "nothing was changed" in r.text
    with site["factory"]() as s:
        assert s.get(Resident, ids["R004"]).name == "Dan Black"
    r = m.post(f"/privacy/residents/{ids['R004']}/erase", {"confirm": "R004", "csrf_token": token})
    assert r.status == 303 and r.header("Location") == f"/privacy/residents/{ids['R004']}?done=erased"
    with site["factory"]() as s:
        r4 = s.get(Resident, ids["R004"])
        assert (r4.name, r4.reference, r4.address) == ("erased-resident-4", "erased-resident-4", "")
        assert s.scalar(select(AuditEntry.actor).where(AuditEntry.action == "erase",
                                                       AuditEntry.entity_id == "erased-resident-4")) == "manager"


def test_the_server_log_holds_no_names_addresses_phone_or_ni_numbers(site):
    """Runs last in this module: every request above (views, reveals, imports, erasure) is in the log."""
    client(site, "manager").get(f"/residents/{site['ids']['R001']}")
    logs = "".join(p.read_text() for p in site["tmp"].glob("server-*.log"))
    assert '"GET /residents/' in logs  # the access log is there to search
    for value in ("Alice Brown", "Cara White", "Bob Green", "1 Elm Road", "SE6 1AA", "+442086989911",
                  "Wendy Walker", "+447911123001", "AB123456C", "JK123456D", "CE654321B", "JK 12 34 56 D"):
        assert value not in logs, value
