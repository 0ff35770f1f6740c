"""Issue 15 "Speed": a run in worker processes stores and prints exactly what one process does.

The parallel run (``billing.parallel``: bills worked out in forked or fork-server
workers, billed lines staged and copied by ``billing.line_store``) and the CSV in pieces
(``billing.stored_csv``) are compared, on each engine, with the plain run in one process
on a second database holding the same data: every invoice header, every line with every
column, the counts the CLI prints, the unassigned attendances, and the CSV byte for byte.
The data is the benchmark's generator (``bench/billing_run.py``: late manual entries,
missing departures, hours over the cap, private clients), plus a package that changes
mid-period, a package that ends early (attendances no package covers), a private
client's representative billing address and a correction issued in the next period.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bench.billing_run import build
from billing import invoices, parallel, stored_csv
from billing.models import Invoice, InvoiceLine
from carecall.config import Settings, load_settings
from ivr import csvsafe
from ivr.db import make_engine, session_factory
from ivr.models import Attendance, CarePackage, ContactRelation, Resident, ResidentContact, Visit, Worker
from tests.conftest import fresh_database

P1, P2 = dt.date(2026, 1, 5), dt.date(2026, 2, 2)
NOW1 = dt.datetime(2026, 2, 3, 9, tzinfo=dt.UTC)
NOW2 = dt.datetime(2026, 3, 3, 9, tzinfo=dt.UTC)
RESIDENTS = 230  # three batches of 100 for the council, one for the private clients


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_name(request: pytest.FixtureRequest) -> str:
    return request.param


def _settings(url: str, tmp_path: Path) -> Settings:
    return load_settings(None, db_url=url, environ={}, secret_file=str(tmp_path / "key"),
                         data_dir=str(tmp_path / "var"))


def _world(url: str) -> sessionmaker[Session]:
    build(url, RESIDENTS, RESIDENTS * 40, seed=11)
    factory = session_factory(make_engine(url))
    with factory.begin() as s:
        # Resident 5's package changes on 16 January (a second purchase order); resident 7's
        # ends on 10 January, so its later attendances fall outside every package.
        s.execute(update(CarePackage).where(CarePackage.id == 5).values(end_date=dt.date(2026, 1, 15)))
        s.add(CarePackage(id=10_000, resident_id=5, purchase_order="PO-NEW-5", funder="Council",
                          weekly_hours=Decimal(12), hourly_rate=Decimal("22.10"), weekend_rate=Decimal("24.00"),
                          bank_holiday_rate=Decimal("33.00"), start_date=dt.date(2026, 1, 16), end_date=None))
        s.execute(update(CarePackage).where(CarePackage.id == 7).values(end_date=dt.date(2026, 1, 10)))
        # Text a spreadsheet would run, or csv must quote, in every data column of the CSV.
        s.execute(update(Resident).where(Resident.id == 12).values(reference='=HYPERLINK("x"),1'))
        s.execute(update(CarePackage).where(CarePackage.id == 13).values(purchase_order='PO, "13"'))
        s.execute(update(Worker).where(Worker.id == 14).values(worker_number="+4,4"))
        s.execute(update(Visit).where(Visit.resident_id == 15).values(visit_ref=Visit.visit_ref + ' "a",\n@b\rc'))
        # Resident 20 is a private client (every tenth is) with a representative who pays.
        s.add(ResidentContact(resident_id=20, position=1, name="Dana Payer", relation=ContactRelation.REPRESENTATIVE,
                              email="dana@example.org", billing_address="1 Bill Street; Lewisham; SE13 1AA"))
    return factory


def _correct(factory: sessionmaker[Session]) -> None:
    """After period 1 is issued: one departure moved 20 minutes later, as the office would."""
    with factory.begin() as s:
        a = s.scalars(select(Attendance).join(Visit, Attendance.visit_id == Visit.id)
                      .where(Visit.resident_id == 3, Attendance.departure_at.is_not(None))
                      .order_by(Attendance.id)).first()
        assert a is not None
        a.departure_at = a.departure_at + dt.timedelta(minutes=20)
        a.updated_at = dt.datetime(2026, 2, 20, tzinfo=dt.UTC)


def _stored(factory: sessionmaker[Session]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every header and every line, keyed by invoice number (ids may differ between databases)."""
    with factory() as s:
        heads = s.execute(select(Invoice).order_by(Invoice.number)).scalars().all()
        number = {h.id: h.number for h in heads}
        headers = [(h.number, h.group_key, h.funder, h.purchase_order, h.period_start, h.period_end,
                    h.issue_date, h.due_date, h.cap_minutes, h.billed_minutes, h.over_cap_minutes, h.visits,
                    h.total_pence, h.bill_to, h.bill_to_email, h.resident_id) for h in heads]
        cols = [c for c in InvoiceLine.__table__.c if c.name not in ("id", "invoice_id")]
        lines = [(number[r.invoice_id], *(getattr(r, c.name) for c in cols))
                 for r in s.execute(select(InvoiceLine.invoice_id, *cols).order_by(InvoiceLine.id))]
    return headers, lines


