"""Timesheets: every planned visit, planned against actual, flags, total, signature block."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
import sys

import pytest

from billing import timesheets
from billing.render import render_pdf
from billing.rules import BillingConfig
from tests.billing_world import World, utc
from tests.helpers import factory_for, import_world

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P0 = dt.date(2026, 1, 5)


@pytest.fixture
def world(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    w = World(factory)
    # V1 planned 09:00–10:00; arrived 09:20 (late > 15 min), left 09:50: 30 min, short (< 60 − 10).
    v1 = w.visit("R001", utc(2026, 1, 6, 9), 60, ref="V1")
    w.attend(v1, "1001", utc(2026, 1, 6, 9, 20), utc(2026, 1, 6, 9, 50))
    # V2 planned, nobody came: missed.
    w.visit("R001", utc(2026, 1, 7, 9), 30, ref="V2")
    # V3 double-up: 1001 came (manual, so location not verified) 45 min; 1002 did not: missed row.
    v3 = w.visit("R001", utc(2026, 1, 8, 9), 45, workers=("1001", "1002"), ref="V3")
    w.attend(v3, "1001", utc(2026, 1, 8, 9), utc(2026, 1, 8, 9, 45), method="manual",
             entered=utc(2026, 1, 8, 12))
    # Another resident's visit is not on R001's sheet.
    w.visit("R002", utc(2026, 1, 6, 9), 30, workers=("1002",), ref="V-OTHER")
    return w


def test_timesheet_lists_every_planned_visit_with_flags_and_total(world, settings):
    sheet = timesheets.build(world.factory, settings, "R001", P0)
    got = [(r.visit_ref, r.worker_number, r.method, r.minutes, r.flags) for r in sheet.rows]
    assert got == [
        ("V1", "1001", "phone", 30, ("late", "short")),
        ("V2", "1001", "", 0, ("missed",)),
        ("V3", "1001", "manual", 45, ("location not verified",)),
        ("V3", "1002", "", 0, ("missed",)),
    ]
    assert sheet.total_minutes == 75  # 30 + 45
    assert sheet.visits == 3


def test_timesheet_csv_from_cli_has_local_planned_and_actual_times(world, settings):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "carecall", "--db", settings.db_url, "timesheet", "--resident",
                           "R001", "--period", "2026-01-05", "--format", "csv"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert rows[0] == {"visit_ref": "V1", "planned_start": "2026-01-06 09:00", "planned_end": "2026-01-06 10:00",
                       "worker_number": "1001", "arrival": "2026-01-06 09:20", "departure": "2026-01-06 09:50",
                       "method": "phone", "minutes": "30", "flags": "late; short"}


def test_timesheet_for_unknown_resident_is_refused(world, settings):
    with pytest.raises(timesheets.TimesheetError, match="no resident 'R999'"):
        timesheets.build(world.factory, settings, "R999", P0)


def test_timesheet_pdf_text_has_visits_total_and_signature_block(world, settings, tmp_path):
    sheet = timesheets.build(world.factory, settings, "R001", P0)
    path = tmp_path / "ts.pdf"
    path.write_bytes(render_pdf(sheet, BillingConfig.from_settings(settings), "timesheet.html"))
    text = " ".join(subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "Timesheet" in text and "Alice Brown (R001)" in text
    assert "V1 2026-01-06 09:00–10:00 1001 09:20 09:50 phone 30 late, short" in text
    assert "missed" in text and "location not verified" in text
    assert "Total minutes 75" in text
    assert "Signed (resident or representative)" in text
