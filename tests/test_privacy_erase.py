"""Erasure: what may go is deleted, what must stay is pseudonymised; invoice totals do
not change; afterwards no text column anywhere holds the person's identity; it needs a
manager and shows its plan first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import String, Text, func, select

from billing.models import Invoice, InvoiceLine
from ivr.db import unit_of_work
from ivr.models import Attendance, AuditEntry, Resident, Worker
from ivr.schema import metadata
from ivr.sensitive import WorkerNINumber, site_sealer
from privacy.erase import erase, flush_journal, plan
from tests.privacy_world import NI, plant
from tests.webclient import PASSWORD, cli

R003_IDENTITY = ("Cara White", "3 Ash Close", "SE6 3CC", "+442086989933", "Colin White", "colin.white@example.org",
                 "+447700900333", "KS-R003", "3 Billing Street")
R001_IDENTITY = ("Alice Brown", "1 Elm Road", "SE6 1AA", "+442086989911", "Adam Brown", "adam.brown@example.org")
W1003_IDENTITY = ("Priya Patel", "+447911123003", NI["1003"])
W1001_IDENTITY = ("Wendy Walker", "+447911123001")


@pytest.fixture
def world(settings):
    return plant(settings)


def every_text(factory) -> list[tuple[str, str, str]]:
    """(table, column, value) for every non-empty text value in the database."""
    out = []
    with factory() as s:
        for table in metadata.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, String | Text)]
            for row in s.execute(select(*cols)).all() if cols else []:
                out += [(table.name, c.name, v) for c, v in zip(cols, row, strict=True) if v]
    return out


def found(values, needle: str, *, word: bool = False) -> list[tuple[str, str]]:
    pat = re.compile((r"(?<![0-9A-Za-z])" + re.escape(needle) + r"(?![0-9A-Za-z])") if word else re.escape(needle),
                     re.IGNORECASE)
    return [(t, c) for t, c, v in values if pat.search(v)]


def totals(factory):
    with factory() as s:
        lines = select(InvoiceLine.id, InvoiceLine.amount_pence, InvoiceLine.arrival_at, InvoiceLine.departure_at,
                       InvoiceLine.billable_minutes).order_by(InvoiceLine.id)
        return (s.execute(select(Invoice.number, Invoice.total_pence).order_by(Invoice.number)).all(),
                s.scalar(select(func.sum(InvoiceLine.amount_pence))), s.execute(lines).all())


def _erase(world, kind, sid):
    with unit_of_work(world.factory) as s:
        the_plan = plan(s, kind, sid, site_sealer(world.settings.secret_path))
        erase(s, the_plan, actor="boss")
    flush_journal(world.factory.kw["bind"])
    return the_plan


def sqlite_file_bytes(settings) -> bytes:
    """The SQLite file and its write-ahead log, as someone copying them would get them (b"" on PostgreSQL)."""
    if not settings.db_url.startswith("sqlite"):
        return b""
    path = Path(settings.db_url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_erasing_a_resident_keeps_invoice_totals_and_leaves_no_trace_of_them(world):
    before = totals(world.factory)
    values = every_text(world.factory)
    for needle in R003_IDENTITY:  # planted: the search below can find them
        assert found(values, needle), needle
    _erase(world, "resident", world.resident_id["R003"])
    assert totals(world.factory) == before
    values = every_text(world.factory)
    for needle in R003_IDENTITY:
        assert not found(values, needle), (needle, found(values, needle))
    assert not found(values, "R003", word=True)
    raw = sqlite_file_bytes(world.settings)  # not even in the file's free pages or its log
    for needle in R003_IDENTITY:
        assert needle.encode() not in raw, needle
    for needle in (*R001_IDENTITY, *W1003_IDENTITY[:1], *W1001_IDENTITY):  # nobody else touched
        assert found(values, needle), needle
    assert found(values, "R001", word=True)
    with world.factory() as s:
        r = s.get(Resident, world.resident_id["R003"])
        assert (r.reference, r.name, r.address, r.postcode, r.phone_code, r.active,
                r.processing_restricted) == ("erased-resident-3", "erased-resident-3", "", "", None, False, True)
        assert r.lines == [] and r.contacts == []
        # The care record stays: attendances (evidence behind the invoice) are kept, linked to the pseudonym.
        assert s.scalar(select(func.count()).select_from(Attendance).where(Attendance.resident_id == r.id)) == 1
        [inv] = s.scalars(select(Invoice).where(Invoice.resident_id == r.id)).all()
        assert "R003" not in inv.group_key + inv.purchase_order
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "erase")).one()
        assert (entry.actor, entry.entity, entry.entity_id) == ("boss", "resident", "erased-resident-3")


def test_erasing_a_worker_deletes_their_ni_number_and_pseudonymises_the_rest(world):
    before = totals(world.factory)
    _erase(world, "worker", world.worker_id["1003"])
    assert totals(world.factory) == before
    values = every_text(world.factory)
    for needle in W1003_IDENTITY:
        assert not found(values, needle), (needle, found(values, needle))
    assert not found(values, "1003", word=True)
    for needle in (*W1001_IDENTITY, "Cara White"):
        assert found(values, needle), needle
    with world.factory() as s:
        w = s.get(Worker, world.worker_id["1003"])
        assert (w.worker_number, w.name, w.mobile_e164, w.pin_hash, w.active) == (
            "X0000003", "Erased worker X0000003", None, "", False)
        assert s.get(WorkerNINumber, w.id) is None
        assert s.get(WorkerNINumber, world.worker_id["1001"]) is not None


def test_plan_says_what_will_happen_before_anything_changes(world):
    with unit_of_work(world.factory) as s:
        the_plan = plan(s, "resident", world.resident_id["R003"])
    lines = the_plan.lines()
    assert any(line.startswith("delete") and "(resident_contacts)" in line for line in lines)
    assert any(line.startswith("pseudonymise") and "(billing_invoice_lines)" in line for line in lines)
    assert found(every_text(world.factory), "Cara White")


def test_cli_erase_needs_a_manager_shows_the_plan_and_is_logged(world, settings):
    for role in ("coordinator", "manager"):
        r = cli(settings, "user", "add", f"u-{role}", "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
        assert r.returncode == 0, r.stderr
    r = cli(settings, "privacy", "erase", "--resident", "R003")
    assert r.returncode == 1 and "--as USER is required" in r.stderr
    r = cli(settings, "privacy", "erase", "--resident", "R003", "--as", "u-coordinator", "--yes")
    assert r.returncode == 1 and "not an active manager" in r.stderr
    r = cli(settings, "privacy", "erase", "--resident", "R003", "--as", "u-manager", "--dry-run")
    assert r.returncode == 0 and "Contacts (resident_contacts)" in r.stdout and "nothing changed" in r.stdout
    r = cli(settings, "privacy", "erase", "--resident", "R003", "--as", "u-manager", stdin="R999\n")
    assert r.returncode == 1 and "nothing changed" in r.stdout
    assert found(every_text(world.factory), "Cara White")
    r = cli(settings, "privacy", "erase", "--resident", "R003", "--as", "u-manager", stdin="R003\n")
    assert r.returncode == 0, r.stderr
    assert "erased-resident-3" in r.stdout and "Cara White" not in r.stdout + r.stderr
    assert not found(every_text(world.factory), "Cara White")
    with world.factory() as s:
        assert s.scalar(select(AuditEntry.actor).where(AuditEntry.action == "erase")) == "u-manager"
