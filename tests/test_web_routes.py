"""Every route, as anonymous and as each role, with and without CSRF; hostile and broken input.

One real server (``carecall run`` in a subprocess) per engine for the module: the route
sweep, the forms and the API all talk to it over TCP, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from billing import invoices
from billing.models import Invoice
from billing.rules import BillingConfig, period_containing
from carecall.config import Settings, load_settings
from carecall.runtime import Runtime
from ivr.db import unit_of_work
from ivr.models import Attendance, AuditEntry, CallRecord, Resident, ReviewStatus, Visit, Worker
from outreach.models import Feedback
from scheduler.models import Alert, AlertAction, AlertCheck
from scheduler.store import raise_alert
from tests.conftest import fresh_database
from tests.helpers import VISITS_HEADER, factory_for, import_world, on_today, visit_row
from tests.webclient import Client, add_users, cli, running_server
from web.site import build_app

ROLES = ("coordinator", "finance", "manager")
XSS = '<script>alert("x")</script>'


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("web")
    with fresh_database(request, request.param, tmp) as url:
        settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "carecall.key"),
                                 data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        past = last_ended_period(settings, now)
        day2 = dt.datetime.combine(past + dt.timedelta(days=1), dt.time(10), tzinfo=settings.tz)
        rows = [visit_row("V-NOW", "R001", on_today(now, -5, settings), 45, "1001", settings=settings),
                visit_row("V-LATER", "R002", on_today(now, 20, settings), 30, "1002", settings=settings),
                visit_row("V-X", "R003", on_today(now, -10, settings), 30, "1003", settings=settings),
                # In the last ended billing period: two delivered visits and one missed.
                visit_row("V-PAST", "R001", day2, 45, "1001", settings=settings),
                visit_row("V-PRIV", "R003", day2 + dt.timedelta(hours=2), 60, "1003", settings=settings),
                visit_row("V-MISS", "R002", day2 + dt.timedelta(hours=1), 30, "1002", settings=settings)]
        import_world(settings, factory, "\n".join([VISITS_HEADER, *rows]) + "\n")
        with unit_of_work(factory) as s:
            s.add(CallRecord(uniqueid="u-open", script="checkin", started_at=now - dt.timedelta(minutes=4),
                             outcome="unknown_line", review_status=ReviewStatus.OPEN, caller_e164="+442086980000"))
            for ref, worker, minutes in (("V-PAST", "1001", 45), ("V-PRIV", "1003", 60)):
                v = s.scalar(select(Visit).where(Visit.visit_ref == ref))
                w = s.scalar(select(Worker).where(Worker.worker_number == worker))
                s.add(Attendance(visit_id=v.id, resident_id=v.resident_id, worker_id=w.id, arrival_at=v.planned_start,
                                 arrival_method="phone", arrival_verified=True, departure_method="phone",
                                 departure_at=v.planned_start + dt.timedelta(minutes=minutes), departure_verified=True))
            s.add(Resident(reference="R-XSS", name=XSS, funder="Lewisham", team="North"))
        with unit_of_work(factory) as s:  # a no-reply alert for V-NOW (as the no-reply call raises it), and a late one
            v_now = s.scalar(select(Visit).where(Visit.visit_ref == "V-NOW"))
            w1 = s.scalar(select(Worker.id).where(Worker.worker_number == "1001"))
            raise_alert(s, kind="no_reply", visit_id=v_now.id, worker_id=w1, resident_id=v_now.resident_id, at=now,
                        detail=XSS)
            v_x = s.scalar(select(Visit).where(Visit.visit_ref == "V-X"))
            raise_alert(s, kind="late", visit_id=v_x.id, resident_id=v_x.resident_id, at=now - dt.timedelta(minutes=1),
                        due_at=now - dt.timedelta(minutes=1))
        # The private funder's invoice for that period is issued (frozen) before the server starts: number 1.
        issued = invoices.issue(factory, settings, past, "Private", actor="test")
        assert [d.number for d in issued.invoices] == ["INV-000001"]
        add_users(settings)
        with unit_of_work(factory) as s:
            ids: dict[str, Any] = {v.visit_ref: v.id for v in s.scalars(select(Visit))}
            ids["period"] = past
            ids["alert"] = s.scalar(select(Alert.id).where(Alert.kind == "no_reply"))
            ids["late_alert"] = s.scalar(select(Alert.id).where(Alert.kind == "late"))
            ids.update({w.worker_number: w.id for w in s.scalars(select(Worker))})
            ids["call"] = s.scalar(select(CallRecord.id))
            feedback = Feedback(resident_id=s.scalar(select(Resident.id).where(Resident.reference == "R001")),
                                kind="concern", message="x", reply="")  # the family feedback queue's one item
            s.add(feedback)
            s.flush()
            ids["feedback"] = feedback.id
        try:
            # Every test client comes from 127.0.0.1: the per-address limit is covered in test_web_throttle.py.
            # The alert scheduler is off here so nothing changes under the sweep; the browser test runs it.
            config = "[web]\nlogin_ip_free_attempts = 1000\n[alerts]\nenabled = false\n"
            with running_server(settings, tmp, config) as base:
                yield {"settings": settings, "base": base, "factory": factory, "ids": ids, "tmp": tmp}
        finally:
            factory.kw["bind"].dispose()





def last_ended_period(settings: Settings, now: dt.datetime) -> dt.date:
    config = BillingConfig.from_settings(settings)
    current = period_containing(now.astimezone(settings.tz).date(), config.default, settings.tz)
    return current.start - dt.timedelta(days=config.default.period_days)


def routes(settings: Settings) -> list[tuple[str, str, frozenset[str] | None, bool]]:
    app = build_app(Runtime.create(settings))
    return [(r.method, r.path, r.roles, r.api) for r in app.routes]


def concrete(path: str, ids: dict[str, Any]) -> str:
    """A URL that exists for the route (and its required query), so an allowed GET answers 200."""
    period = ids["period"].isoformat()
    examples = {
        "/invoices/draft": f"/invoices/draft?period={period}&funder=Lewisham&po=PO-1001",
        "/invoices/csv": f"/invoices/csv?period={period}",
        "/timesheets/view": f"/timesheets/view?resident=R001&period={period}",
        "/reports/figure/{key}": "/reports/figure/missed",
    }
    if path in examples:
        return examples[path]
    path = path.replace("/calls/{id:int}", f"/calls/{ids['call']}")
    path = path.replace("/alerts/{id:int}", f"/alerts/{ids['alert']}")
    path = path.replace("/feedback/{id:int}", f"/feedback/{ids['feedback']}")
    path = path.replace("/privacy/{kind}", "/privacy/residents")
    return re.sub(r"\{\w+(:int)?\}", "1", path).replace("/static/1", "/static/app.css")


def snapshot(factory: Any) -> tuple[int, ...]:
    with unit_of_work(factory) as s:
        return (s.scalar(select(func.count(AuditEntry.id))), s.scalar(select(func.count(Attendance.id))),
                s.scalar(select(func.count(Resident.id))), s.scalar(select(func.count(Worker.id))),
                s.scalar(select(func.count(CallRecord.id)).where(CallRecord.review_status == "open")),
                s.scalar(select(func.count(Visit.id)).where(Visit.status == "cancelled")),
                s.scalar(select(func.count(Invoice.id))), s.scalar(select(func.count(AlertAction.id))))


def test_every_route_refuses_anonymous_wrong_role_and_missing_csrf(site):
    table = routes(site["settings"])
    assert len(table) >= 30
    before = snapshot(site["factory"])
    anon = Client(site["base"])
    for method, path, roles, api in table:
        if roles is None:
            continue
        url = concrete(path, site["ids"])
        r = anon.get(url) if method == "GET" else anon.post(url, {"note": "x"})
        if api:
            assert r.status == 401, (method, url)
        elif method == "GET" and not url.endswith("/events"):
            assert (r.status, r.header("Location")) == (303, "/login"), (method, url)
        else:
            assert r.status == 401, (method, url)
    for role in ROLES:
        c = Client(site["base"])
        assert c.login(role).status == 303
        for method, path, roles, api in table:
            if roles is None or api or path.endswith("/events"):
                continue
            url = concrete(path, site["ids"])
            r = c.get(url) if method == "GET" else c.post(url, {"note": "x", "reason": "other", "q": "a"})
            if role not in roles:
                assert r.status == 403, (role, method, url, r.status)
            elif method == "GET":
                assert r.status == (303 if url == "/" else 200), (role, method, url, r.status)
            else:  # allowed, but no CSRF token: refused, nothing done
                assert r.status == 403 and "out of date" in r.text, (role, method, url, r.status)
    assert snapshot(site["factory"]) == before


def test_pages_carry_security_headers_and_hardened_cookies(site):
    c = Client(site["base"])
    page = c.get("/login")
    csp = page.header("Content-Security-Policy") or ""
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.header("X-Content-Type-Options") == "nosniff" and page.header("X-Frame-Options") == "DENY"
    r = c.login("coordinator")
    cookie = next(v for v in r.cookies() if v.startswith("carecall_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # plain HTTP here
    assert not re.search(r"<script>", c.get("/board").text)  # no inline script anywhere
    assert c.get("/board").header("Cache-Control") == "no-store"


def test_wrong_password_is_refused_and_logout_ends_the_session(site):
    c = Client(site["base"])
    r = c.login("coordinator", "not the password")
    assert r.status == 401 and "Wrong user name or password" in r.text and "carecall_session" not in c.jar
    assert c.login("coordinator").status == 303
    stolen = dict(c.jar)
    assert c.get("/board").status == 200
    assert c.post("/logout", {"csrf_token": c.csrf()}).status == 303
    replay = Client(site["base"])
    replay.jar = stolen  # the old cookie must be dead on the server, not just deleted in the browser
    assert replay.get("/board").status == 303


def test_failed_logins_lock_the_account_for_a_growing_delay_without_touching_others(site):
    r = cli(site["settings"], "user", "add", "victim", "--role", "finance", "--password-stdin",
            stdin="correct horse battery\n")
    assert r.returncode == 0, r.stderr
    c = Client(site["base"])
    for _ in range(4):  # three free failures, the fourth locks for 1 s
        assert c.login("victim", "wrong password!").status == 401
    r = c.login("victim")  # the right password is not even checked while locked
    assert r.status == 429 and "Too many failed log-ins" in r.text and r.header("Retry-After") == "1"
    assert "carecall_session" not in c.jar
    other = Client(site["base"])
    assert other.login("manager").status == 303  # another account from the same address is not affected
    deadline = time.monotonic() + 5
    while c.login("victim").status == 429 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "carecall_session" in c.jar


def test_login_without_its_form_token_is_refused(site):
    c = Client(site["base"])
    r = c.post("/login", {"username": "manager", "password": "correct horse battery"})
    assert r.status == 403 and "carecall_session" not in c.jar


def test_correction_form_validates_every_field_and_escapes_what_it_shows(site):
    c = Client(site["base"])
    c.login("coordinator")
    vid, wid = site["ids"]["V-X"], site["ids"]["1003"]
    token = c.csrf(f"/visits/{vid}")
    before = snapshot(site["factory"])
    bad = [
        {"action": "arrival", "worker_id": str(wid), "at": "2026-13-45T99:00", "reason": "forgot_in"},
        {"action": "arrival", "worker_id": "abc", "at": "2026-01-01T09:00", "reason": "forgot_in"},
        {"action": "arrival", "worker_id": str(wid), "at": "2026-01-01T09:00", "reason": "forgot_in",
         "note": "n" * 5000},
        {"action": "arrival", "worker_id": str(wid), "at": "2026-01-01T09:00", "reason": "not-a-code"},
        {"action": "explode", "reason": "other", "note": "x"},
        {"action": "cancel", "reason": "other", "note": ""},
        {"action": "arrival", "worker_id": str(wid), "at": "x" * 40, "reason": "forgot_in"},
    ]
    for fields in bad:
        r = c.post(f"/visits/{vid}/correct", {**fields, "csrf_token": token})
        assert r.status == 400, fields
        assert 'id="form-error"' in r.text
    assert snapshot(site["factory"]) == before
    # A reason "other" with script in the note: refused for another reason, shown back escaped.
    r = c.post(f"/visits/{vid}/correct", {"action": "departure", "worker_id": str(wid), "reason": "other",
                                         "at": "2000-01-01T09:00", "note": XSS, "csrf_token": token})
    assert r.status == 400 and XSS not in r.text and "&lt;script&gt;" in r.text
    # Accepted with the same note: it shows in the audit log, escaped.
    local = dt.datetime.now(site["settings"].tz).strftime("%Y-%m-%dT%H:%M")
    r = c.post(f"/visits/{vid}/correct", {"action": "arrival", "worker_id": str(wid), "at": local,
                                         "reason": "other", "note": XSS, "csrf_token": token})
    assert r.status == 303
    page = c.get(r.header("Location") or "")
    audit = page.text.split('id="audit-log"')[1]
    assert "manual arrival" in audit and "coordinator" in audit and "&lt;script&gt;" in audit
    assert XSS not in page.text


def test_finance_can_read_a_visit_but_not_correct_it(site):
    c = Client(site["base"])
    c.login("finance")
    vid = site["ids"]["V-LATER"]
    page = c.get(f"/visits/{vid}")
    assert page.status == 200 and "/correct" not in page.text
    token = c.csrf(f"/visits/{vid}")
    before = snapshot(site["factory"])
    r = c.post(f"/visits/{vid}/correct", {"action": "cancel", "reason": "resident_cancelled",
                                         "csrf_token": token})
    assert r.status == 403 and snapshot(site["factory"]) == before


def test_resident_edit_rejects_bad_fields_and_escapes_names(site):
    c = Client(site["base"])
    c.login("coordinator")
    token = c.csrf("/residents")
    r = c.post("/residents/new", {"csrf_token": token, "reference": "R9", "name": "", "postcode": "NOT A PC",
                                  "phone_code": "12", "lines": "12345", "active": "on"})
    assert r.status == 400
    for msg in ("name is required", "postcode is not a UK postcode", "phone_code must be 3 to 8 digits",
                "lines not a"):
        assert msg in r.text, msg
    r = c.post("/residents/new", {"csrf_token": token, "reference": "R9", "name": XSS, "postcode": "se6 9zz",
                                  "team": "North", "lines": "020 8698 9999", "active": "on"})
    assert r.status == 303
    listing = c.get("/residents")
    assert XSS not in listing.text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in listing.text
    r = c.post("/residents/search", {"csrf_token": token, "q": "script"})
    assert r.status == 200 and "R9" in r.text and "R001" not in r.text
    r = c.post("/residents/search", {"csrf_token": token, "q": "q" * 200})
    assert r.status == 400


def test_bad_csv_upload_changes_nothing_and_lists_every_bad_row(site):
    c = Client(site["base"])
    c.login("coordinator")
    token = c.csrf("/import")
    before = snapshot(site["factory"])
    data = (b"worker_number,name,pin,mobile\n2001,Ann Able,1234,\nabc,Bad Number,1234,\n2003,Bad Pin,12,\n"
            b"2004,<b>Bold</b>,9999,not a phone\n")
    r = c.upload("/import", {"csrf_token": token, "kind": "workers"}, "file", "workers.csv", data)
    assert r.status == 400
    assert "line 3: worker_number must be 1 to 8 digits" in r.text
    assert "line 4: pin must be exactly 4 digits" in r.text
    assert "line 5: mobile" in r.text and "nothing imported, 3 bad row(s)" in r.text
    assert snapshot(site["factory"]) == before
    r = c.upload("/import", {"kind": "workers"}, "file", "workers.csv", data)  # no CSRF token
    assert r.status == 403


def test_unmatched_call_can_be_linked_from_the_queue(site):
    c = Client(site["base"])
    c.login("coordinator")
    page = c.get("/calls/unmatched")
    assert "unknown line" in page.text and "*********000" in page.text  # caller masked to the last 3 digits
    assert "+442086980000" not in page.text
    token = c.csrf("/calls/unmatched")
    call, vid = site["ids"]["call"], site["ids"]["V-NOW"]
    r = c.post(f"/calls/{call}/link", {"csrf_token": token, "visit_id": str(vid), "worker_id": "x1"})
    assert r.status == 400
    r = c.post(f"/calls/{call}/link", {"csrf_token": token, "visit_id": str(vid),
                                       "worker_id": str(site["ids"]["1001"])})
    assert r.status == 303
    with unit_of_work(site["factory"]) as s:
        att = s.scalar(select(Attendance).where(Attendance.visit_id == vid))
        assert (att.arrival_method, att.arrival_verified) == ("phone", False)
        assert s.get(CallRecord, call).review_status == "linked"


def test_api_needs_a_token_and_returns_the_days_visits(site):
    out = cli(site["settings"], "user", "token", "finance", "--label", "roster")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    c = Client(site["base"])
    assert c.get("/api/v1/visits").status == 401
    c.bearer = "cct_" + "A" * 43
    assert c.get("/api/v1/visits").status == 401
    c.login("manager")  # a session cookie is not an API credential
    c.bearer = None
    assert c.get("/api/v1/visits").status == 401
    c.bearer = token
    r = c.get("/api/v1/visits")
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    refs = {v["visit_ref"]: v for v in json.loads(r.body)["visits"]}
    assert {"V-NOW", "V-LATER", "V-X"} <= set(refs)
    assert refs["V-LATER"]["state"] == "due" and refs["V-LATER"]["workers"][0]["worker_number"] == "1002"
    assert c.get("/api/v1/visits?day=31-12-2026").status == 400
    assert json.loads(c.get("/api/v1/attendances").body)["attendances"] is not None


def test_cli_refuses_a_short_password_and_an_unknown_role(site):
    r = cli(site["settings"], "user", "add", "shorty", "--role", "manager", "--password-stdin", stdin="short\n")
    assert r.returncode == 1 and "password must be" in r.stderr
    r = cli(site["settings"], "user", "add", "x", "--role", "admin", "--password-stdin", stdin="long enough pw\n")
    assert r.returncode == 2


def test_server_log_has_no_query_strings_or_names(site):
    c = Client(site["base"])
    c.login("manager")
    c.get("/board?day=2026-01-01&team=North")
    logs = "".join(p.read_text() for p in Path(site["tmp"]).glob("server-*.log"))
    assert '"GET /board"' in logs and "day=2026" not in logs and "Alice" not in logs


# --- invoices and timesheets -------------------------------------------------------------


def pdf_text(data: bytes, tmp: Path) -> str:
    path = tmp / "doc.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def test_invoices_preview_then_issue_with_confirmation_and_download(site):
    c = Client(site["base"])
    c.login("finance")
    period = site["ids"]["period"].isoformat()
    page = c.get("/invoices")
    assert page.status == 200 and f'value="{period}"' in page.text  # the period list offers valid starts
    page = c.get(f"/invoices?period={period}&funder=Lewisham")
    assert page.status == 200 and "Preview (draft, nothing stored)" in page.text and "PO-1001" in page.text
    # V-PAST: 45 phone-logged minutes on a weekday at £21.50/h = 45 × 21.50 / 60 = £16.13 (16.125 half-up).
    assert "£16.13" in page.text and 'id="issue-form"' in page.text
    draft = c.get(f"/invoices/draft?period={period}&funder=Lewisham&po=PO-1001&format=pdf")
    assert draft.status == 200 and draft.header("Content-Type") == "application/pdf"
    text = pdf_text(draft.body, site["tmp"])
    assert "DRAFT" in text and "PO-1001" in text and "16.13" in text
    rows = c.get(f"/invoices/draft?period={period}&funder=Lewisham&po=PO-1001&format=csv").text.splitlines()
    assert rows[0].startswith("invoice_number,funder,purchase_order") and len(rows) == 2
    assert rows[1].startswith("DRAFT,Lewisham,PO-1001,R001,V-PAST,1001,") and rows[1].endswith(",45,21.50,16.13")
    before = snapshot(site["factory"])
    token = c.csrf("/invoices")
    r = c.post("/invoices/issue", {"csrf_token": token, "period": period, "funder": "Lewisham"})  # no confirmation
    assert r.status == 400 and "tick the box" in r.text and snapshot(site["factory"]) == before
    r = c.post("/invoices/issue", {"csrf_token": token, "period": period, "funder": "Lewisham", "confirm": "yes"})
    assert r.status == 303 and "done=issued" in (r.header("Location") or "")
    page = c.get(r.header("Location") or "")
    assert "Issued: these invoices are now frozen" in page.text and "INV-000002" in page.text
    assert 'id="issue-form"' not in page.text
    with unit_of_work(site["factory"]) as s:
        assert s.scalar(select(func.count(Invoice.id))) == before[6] + 1  # invoices
    doc = c.get("/invoices/2")
    assert doc.status == 200 and "Invoice INV-000002" in doc.text
    csp = doc.header("Content-Security-Policy") or ""
    assert "script-src" not in csp and "default-src 'none'" in csp  # a document may style itself, never script
    csv_rows = c.get("/invoices/2?format=csv").text.splitlines()
    assert csv_rows[1].startswith("INV-000002,Lewisham,PO-1001,R001,V-PAST,1001,")
    # The issued period's CSV, from the frozen lines (billing.stored_csv), as the CLI writes it.
    period_rows = c.get(f"/invoices/csv?period={period}&funder=Lewisham").text.splitlines()
    assert period_rows[0].startswith("invoice_number,funder,purchase_order,resident_reference,visit_ref")
    assert [r for r in period_rows if r.startswith("INV-000002,")] == [
        r for r in csv_rows if r.startswith("INV-000002,")]
    assert any(r.startswith("INV-000002,Lewisham,PO-1001,R001,V-PAST,1001,") and r.endswith(",45,21.50,16.13")
               for r in period_rows)
    assert c.get("/invoices/999").status == 404
    # Issuing again changes nothing; the frozen one is what everyone downloads.
    r = c.post("/invoices/issue", {"csrf_token": token, "period": period, "funder": "Lewisham", "confirm": "yes"})
    assert r.status == 303 and "done=unchanged" in (r.header("Location") or "")


def test_invoice_requests_with_bad_periods_funders_and_formats_are_refused(site):
    c = Client(site["base"])
    c.login("manager")
    period = site["ids"]["period"]
    inside = (period + dt.timedelta(days=3)).isoformat()
    r = c.get(f"/invoices?period={inside}")
    assert r.status == 400 and "is not the start of a billing period" in r.text
    for url in ("/invoices?period=2026-02-30", "/invoices?period=" + "9" * 200, f"/invoices?period={period}"
                f"&funder=%3Cscript%3E", f"/invoices/draft?period={period}&funder=Lewisham&format=exe",
                "/invoices/draft?funder=Lewisham", f"/timesheets/view?resident=%3Cb%3E&period={period}",
                f"/invoices/csv?period={inside}"):
        r = c.get(url)
        assert r.status == 400, url
        assert "<script>" not in r.text and "<b>" not in r.text
    token = c.csrf("/invoices")
    before = snapshot(site["factory"])
    current = (period + dt.timedelta(days=28)).isoformat()
    for fields in ({"period": current, "confirm": "yes"},  # still running: invoices are issued in arrears
                   {"period": inside, "confirm": "yes"},
                   {"period": period.isoformat(), "funder": XSS, "confirm": "yes"},
                   {"period": "x" * 5000, "confirm": "yes"}):
        r = c.post("/invoices/issue", {"csrf_token": token, **fields})
        assert r.status == 400, fields
        assert XSS not in r.text
    assert snapshot(site["factory"]) == before
    coordinator = Client(site["base"])
    coordinator.login("coordinator")
    assert coordinator.get(f"/invoices/draft?period={period}&funder=Lewisham&po=PO-1001").status == 403


def test_timesheet_by_reference_in_html_pdf_csv_and_search_by_name_is_posted(site):
    c = Client(site["base"])
    c.login("finance")
    period = site["ids"]["period"].isoformat()
    r = c.get(f"/timesheets/view?resident=R001&period={period}&format=csv")
    assert r.status == 200 and "attachment" in (r.header("Content-Disposition") or "")
    lines = r.text.splitlines()
    assert lines[0].startswith("visit_ref,planned_start") and lines[1].startswith("V-PAST,")
    pdf = c.get(f"/timesheets/view?resident=R001&period={period}&format=pdf")
    assert pdf.header("Content-Type") == "application/pdf" and "V-PAST" in pdf_text(pdf.body, site["tmp"])
    assert c.get(f"/timesheets/view?resident=R404&period={period}").status == 404
    token = c.csrf("/timesheets")
    found = c.post("/timesheets/search", {"csrf_token": token, "q": "alice"})
    assert found.status == 200 and "/timesheets/view?resident=R001&amp;period=" in found.text
    found = c.post("/timesheets/search", {"csrf_token": token, "q": "script"})
    assert "R-XSS" in found.text and XSS not in found.text and "&lt;script&gt;" in found.text
    sheet = c.get(f"/timesheets/view?resident=R-XSS&period={period}")
    assert sheet.status == 200 and XSS not in sheet.text
    assert c.post("/timesheets/search", {"csrf_token": token, "q": "q" * 500}).status == 400
    assert c.post("/timesheets/search", {"q": "alice"}).status == 403  # no CSRF token


# --- reports -------------------------------------------------------------------------------


def test_reports_show_figures_against_targets_and_link_to_the_visits_behind_them(site):
    c = Client(site["base"])
    c.login("manager")
    period = site["ids"]["period"]
    day = (period + dt.timedelta(days=1)).isoformat()
    page = c.get(f"/reports?from={day}&to={day}")
    assert page.status == 200 and 'id="fig-missed"' in page.text and "<svg" in page.text
    missed = page.text.split('id="fig-missed"')[1].split("</tr>")[0]
    # Three visits due that day (V-PAST, V-MISS, V-PRIV); V-MISS has no attendance: 1 of 3, target at most 0.
    assert "1 of 3" in missed and "not met" in missed and f'href="/visits/{site["ids"]["V-MISS"]}"' in missed
    rows = c.get(f"/reports/figure/missed?from={day}&to={day}")
    assert rows.status == 200 and f'href="/visits/{site["ids"]["V-MISS"]}"' in rows.text and "page 1 of 1" in rows.text
    assert c.get(f"/reports/figure/missed?from={day}&to={day}&page=2").status == 404
    assert c.get("/reports").status == 200  # default: last full month
    for url in (f"/reports?from={day}&to=2020-01-01", "/reports?from=yesterday",
                "/reports?from=2025-01-01&to=2026-12-31",
                f"/reports/figure/missed?from={day}&to={day}&page=0", f"/reports?team={XSS}"):
        r = c.get(url)
        assert r.status == 400, url
        assert XSS not in r.text
    assert c.get(f"/reports/figure/nonsense?from={day}&to={day}").status == 404
    coordinator = Client(site["base"])
    coordinator.login("coordinator")
    assert coordinator.get("/reports").status == 403


# --- alerts --------------------------------------------------------------------------------


def test_alerts_list_most_severe_first_and_the_api_returns_them_with_a_token(site):
    c = Client(site["base"])
    c.login("finance")
    page = c.get("/alerts")
    assert page.status == 200 and XSS not in page.text and "&lt;script&gt;" in page.text
    order = [int(x) for x in re.findall(r'data-alert="(\d+)"', page.text)]
    assert order.index(site["ids"]["alert"]) < order.index(site["ids"]["late_alert"])  # no reply (5) before late (3)
    assert 'data-src="/alerts/events?status=open"' in page.text
    assert c.get("/alerts?status=bogus").status == 400
    assert c.get("/alerts/999999").status == 404
    detail = c.get(f"/alerts/{site['ids']['alert']}")
    assert detail.status == 200 and 'id="checklist"' in detail.text and "/acknowledge" not in detail.text  # finance
    token = cli(site["settings"], "user", "token", "finance", "--label", "alerts").stdout.strip()
    api = Client(site["base"])
    assert api.get("/api/v1/alerts").status == 401
    api.bearer = token
    r = api.get("/api/v1/alerts?status=open")
    body = json.loads(r.body)
    assert r.status == 200 and body["status"] == "open"
    kinds = {a["kind"]: a for a in body["alerts"]}
    assert kinds["no_reply"]["visit_ref"] == "V-NOW" and kinds["no_reply"]["resident_reference"] == "R001"
    assert kinds["no_reply"]["raised_at"].endswith("Z") and kinds["late"]["visit_ref"] == "V-X"
    assert api.get("/api/v1/alerts?status=nope").status == 400


def test_alert_is_acknowledged_checked_and_resolved_with_a_history_of_who_and_when(site):
    c = Client(site["base"])
    c.login("coordinator")
    aid = site["ids"]["alert"]
    token = c.csrf(f"/alerts/{aid}")
    before = snapshot(site["factory"])
    bad = [("check", {"step": "not_a_step"}), ("check", {"step": "nhs", "note": "n" * 5000}),
           ("resolve", {"note": ""}), ("resolve", {"note": "   "}), ("acknowledge", {"note": "x" * 1001}),
           ("check", {"step": "nhs", "note": "bad\x01control"})]
    for action, fields in bad:
        r = c.post(f"/alerts/{aid}/{action}", {"csrf_token": token, **fields})
        assert r.status == 400 and 'id="form-error"' in r.text, (action, fields)
    assert snapshot(site["factory"]) == before
    assert c.post("/alerts/999999/acknowledge", {"csrf_token": token}).status == 404
    r = c.post(f"/alerts/{aid}/acknowledge", {"csrf_token": token, "note": XSS})
    assert r.status == 303
    again = c.post(f"/alerts/{aid}/acknowledge", {"csrf_token": token})
    assert again.status == 400 and "already acknowledged by coordinator" in again.text
    r = c.post(f"/alerts/{aid}/check", {"csrf_token": token, "step": "door_time", "note": "waited 5 min"})
    assert r.status == 303
    assert c.post(f"/alerts/{aid}/check", {"csrf_token": token, "step": "neighbours"}).status == 303
    r = c.post(f"/alerts/{aid}/resolve", {"csrf_token": token, "note": "Resident was at day centre; confirmed"})
    assert r.status == 303
    page = c.get(f"/alerts/{aid}")
    history = page.text.split('id="alert-history"')[1]
    for what in ("raised", "acknowledged", "check", "resolved"):
        assert f"<td>{what}</td>" in history, what
    assert "coordinator" in history and "&lt;script&gt;" in history and XSS not in page.text
    assert "Resident was at day centre" in page.text and 'id="resolve-form"' not in page.text
    with unit_of_work(site["factory"]) as s:
        alert = s.get(Alert, aid)
        assert (alert.status, alert.acknowledged_by, alert.resolved_by) == ("resolved", "coordinator", "coordinator")
        steps = sorted(s.scalars(select(AlertCheck.step).where(AlertCheck.alert_id == aid)))
        assert steps == ["door_time", "neighbours"]
    r = c.post(f"/alerts/{aid}/resolve", {"csrf_token": token, "note": "again"})
    assert r.status == 400 and "already resolved" in r.text
    checklist_late = c.post(f"/alerts/{site['ids']['late_alert']}/check", {"csrf_token": token, "step": "nhs"})
    assert checklist_late.status == 400 and "the checklist is for no-reply alerts" in checklist_late.text
    finance = Client(site["base"])
    finance.login("finance")
    ftoken = finance.csrf("/alerts")
    assert finance.post(f"/alerts/{site['ids']['late_alert']}/acknowledge", {"csrf_token": ftoken}).status == 403
