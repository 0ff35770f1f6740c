"""The Funders page and crediting an invoice on the web: finance and managers only, bad input changes nothing."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from billing import invoices
from billing.accounts import CreditNote, Funder
from carecall.config import load_settings
from tests.billing_world import World, utc
from tests.conftest import fresh_database
from tests.helpers import factory_for, import_world
from tests.webclient import Client, add_users, running_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("funders")
    with fresh_database(request, request.param, tmp) as url:
        settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "carecall.key"),
                                 data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        import_world(settings, factory)
        w = World(factory)
        w.attend(w.visit("R001", utc(2026, 1, 6, 9), 45), "1001", utc(2026, 1, 6, 9), utc(2026, 1, 6, 9, 45))
        assert invoices.issue(factory, settings, dt.date(2026, 1, 5)).invoices[0].number == "INV-000001"
        add_users(settings)
        try:
            with running_server(settings, tmp, "[alerts]\nenabled = false\n") as base:
                yield {"settings": settings, "base": base, "factory": factory, "tmp": tmp}
        finally:
            factory.kw["bind"].dispose()


def count(site, model) -> int:
    with site["factory"]() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_finance_adds_a_funder_and_a_bad_one_changes_nothing(site):
    c = Client(site["base"])
    assert c.login("finance").status == 303
    page = c.get("/funders")
    assert page.status == 200 and "No funders yet" in page.text
    assert "Invoices will lack: legal_name" in page.text  # [provider] not configured here
    token = c.csrf("/funders")
    bad = c.post("/funders", {"csrf_token": token, "name": "Camden", "email": "nope", "payment_days": "28"})
    assert bad.status == 400 and "email must be an e-mail address" in bad.text
    assert count(site, Funder) == 0
    ok = c.post("/funders", {"csrf_token": token, "name": "Camden", "invoice_address": "Town Hall\r\nLondon WC1H 9JE",
                             "email": "ap@camden.example", "po_required": "yes", "payment_days": "30",
                             "brokerage_email": ""})
    assert (ok.status, ok.header("Location")) == (303, "/funders?done=saved")
    listed = c.get("/funders?done=saved")
    assert "Town Hall, London WC1H 9JE" in listed.text and "30 days" in listed.text
    with site["factory"]() as s:
        f = s.scalar(select(Funder))
        assert (f.name, f.invoice_address, f.po_required, f.private) == ("Camden", "Town Hall\nLondon WC1H 9JE",
                                                                          True, False)
    coordinator = Client(site["base"])
    coordinator.login("coordinator")
    assert coordinator.get("/funders").status == 403


def test_finance_credits_an_invoice_with_a_reason_and_downloads_the_credit_note(site):
    c = Client(site["base"])
    c.login("finance")
    form = c.get("/invoices/1/credit")
    assert form.status == 200 and "Credit invoice INV-000001" in form.text
    token = c.csrf("/invoices/1/credit")
    r = c.post("/invoices/1/credit", {"csrf_token": token, "reason": "Duplicate"})  # not confirmed
    assert r.status == 400 and "tick the box" in r.text and count(site, CreditNote) == 0
    r = c.post("/invoices/1/credit", {"csrf_token": token, "reason": "Duplicate", "confirm": "yes"})
    assert (r.status, r.header("Location")) == (303, "/invoices/1/credit")
    page = c.get("/invoices/1/credit")
    assert "Credited by CN-000001" in page.text
    pdf = c.get("/invoices/1/credit?format=pdf")
    assert pdf.status == 200 and pdf.header("Content-Type") == "application/pdf"
    path = site["tmp"] / "cn.pdf"
    path.write_bytes(pdf.body)
    text = " ".join(subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "Credit note number CN-000001" in text and "Credits invoice INV-000001" in text and "−£16.13" in text
    again = c.post("/invoices/1/credit", {"csrf_token": token, "reason": "again", "confirm": "yes"})
    assert again.status == 400 and count(site, CreditNote) == 1
    assert c.get("/invoices/99/credit").status == 404
