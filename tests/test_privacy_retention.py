"""Retention: the daily job deletes exactly what the policy says has expired, on its
boundary: a row dated exactly at the cutoff (now minus the period) is kept, one a
second (or, for dates, a day) older is deleted; a dry run deletes nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import pytest_twisted
from sqlalchemy import func, select
from twisted.internet import reactor

from billing.models import BillingRun, Invoice, InvoiceLine
from carecall.config import ConfigError, parse_table
from carecall.runtime import Runtime
from ivr.db import unit_of_work
from ivr.models import Attendance, AuditEntry, CallRecord, LoginFailure, Resident, Visit, Worker
from privacy import viewlog
from privacy.retention import RetentionPolicy, report_lines, run
from scheduler.models import Alert, AlertAction
from tests.billing_world import utc
from tests.helpers import factory_for
from tests.webclient import cli

NOW = utc(2026, 6, 1, 12)
SECOND = dt.timedelta(seconds=1)
# Cutoffs under the default policy, from NOW:
CALLS = utc(2024, 6, 1, 12)  # 2 years
SIX = utc(2020, 6, 1, 12)  # 6 years: attendances, visits, invoices, alerts, audit, views
LOGINS = NOW - dt.timedelta(days=30)


def world(factory):
    with factory.begin() as s:
        r = Resident(reference="R1", name="Ann Example")
        w = Worker(worker_number="9001", name="Wil Example", pin_hash="x")
        s.add_all([r, w])
        s.flush()
        ids = {}
        for label, at in (("kept", SIX), ("old", SIX - SECOND)):
            v = Visit(visit_ref=f"V-{label}", resident_id=r.id, planned_start=at,
                      planned_end=at + dt.timedelta(hours=1))
            s.add(v)
            s.flush()
            a = Attendance(visit_id=v.id, resident_id=r.id, worker_id=w.id, arrival_at=at, created_at=at)
            s.add(a)
            s.flush()
            alert = Alert(kind="late", dedupe_key=f"late:{label}", resident_id=r.id, due_at=at, raised_at=at)
            s.add(alert)
            s.flush()
            s.add(AlertAction(alert_id=alert.id, actor="x", action="raised", at=at))
            s.add(AuditEntry(actor="x", action="edit", entity="resident", entity_id="R1", at=at))
            viewlog.record(s, actor="x", role="manager", channel="web", kind="resident", subject_id=r.id,
                           what=f"page {label}", at=at)
            ids[label] = {"visit": v.id, "attendance": a.id, "alert": alert.id}
        for label, at in (("kept", CALLS), ("old", CALLS - SECOND)):
            s.add(CallRecord(uniqueid=f"c-{label}", script="checkin", started_at=at, resident_id=r.id,
                             attendance_id=ids["kept"]["attendance"]))
        for label, at in (("kept", LOGINS), ("old", LOGINS - SECOND)):
            s.add(LoginFailure(worker_number="9001", line="+442000000000", at=at, uniqueid=label))
        # An old call the kept alert points at: the alert stays, without the link.
        s.flush()
        old_call = s.scalar(select(CallRecord.id).where(CallRecord.uniqueid == "c-old"))
        s.get(Alert, ids["kept"]["alert"]).call_record_id = old_call
        run_ = BillingRun(period_start=dt.date(2020, 5, 4))
        s.add(run_)
        s.flush()
        for n, (label, end) in enumerate((("kept", SIX.date()), ("old", SIX.date() - dt.timedelta(days=1)))):
            inv = Invoice(number=n + 1, run_id=run_.id, group_key=label, period_start=end - dt.timedelta(days=27),
                          period_end=end, funder="F", purchase_order="PO", issue_date=end, due_date=end,
                          total_pence=1000)
            s.add(inv)
            s.flush()
            # The kept invoice bills the *old* attendance: the line (and its amount) stays, the link goes.
            s.add(InvoiceLine(invoice_id=inv.id, kind="billed", attendance_id=ids["old"]["attendance"],
                              service_period_start=inv.period_start, resident_reference="R1", visit_ref="V",
                              worker_number="9001", method="phone", amount_pence=1000))
    return ids


def counts(factory):
    with factory() as s:
        def n(model):
            return s.scalar(select(func.count()).select_from(model))
        return {"visits": n(Visit), "attendances": n(Attendance), "alerts": n(Alert), "actions": n(AlertAction),
                "audit": n(AuditEntry), "calls": n(CallRecord), "logins": n(LoginFailure), "invoices": n(Invoice),
                "lines": n(InvoiceLine), "views": n(viewlog.PersonalDataView)}


def test_retention_deletes_exactly_what_expired_on_the_boundary(settings):
    factory = factory_for(settings)
    ids = world(factory)
    assert counts(factory) == {"visits": 2, "attendances": 2, "alerts": 2, "actions": 2, "audit": 2, "calls": 2,
                               "logins": 2, "invoices": 2, "lines": 2, "views": 2}
    with unit_of_work(factory) as s:
        dry = run(s, RetentionPolicy(), NOW, dry_run=True)
    assert {x.table: x.rows for x in dry if x.rows} == {
        "visits": 1, "attendances": 1, "call_records": 1, "alerts": 1, "billing_invoices": 1, "audit_log": 1,
        "login_failures": 1, "privacy_views": 1}
    assert counts(factory)["visits"] == 2  # the dry run deleted nothing
    with unit_of_work(factory) as s:
        run(s, RetentionPolicy(), NOW, dry_run=False)
    # Each kind lost exactly its old row; the alert's history went with it; the retention run is audited.
    assert counts(factory) == {"visits": 1, "attendances": 1, "alerts": 1, "actions": 1, "audit": 2, "calls": 1,
                               "logins": 1, "invoices": 1, "lines": 1, "views": 1}
    with factory() as s:
        assert s.get(Visit, ids["kept"]["visit"]) and not s.get(Visit, ids["old"]["visit"])
        assert s.scalars(select(CallRecord.uniqueid)).all() == ["c-kept"]
        assert s.scalars(select(LoginFailure.uniqueid)).all() == ["kept"]
        assert s.get(Alert, ids["kept"]["alert"]).call_record_id is None
        [line] = s.scalars(select(InvoiceLine)).all()
        assert (line.attendance_id, line.amount_pence) == (None, 1000)
        assert s.scalars(select(Invoice.group_key)).all() == ["kept"]
        assert s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all() == ["edit", "retention"]
    with unit_of_work(factory) as s:  # a second run finds nothing more
        assert not any(x.rows for x in run(s, RetentionPolicy(), NOW, dry_run=False))


def test_a_longer_period_keeps_more(settings):
    factory = factory_for(settings)
    world(factory)
    policy = dataclasses.replace(RetentionPolicy(), call_records_years=7)
    with unit_of_work(factory) as s:
        report = run(s, policy, NOW, dry_run=True)
    assert {x.table: x.rows for x in report}["call_records"] == 0


def test_policy_is_checked_and_the_dry_run_report_reads_plainly(settings):
    with pytest.raises(ConfigError, match="call_records_years must be at least 1"):
        parse_table("retention", {"call_records_years": 0})
    with pytest.raises(ConfigError, match=r"unknown setting \[retention\] calls"):
        parse_table("retention", {"calls": 2})
    with pytest.raises(ConfigError, match="run_at"):
        parse_table("retention", {"run_at": "25:00"})
    assert RetentionPolicy().cutoff("call_records_years", utc(2028, 2, 29, 3)) == utc(2026, 2, 28, 3)
    lines = report_lines(run_report(settings), dry_run=True, tz=settings.tz)
    assert any(line.startswith("Call records") and "would delete" in line for line in lines)


def run_report(settings):
    factory = factory_for(settings)
    with unit_of_work(factory) as s:
        return run(s, RetentionPolicy(), NOW, dry_run=True)


def test_cli_dry_run_deletes_nothing(settings):
    factory = factory_for(settings)
    world(factory)
    r = cli(settings, "privacy", "retention", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "Call records" in r.stdout and "would delete" in r.stdout
    assert counts(factory)["calls"] == 2


@pytest_twisted.inlineCallbacks
def test_the_server_runs_retention_daily_at_its_hour(settings):
    from privacy.service import RetentionService, make_service

    factory = factory_for(settings)
    world(factory)
    runtime = Runtime.create(dataclasses.replace(settings, raw={"retention": {"run_at": "04:15"}}), reactor)
    runtime.start()
    service = make_service(runtime)
    assert isinstance(service, RetentionService)
    try:
        service.startService()
        job = service.scheduler.get_job("retention")
        nxt = job.next_run_time.astimezone(settings.tz)
        assert (nxt.hour, nxt.minute) == (4, 15)
        yield service.run_once()  # what the job does at 04:15 (real clock: every planted old row has expired)
    finally:
        service.stopService()
        runtime.stop()
    assert counts(factory)["calls"] == 0 and counts(factory)["visits"] == 0
    off = Runtime.create(dataclasses.replace(settings, raw={"retention": {"enabled": False}}))
    assert make_service(off) is None
    off.stop()
