"""Invoice HTML and PDF: the rendered text finance sends, checked with pdftotext."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from billing import invoices
from billing.render import render_html, render_pdf
from billing.rules import BillingConfig
from tests.billing_world import World, utc
from tests.helpers import factory_for, import_world

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P2 = dt.date(2026, 3, 2)


def pdf_text(data: bytes, tmp_path) -> str:
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())  # collapse layout whitespace


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    w = World(factory)
    # R004 (3 h/week from 2 Mar, cap 720): 300 + 300 + 300 min → billed 300, 300, 120; 180 min over.
    # Total 720 × 21.50 / 60 = 258.00; a fourth visit has no departure (exception).
    for day in (3, 4, 5):
        v = w.visit("R004", utc(2026, 3, day, 9), 300)
        w.attend(v, "1001", utc(2026, 3, day, 9), utc(2026, 3, day, 14))
    v = w.visit("R004", utc(2026, 3, 9, 9), 30, ref="V-OPEN")
    w.attend(v, "1001", utc(2026, 3, 9, 9), None)
    return w


def test_pdf_invoice_text_shows_totals_rates_frequency_exceptions_and_over_cap(world, settings, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "carecall", "--db", settings.db_url, "invoice", "--period",
                           "2026-03-02", "--format", "pdf", "--out", str(out), "--issue", "--yes"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = pdf_text((out / "INV-000001.pdf").read_bytes(), tmp_path)
    assert "Invoice INV-000001" in text and "PO-1004" in text and "Lewisham" in text
    assert "Invoice date 30 Mar 2026" in text and "Due date 27 Apr 2026 (28 days)" in text
    assert "Commissioned hours 12:00 for the period" in text  # 720 min
    assert "Frequency of service 3 visits (0.8 a week)" in text  # 3 × 7 / 28 = 0.75 → 0.8
    assert "3:00 over commissioned hours, not charged" in text  # 180 min
    assert "hourly £21.50 12:00 £258.00" in text  # unit charge table
    assert "phone" in text
    assert "V-OPEN" in text and "exception: no departure recorded" in text
    assert "Total due £258.00" in text


def test_html_is_autoescaped(world, settings):
    world.resident("R<9>")
    world.package("R<9>", "PO-<script>", "A&B Care", "1", dt.date(2026, 3, 2))
    v = world.visit("R<9>", utc(2026, 3, 3, 9), 30)
    world.attend(v, "1001", utc(2026, 3, 3, 9), utc(2026, 3, 3, 9, 30))
    [doc] = invoices.preview(world.factory, settings, P2, "A&B Care")
    html = render_html(doc, BillingConfig.from_settings(settings))
    assert "PO-&lt;script&gt;" in html and "A&amp;B Care" in html and "<script>" not in html
    assert "DRAFT — not issued, not for payment" in html


def test_pdf_of_reissued_invoice_is_the_same_document(world, settings, tmp_path):
    config = BillingConfig.from_settings(settings)
    [first] = invoices.issue(world.factory, settings, P2).invoices
    text1 = pdf_text(render_pdf(first, config), tmp_path)
    [again] = invoices.issue(world.factory, settings, P2).invoices
    assert pdf_text(render_pdf(again, config), tmp_path) == text1
