"""Subject access: an export holds every record planted about its person and nothing
about anyone else, as JSON and as a PDF; the export itself is logged."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from sqlalchemy import select

from ivr.sensitive import site_sealer
from privacy.export import export_person, render_pdf, write_files
from privacy.models import PersonalDataView
from tests.privacy_world import NI, plant

OTHER_RESIDENT = ("Alice Brown", "1 Elm Road", "+442086989911", "Adam Brown", "adam.brown@example.org",
                  "+447700900111", "V-R001", "KS-R001")
OTHER_WORKER = ("Wendy Walker", NI["1001"], "+447911123001")


@pytest.fixture
def world(settings):
    return plant(settings)


def _ids(export, table):
    return {r["id"] for r in export.as_json()["tables"][table]["rows"]}


def _word(text, needle):
    return re.search(r"(?<![0-9A-Za-z])" + re.escape(needle) + r"(?![0-9A-Za-z])", text) is not None


def test_resident_export_has_every_planted_record_and_nothing_about_another(world, settings):
    x = export_person(world.factory, "resident", "R003", actor="manager", sealer=site_sealer(settings.secret_path))
    for table, ids in world.ids["R003"].items():
        assert ids <= _ids(x, table), table
        assert not (world.ids["R001"].get(table, set()) & _ids(x, table)), table
    text = x.json_bytes().decode()
    for needle in ("Cara White", "3 Ash Close, London", "SE6 3CC", "+442086989933", "Colin White",
                   "colin.white@example.org", "KS-R003", "Key safe by the back door"):
        assert needle in text
    for needle in (*OTHER_RESIDENT, *OTHER_WORKER):
        assert needle not in text, needle
    assert not _word(text, "R001")
    # The view log planted for R003 is in it, and so is this export's own entry.
    views = x.as_json()["tables"]["privacy_views"]["rows"]
    assert {v["what"] for v in views} == {"resident page", "subject-access export"}
    assert x.as_json()["tables"]["residents"]["rows"][0]["name"] == "Cara White"


def test_worker_export_opens_their_ni_number_only_and_never_exports_the_pin_hash(world, settings):
    x = export_person(world.factory, "worker", "1003", actor="manager", sealer=site_sealer(settings.secret_path))
    for table, ids in world.ids["1003"].items():
        assert ids <= _ids(x, table), table
        assert not (world.ids["1001"].get(table, set()) & _ids(x, table)), table
    data = x.as_json()["tables"]
    assert data["worker_ni_numbers"]["rows"][0]["ni_number"] == NI["1003"]
    assert data["worker_ni_numbers"]["rows"][0]["sealed"].startswith("(held")
    assert data["workers"]["rows"][0]["pin_hash"].startswith("(held")
    text = x.json_bytes().decode()
    assert "Priya Patel" in text
    for needle in OTHER_WORKER:
        assert needle not in text, needle


def test_the_export_is_logged_in_the_view_log(world, settings):
    export_person(world.factory, "resident", "R003", actor="manager", role="manager")
    with world.factory() as s:
        views = s.scalars(select(PersonalDataView).where(PersonalDataView.resident_id == world.resident_id["R003"],
                                                         PersonalDataView.what == "subject-access export")).all()
        assert [(v.actor, v.role, v.channel) for v in views] == [("manager", "manager", "cli")]


def test_pdf_is_readable_and_holds_the_same_person(world, settings, tmp_path):
    x = export_person(world.factory, "resident", "R003", actor="manager")
    json_path, pdf_path = write_files(x, tmp_path, settings.tz)
    assert json.loads(json_path.read_text())["subject"] == {"kind": "resident", "reference": "R003"}
    text = subprocess.run(["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "Personal data held about resident R003" in text
    assert "Cara White" in text and "Colin White" in text
    assert "Alice Brown" not in text
    assert "Call records" in text and "Who looked at these details" in text
    assert render_pdf(x, settings.tz).startswith(b"%PDF")