def _counts(result: invoices.IssueResult) -> list[tuple[str, int | None, int | None, bool]]:
    return [(d.number, d.exception_count, d.charged_count, d.is_nil) for d in result.invoices]


def _csv(factory: sessionmaker[Session], settings: Settings, period: dt.date, workers: int | None) -> str:
    out = io.StringIO()
    stored_csv.write(factory, settings, period, out, workers=workers)
    return out.getvalue()


def _oracle(factory: sessionmaker[Session], settings: Settings, period: dt.date) -> str:
    """The CSV worked out the plain way: ORM rows, astimezone, Decimal, the csv module's writer."""
    config = invoices.BillingConfig.from_settings(settings)
    out = io.StringIO()
    w = csvsafe.writer(out)
    w.writerow(invoices.CSV_COLUMNS)

    def local(t: dt.datetime | None) -> str:
        return t.astimezone(config.tz).strftime("%Y-%m-%d %H:%M") if t else ""

    with factory() as s:
        for inv in s.scalars(select(Invoice).where(Invoice.period_start == period).order_by(Invoice.number)):
            for ln in s.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == inv.id).order_by(InvoiceLine.id)):
                if ln.kind in ("billed", "reversal", "adjustment") and (ln.billable_minutes or ln.amount_pence):
                    w.writerow([config.invoice_number(inv.number), inv.funder, inv.purchase_order,
                                ln.resident_reference, ln.visit_ref, ln.worker_number, local(ln.arrival_at),
                                local(ln.departure_at), ln.method, str(ln.billable_minutes),
                                f"{Decimal(ln.rate_pence) / 100:.2f}", f"{Decimal(ln.amount_pence) / 100:.2f}"])
    return out.getvalue()


def _run_both_periods(factory: sessionmaker[Session], settings: Settings,
                      workers: int) -> tuple[invoices.IssueResult, invoices.IssueResult]:
    first = invoices.issue(factory, settings, P1, now=NOW1, with_lines=False, workers=workers)
    _correct(factory)
    second = invoices.issue(factory, settings, P2, now=NOW2, with_lines=False, workers=workers)
    return first, second


