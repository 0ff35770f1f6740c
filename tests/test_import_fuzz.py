"""Fuzzing the CSV importer: whatever arrives, it answers with a report and never half-imports.

Two properties, on both engines: ``import_csv`` never raises on hostile bytes (it
reports), and a report with any error leaves every table exactly as it was.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select

from ivr.importer import COLUMNS, import_csv
from ivr.models import AuditEntry, CarePackage, Resident, ResidentLine, Visit, VisitWorker, Worker
from tests.helpers import context_for, factory_for, import_world

TABLES = (Resident, ResidentLine, Worker, CarePackage, Visit, VisitWorker, AuditEntry)
FUZZ = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Values that are nearly right: the kind of thing a spreadsheet export produces.
nearly = st.one_of(
    st.sampled_from(["", " ", "R001", "R404", "1001", "1001;1002", "1001;1001", "1234", "12345", "yes", "no",
                     "maybe", "020 8698 9911", "12345", "2026-06-01 09:00", "2026-03-29 01:30", "2026-10-25 01:30",
                     "2026-13-01 09:00", "10.5", "-1", "1e9", "NaN", "£21.50", "2026-01-05", "x" * 600,
                     "=cmd|' /C calc'!A0", "<script>alert(1)</script>", "\u202e", "\x00"]),
    st.text(alphabet=string.printable, max_size=30),
)


def _counts(factory) -> tuple[int, ...]:
    with factory() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in TABLES)


@st.composite
def csv_files(draw) -> tuple[str, str]:
    kind = draw(st.sampled_from(sorted(COLUMNS)))
    header = list(COLUMNS[kind])
    if draw(st.booleans()):
        header = draw(st.permutations(header))
    rows = draw(st.lists(st.lists(nearly, min_size=len(header), max_size=len(header)), max_size=6))
    lines = [",".join(header)] + [",".join('"' + v.replace('"', '""') + '"' for v in row) for row in rows]
    return kind, "\n".join(lines) + "\n"


def test_structured_fuzz_never_raises_and_rejection_changes_nothing(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    ctx = context_for(settings)

    @FUZZ
    @given(csv_files())
    def check(case: tuple[str, str]) -> None:
        kind, text = case
        before = _counts(factory)
        report = import_csv(factory, kind, text, ctx)
        if not report.ok:
            assert all(e.line >= 1 and e.message for e in report.errors)
            assert _counts(factory) == before

    check()


def test_raw_bytes_fuzz_is_rejected_with_a_message(settings):
    factory = factory_for(settings)
    ctx = context_for(settings)

    @FUZZ
    @given(st.sampled_from(sorted(COLUMNS)), st.binary(max_size=300))
    def check(kind: str, data: bytes) -> None:
        before = _counts(factory)
        report = import_csv(factory, kind, data, ctx)
        if not report.ok:
            assert _counts(factory) == before
            assert report.errors[0].message

    check()
