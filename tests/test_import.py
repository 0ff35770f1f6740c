"""CSV import: a clean file is written whole; a file with any bad row writes nothing."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from ivr.importer import import_csv
from ivr.models import AuditEntry, CarePackage, Resident, ResidentLine, Visit, Worker
from tests.helpers import DATA, VISITS_HEADER, context_for, factory_for, import_world


def test_residents_lines_are_normalised_to_e164(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    with factory() as s:
        lines = {(r, e) for r, e in s.execute(
            select(Resident.reference, ResidentLine.e164).join(ResidentLine.resident))}
    assert ("R001", "+442086989911") in lines
    # "+44 (0)20 8698 9922;01632 960123": two spellings, two lines for one resident.
    assert ("R002", "+442086989922") in lines and ("R002", "+441134960123") in lines
    assert ("R003", "+442086989933") in lines


def test_worker_pin_is_stored_as_keyed_hash_not_plain(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    ctx = context_for(settings)
    with factory() as s:
        w = s.scalar(select(Worker).where(Worker.worker_number == "1001"))
    assert w.pin_hash != "1234" and len(w.pin_hash) == 64
    assert ctx.hasher.verify("1001", "1234", w.pin_hash)
    assert not ctx.hasher.verify("1001", "1235", w.pin_hash)
    assert w.mobile_e164 == "+447911123001"


def test_bad_rows_are_all_reported_and_nothing_is_written(settings):
    factory = factory_for(settings)
    ctx = context_for(settings)
    bad = (
        "reference,name,landline,address,postcode,funder,phone_code\n"
        "R1,Good Person,020 8698 9911,,,,201\n"
        "R2,,020 8698 9912,,,,202\n"           # line 3: no name
        "R3,Bad Phone,12345,,,,203\n"           # line 4: not a phone number
        "R1,Again,,,,,204\n"                    # line 5: duplicate reference
        "R5,Code Clash,,,,,201\n"               # line 6: phone code taken on line 2
    )
    report = import_csv(factory, "residents", bad, ctx)
    assert not report.ok
    assert [e.line for e in report.errors] == [3, 4, 5, 6]
    assert "name is empty" in report.errors[0].message
    assert "landline" in report.errors[1].message
    assert "first on line 2" in report.errors[2].message
    assert "201" in report.errors[3].message
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Resident)) == 0


def test_missing_header_column_is_reported_on_line_1(settings):
    report = import_csv(factory_for(settings), "workers", "worker_number,name\n1,X\n", context_for(settings))
    assert [(e.line, e.message) for e in report.errors] == [(1, "missing column(s): pin")]


def test_non_utf8_file_is_refused(settings):
    report = import_csv(factory_for(settings), "workers", b"worker_number,name,pin\n1,\xff\xfe,1234\n",
                        context_for(settings))
    assert not report.ok and "UTF-8" in report.errors[0].message


def test_visit_reimport_updates_times_and_workers(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    ctx = context_for(settings)
    first = f"{VISITS_HEADER}\nV1,R001,2026-06-01 09:00,2026-06-01 09:30,1001,yes\n"
    assert import_csv(factory, "visits", first, ctx).created == 1
    again = f"{VISITS_HEADER}\nV1,R001,2026-06-01 10:00,2026-06-01 10:45,1001;1002,no\n"
    report = import_csv(factory, "visits", again, ctx)
    assert (report.created, report.updated) == (0, 1)
    with factory() as s:
        v = s.scalar(select(Visit).where(Visit.visit_ref == "V1"))
        # 10:00 BST on 1 June is 09:00 UTC.
        assert v.planned_start == dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
        assert v.workers_required == 2 and not v.time_critical
        assert sorted(a.worker_id for a in v.assignments) == sorted(
            s.scalars(select(Worker.id).where(Worker.worker_number.in_(["1001", "1002"]))))
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "reimport")) == 1


def test_visit_at_a_time_that_happens_twice_needs_an_offset(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    ctx = context_for(settings)
    ambiguous = f"{VISITS_HEADER}\nV9,R001,2026-10-25 01:30,2026-10-25 02:30,1001,no\n"
    report = import_csv(factory, "visits", ambiguous, ctx)
    assert not report.ok and "happens twice" in report.errors[0].message
    explicit = f"{VISITS_HEADER}\nV9,R001,2026-10-25 01:30+00:00,2026-10-25 02:30,1001,no\n"
    assert import_csv(factory, "visits", explicit, ctx).ok
    with factory() as s:
        v = s.scalar(select(Visit).where(Visit.visit_ref == "V9"))
        assert v.planned_start == dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)
        assert v.planned_end - v.planned_start == dt.timedelta(hours=1)


def test_package_for_unknown_resident_is_refused(settings):
    factory = factory_for(settings)
    text = (DATA / "packages.csv").read_text() + "R999,PO-9,Lewisham,1,1,1,1,2026-01-05,\n"
    import_world(settings, factory)
    report = import_csv(factory, "packages", text, context_for(settings))
    assert [e.line for e in report.errors] == [6]
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(CarePackage)) == 4


def test_reimporting_residents_updates_lines_in_place(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    import_world(settings, factory)  # the same files again: updates, no duplicates
    ctx = context_for(settings)
    moved = ("reference,name,landline,address,postcode,funder,phone_code\n"
             "R002,Bob Green,0113 496 0123;020 8698 9944,,,Lewisham,102\n")
    assert import_csv(factory, "residents", moved, ctx).updated == 1
    with factory() as s:
        lines = sorted(s.scalars(select(ResidentLine.e164).join(ResidentLine.resident)
                                 .where(Resident.reference == "R002")))
    assert lines == ["+441134960123", "+442086989944"]