@pytest.fixture
def two_databases(request: pytest.FixtureRequest, engine_name: str,
                  tmp_path: Path) -> Iterator[tuple[tuple[sessionmaker[Session], Settings], ...]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with fresh_database(request, engine_name, tmp_path / "a") as a, \
            fresh_database(request, engine_name, tmp_path / "b") as b:
        pair = ((_world(a), _settings(a, tmp_path / "a")), (_world(b), _settings(b, tmp_path / "b")))
        yield pair
        for factory, _ in pair:
            factory.kw["bind"].dispose()


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_a_run_in_worker_processes_stores_and_prints_what_one_process_does(
        two_databases: tuple[tuple[sessionmaker[Session], Settings], ...], start_method: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (serial, serial_settings), (par, par_settings) = two_databases
    monkeypatch.setattr(parallel, "start_method", lambda: start_method)
    one = _run_both_periods(serial, serial_settings, workers=0)
    many = _run_both_periods(par, par_settings, workers=2)

    headers, lines = _stored(serial)
    assert _stored(par) == (headers, lines)
    # Not a trivial comparison: both periods, both funders, every kind of line are there.
    kinds = {ln[1] for ln in lines}
    assert kinds == {"billed", "exception", "rejected", "reversal", "adjustment"}, kinds
    assert {h[2] for h in headers} == {"Council", "Private"}
    assert any(h[3] == "PO-NEW-5" for h in headers)
    assert any(h[13].startswith("Dana Payer\n1 Bill Street") and h[14] == "dana@example.org" for h in headers)
    assert len(lines) > RESIDENTS * 30
    p1 = _csv(serial, serial_settings, P1, workers=0)
    for hostile in ('"\'=HYPERLINK(""x""),1"', '"PO, ""13"""', '"\'+4,4"', ' ""a"",\n@b\rc"'):
        assert hostile in p1, hostile
    # The counts the CLI prints come from the run's totals; the same as counted from the lines.
    for r_one, r_many in zip(one, many, strict=True):
        assert _counts(r_many) == _counts(r_one)
        assert r_many.unassigned_attendances == r_one.unassigned_attendances
    assert one[0].unassigned_attendances > 0
    with par() as s:
        config = invoices.load_config(par_settings, s)
        queried = invoices._load_docs(s, config, P1, ["Council", "Private"], with_lines=False)
    assert [(d.number, d.exception_count, d.charged_count) for d in queried] == \
        [(n, e, c) for n, e, c, _ in _counts(many[0])]

    # The CSV cut into pieces of 7 lines (inside invoices, across them) is the one-process file.
    monkeypatch.setattr(stored_csv, "PIECE", 7)
    for period in (P1, P2):
        expected = _csv(serial, serial_settings, period, workers=0)
        assert expected == _oracle(serial, serial_settings, period)
        assert _csv(par, par_settings, period, workers=2) == expected
    # Period 2 has no visits: its CSV is the correction alone, the old line reversed and the new one.
    rows = expected.splitlines()[1:]
    assert len(rows) == 2 and all(",R00003," in r for r in rows), rows
    assert rows[0].split(",")[-1].startswith("-") and not rows[1].split(",")[-1].startswith("-")


def test_big_runs_use_workers_by_themselves_and_small_ones_do_not(
        two_databases: tuple[tuple[sessionmaker[Session], Settings], ...], monkeypatch: pytest.MonkeyPatch) -> None:
    (factory, settings), _ = two_databases
    pools: list[int] = []
    real = parallel.process_pool

    def counting(workers: int, *args: Any) -> Any:
        pools.append(workers)
        return real(workers, *args)

    monkeypatch.setattr(parallel, "process_pool", counting)
    monkeypatch.setattr(invoices, "PARALLEL_FROM", RESIDENTS + 1)
    monkeypatch.setattr(stored_csv, "PARALLEL_FROM", 10**9)
    invoices.issue(factory, settings, P1, now=NOW1, with_lines=False)
    _csv(factory, settings, P1, workers=None)
    assert pools == []
    monkeypatch.setattr(invoices, "PARALLEL_FROM", 10)
    monkeypatch.setattr(stored_csv, "PARALLEL_FROM", 10)
    invoices.issue(factory, settings, P2, now=NOW2, with_lines=False)
    _csv(factory, settings, P1, workers=None)
    assert pools == [parallel.default_workers()] * 2


def test_a_visit_changed_while_the_run_reads_is_never_half_billed(
        two_databases: tuple[tuple[sessionmaker[Session], Settings], ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """The copies of times on a line are the times its minutes came from.

    A departure is moved by another connection after the workers have read it but before
    its line is copied. SQLite: the other writer waits for the run's write lock and lands
    after it. PostgreSQL: it commits at once, but the run's REPEATABLE READ snapshot (the
    workers' too) still holds the old time. Either way the line bills and shows the old
    departure, and the change waits for the next run's corrections.
    """
    (factory, settings), _ = two_databases
    with factory() as s:
        target = s.scalars(select(Attendance).join(Visit, Attendance.visit_id == Visit.id)
                           .where(Visit.resident_id == RESIDENTS, Attendance.departure_at.is_not(None))
                           .order_by(Attendance.id)).first()
        assert target is not None
        old_departure, aid = target.departure_at, target.id
    from billing import line_store

    real_flush = line_store.LineStage.flush
    changer: list[threading.Thread] = []

    def change() -> None:
        with factory.begin() as s:
            s.execute(update(Attendance).where(Attendance.id == aid)
                      .values(departure_at=old_departure + dt.timedelta(minutes=45)))

    def flush(self: line_store.LineStage) -> None:
        if not changer:
            changer.append(threading.Thread(target=change))
            changer[0].start()
            changer[0].join(timeout=1.5)  # PostgreSQL: committed at once; SQLite: waits for the run
        real_flush(self)

    monkeypatch.setattr(line_store.LineStage, "flush", flush)
    invoices.issue(factory, settings, P1, now=NOW1, with_lines=False, workers=2)
    changer[0].join(timeout=30)
    assert not changer[0].is_alive()
    with factory() as s:
        line = s.execute(select(InvoiceLine.departure_at, InvoiceLine.arrival_at, InvoiceLine.billable_minutes,
                                InvoiceLine.over_cap_minutes)
                         .where(InvoiceLine.attendance_id == aid)).one()
        now_stored = s.scalar(select(Attendance.departure_at).where(Attendance.id == aid))
    assert now_stored == old_departure + dt.timedelta(minutes=45)
    assert line.departure_at == old_departure
    # The minutes are those of the stored times (billing.rules: minute rounding, half up).
    elapsed = ((line.departure_at - line.arrival_at) // dt.timedelta(microseconds=1) + 30_000_000) // 60_000_000
    assert line.billable_minutes + line.over_cap_minutes == elapsed


@pytest.mark.parametrize(("value", "expected"), [("auto", None), (0, 0), (3, 3)])
def test_billing_workers_setting(value: object, expected: int | None) -> None:
    from zoneinfo import ZoneInfo

    assert invoices.BillingConfig.from_section({"workers": value}, ZoneInfo("Europe/London")).workers == expected


@pytest.mark.parametrize("value", [-1, "two", True, 1.5])
def test_a_bad_billing_workers_setting_is_refused_with_its_reason(value: object) -> None:
    from zoneinfo import ZoneInfo

    from carecall.config import ConfigError

    with pytest.raises(ConfigError, match=r'\[billing\] workers must be "auto" or a whole number, 0 for none'):
        invoices.BillingConfig.from_section({"workers": value}, ZoneInfo("Europe/London"))


def _die_on_batch_three(fp: Any, resident_ids: list[int]) -> Any:
    if 201 in resident_ids:
        os._exit(1)  # a worker killed mid-run (out of memory, say)
    return real_batch(fp, resident_ids)


real_batch = parallel._batch


def test_a_worker_that_dies_mid_run_issues_nothing_and_says_so(
        two_databases: tuple[tuple[sessionmaker[Session], Settings], ...], monkeypatch: pytest.MonkeyPatch) -> None:
    (factory, settings), _ = two_databases
    monkeypatch.setattr(parallel, "start_method", lambda: "fork")  # the child runs this module's patched code
    monkeypatch.setattr(parallel, "_batch", _die_on_batch_three)
    with pytest.raises(invoices.BillingError, match=r"worker process stopped .* nothing was issued"):
        invoices.issue(factory, settings, P1, now=NOW1, with_lines=False, workers=2)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == 0
        assert s.scalar(select(func.count()).select_from(InvoiceLine)) == 0
    monkeypatch.setattr(parallel, "_batch", real_batch)
    result = invoices.issue(factory, settings, P1, now=NOW1, with_lines=False, workers=2)
    assert result.newly_issued and len(result.invoices) == RESIDENTS + 1


def test_the_module_run_by_python_m_does_nothing_when_a_worker_imports_it() -> None:
    """A fork server or spawned worker imports the main module as ``__mp_main__``: no second CLI run."""
    import runpy

    runpy.run_module("carecall.__main__", run_name="__mp_main__")  # would raise SystemExit if it ran main()


class _SerializationFailure(Exception):
    pgcode = "40001"  # what psycopg's errors carry for "could not serialize access"


def test_a_postgresql_serialization_failure_issues_nothing_and_says_to_issue_again(
        two_databases: tuple[tuple[sessionmaker[Session], Settings], ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """Not provoked for real (a concurrent change to a visit does not conflict: see the test above), so
    the driver's error is raised where the copy runs; the run must roll back and tell the office why."""
    from sqlalchemy.exc import OperationalError

    from billing import line_store

    (factory, settings), _ = two_databases

    def failing(self: line_store.LineStage) -> None:
        raise OperationalError("INSERT INTO billing_invoice_lines …", {}, _SerializationFailure())

    monkeypatch.setattr(line_store.LineStage, "flush", failing)
    with pytest.raises(invoices.BillingError, match="changed while the invoices were being issued; nothing"):
        invoices.issue(factory, settings, P1, now=NOW1, with_lines=False, workers=0)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == 0
    monkeypatch.undo()
    assert invoices.issue(factory, settings, P1, now=NOW1, with_lines=False, workers=0).newly_issued
