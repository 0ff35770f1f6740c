"""Issue 14, the web half of the security items, against a real ``carecall run`` over TCP.

* item 6: a flood of anonymous form bodies (80,000 empty multipart parts each) on the
  login form, a 404 path and a logged-in route with a forged session cookie, while a real
  FastAGI check-in runs on the same server: the check-in completes in < 2 s (before: 35 s);
* item 10: money fields (package rates, weekly hours) are finance's and the manager's;
* item 11: ``POST /import`` without kind or file is a 400 with a message; a new resident
  with a phone code saves; the CSRF token is never taken from the query string; the login
  form refuses a cookie/form pair the server did not make;
* item 8: names with CR, LF or ESC are refused by the forms and the CSV import, and a CR
  already in the database cannot split the board's server-sent events.

One server per engine for the module, as tests/test_web_routes.py does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from agi.simulator import CallScript, simulate_blocking
from carecall.config import load_settings
from ivr.db import unit_of_work
from ivr.importer import import_csv
from ivr.models import CarePackage, Resident
from tests.conftest import fresh_database
from tests.helpers import VISITS_HEADER, context_for, factory_for, import_world, on_today, visit_row
from tests.sse import parse_event_stream
from tests.webclient import Client, add_users, running_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("hard")
    with fresh_database(request, request.param, tmp) as url:
        settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "carecall.key"),
                                 data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        now = dt.datetime.now(dt.UTC)
        rows = [visit_row(f"V-{w}", r, on_today(now, -5, settings), 60, w, settings=settings)
                for w, r in (("1001", "R001"), ("1002", "R002"), ("1003", "R003"), ("1004", "R-CR"))]
        import_world(settings, factory)
        with unit_of_work(factory) as s:
            s.add(Resident(reference="R-CR", name="Ann", funder="Lewisham", team=""))
        report = import_csv(factory, "visits", "\n".join([VISITS_HEADER, *rows]) + "\n", context_for(settings))
        assert report.ok, report.errors
        with unit_of_work(factory) as s:  # a CR in a name, as an import before the fix let it in
            s.scalar(select(Resident).where(Resident.reference == "R-CR")).name = \
                "Ann\revent: journal\rdata: <b id=spoof>x</b>\r\rEnd"
        add_users(settings)
        try:
            with running_server(settings, tmp, "[web]\nlogin_ip_free_attempts = 1000\n[alerts]\nenabled = false\n"
                                ) as base:
                yield {"settings": settings, "base": base, "factory": factory}
        finally:
            factory.kw["bind"].dispose()


def client(site: dict[str, Any], role: str | None = None) -> Client:
    c = Client(site["base"])
    if role:
        assert c.login(role).status == 303
    return c


# --- item 6: anonymous bodies cannot stall calls -------------------------------------


def _multipart_flood(parts: int) -> tuple[bytes, str]:
    boundary = "x" * 16
    body = (f"--{boundary}\r\n\r\n\r\n" * parts + f"--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _send_raw(port: int, path: str, body: bytes, ctype: str, cookie: str = "") -> int | None:
    """POST over a raw socket; the status line's code, or None if the server cut us off first."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{cookie}Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(head + body)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


def test_a_flood_of_anonymous_form_parts_leaves_a_concurrent_check_in_under_two_seconds(site):
    base = site["base"]
    port = int(base.rsplit(":", 1)[1])
    # A first call warms the server up (effect worker process, database connections): the
    # figure below is a call's time under the flood, not the cost of the server's first call.
    warm = simulate_blocking("127.0.0.1", base.agi_port, CallScript(
        callerid="02086989922", digits=["1002", "2345"], script="checkin", port=base.agi_port,
        uniqueid=f"warm-{uuid.uuid4().hex[:8]}"), timeout=60)
    assert warm.error is None and warm.server_hung_up, warm.transcript
    body, ctype = _multipart_flood(80_000)
    assert len(body) < 5 * 1024 * 1024  # under the old 5 MiB cap: the size limit alone did not help
    forged = "Cookie: carecall_session=forged-but-present\r\n"
    targets = [("/login", "")] * 7 + [("/no/such/page", "")] * 4 + [("/import", forged)] * 4  # 15 at once
    statuses: list[int | None] = []
    threads = [threading.Thread(target=lambda p=p, c=c: statuses.append(_send_raw(port, p, body, ctype, c)))
               for p, c in targets]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the bodies are in (and, before the fix, being parsed on the reactor)
    started = time.monotonic()
    call = CallScript(callerid="02086989911", digits=["1001", "1234"], script="checkin", port=base.agi_port,
                      uniqueid=f"flood-{uuid.uuid4().hex[:8]}")
    result = simulate_blocking("127.0.0.1", base.agi_port, call, timeout=60)
    elapsed = time.monotonic() - started
    for t in threads:
        t.join(120)
    assert result.error is None and result.server_hung_up, result.transcript
    assert 'STREAM FILE agent-loginok ""' in [c for c, _ in result.transcript]
    assert elapsed < 2.0, f"check-in took {elapsed:.1f} s during the flood"  # before the fix: 35 s
    # Anonymous bodies over 8 KiB are refused from their headers (413); the forged cookie earns
    # the full 5 MiB, is read into a buffer (not parsed) and the session lookup refuses it (401).
    assert sorted(statuses, key=str) == sorted([413] * 11 + [401] * 4, key=str), statuses


def test_a_logged_in_form_with_too_many_parts_is_refused_with_413_and_changes_nothing(site):
    c = client(site, "coordinator")
    body, ctype = _multipart_flood(5_000)
    r = c.request("POST", "/import", body, ctype)
    assert r.status == 413 and "more than 500 parts" in r.text


# --- item 11: CSRF ----------------------------------------------------------------------


def test_the_csrf_token_in_the_query_string_is_refused_but_in_the_body_or_header_accepted(site):
    c = client(site, "coordinator")
    token = c.csrf()
    r = c.request("POST", f"/residents/search?csrf_token={token}", b"q=Brown", "application/x-www-form-urlencoded")
    assert r.status == 403  # before the fix: 200 (Twisted merged the query into the form)
    r = c.post("/residents/search", {"q": "Brown", "csrf_token": token})
    assert r.status == 200 and "Alice Brown" in r.text
    conn = http.client.HTTPConnection(c.host, int(c.port), timeout=20)
    conn.request("POST", "/residents/search", body=b"q=Brown", headers={
        "Cookie": "; ".join(f"{k}={v}" for k, v in c.jar.items()), "X-CSRF-Token": token,
        "Content-Type": "application/x-www-form-urlencoded"})
    assert conn.getresponse().status == 200


def test_the_login_form_refuses_a_cookie_and_form_pair_the_server_did_not_make(site):
    c = Client(site["base"])
    c.jar["carecall_login_csrf"] = "attacker-chosen-value-000000000000.1900000000"
    r = c.post("/login", {"login_csrf": "attacker-chosen-value-000000000000.1900000000",
                          "username": "coordinator", "password": "correct horse battery"})
    assert r.status == 403 and "carecall_session" not in c.jar  # before the fix: logged in (303)
    r = c.post("/login", {"login_csrf": c.jar["carecall_login_csrf"], "username": "coordinator",
                          "password": "correct horse battery"})
    assert r.status == 403  # the cookie's own value in the form is not the token either
    assert c.login("coordinator").status == 303  # the server's own pair works


# --- item 11: import and residents ---------------------------------------------------------


def test_import_without_kind_or_file_is_a_400_with_a_message(site):
    c = client(site, "coordinator")
    token = c.csrf("/import")
    r = c.post("/import", {"csrf_token": token})
    assert r.status == 400 and "choose what the file holds" in r.text  # before the fix: 500
    r = c.upload("/import", {"csrf_token": token}, "file", "w.csv", b"worker_number,name,pin,mobile\n")
    assert r.status == 400 and "choose what the file holds" in r.text
    r = c.post("/import", {"csrf_token": token, "kind": "workers"})
    assert r.status == 400 and "choose a CSV file to upload" in r.text


def test_a_new_resident_with_a_phone_code_is_saved(site):
    c = client(site, "coordinator")
    ref = f"R-{uuid.uuid4().hex[:6]}"
    r = c.post("/residents/new", {"csrf_token": c.csrf(), "reference": ref, "name": "Gil Stone", "phone_code": "7771",
                                  "active": "on"})
    assert r.status == 303, r.text  # before the fix: 400 "already belongs to resident" itself
    with site["factory"]() as s:
        assert s.scalar(select(Resident.phone_code).where(Resident.reference == ref)) == "7771"
    r = c.post("/residents/new", {"csrf_token": c.csrf(), "reference": ref + "b", "name": "Hal Stone",
                                  "phone_code": "7771"})
    assert r.status == 400 and f"already belongs to resident {ref}" in r.text


# --- item 8: control characters ------------------------------------------------------------


def test_forms_and_the_csv_import_refuse_line_breaks_and_escapes_in_names(site):
    c = client(site, "coordinator")
    for bad in ("Ann\rEvil", "Ann\nEvil", "Ann\x1b[2JEvil"):
        r = c.post("/residents/new", {"csrf_token": c.csrf(), "reference": f"R-{uuid.uuid4().hex[:6]}", "name": bad})
        assert r.status == 400 and ("one line" in r.text or "control character" in r.text), bad
    # A free-text note (a textarea) may span lines; an ESC is refused there too.
    ok = c.post("/residents/new", {"csrf_token": c.csrf(), "reference": f"R-{uuid.uuid4().hex[:6]}", "name": "Ivy",
                                   "access_notes": "Side gate.\r\nRing twice."})
    assert ok.status == 303, ok.text
    r = c.post("/residents/new", {"csrf_token": c.csrf(), "reference": f"R-{uuid.uuid4().hex[:6]}", "name": "Ivy",
                                  "access_notes": "Side\x1b[2J gate"})
    assert r.status == 400 and "control character (U+001B)" in r.text
    data = (b'reference,name,landline,address,postcode,funder,phone_code\n'
            b'R-OK1,Ok Name,,,,,\n"R-BAD1","Ann\rEvil",,,,,\nR-BAD2,Esc\x1bName,,,,,\n')
    r = c.upload("/import", {"csrf_token": c.csrf("/import"), "kind": "residents"}, "file", "r.csv", data)
    assert r.status == 400
    assert re.search(r"line \d: name must be on one line", r.text), r.text
    assert re.search(r"line \d: name contains a control character \(U\+001B\)", r.text), r.text
    with site["factory"]() as s:
        assert s.scalar(select(Resident.id).where(Resident.reference == "R-OK1")) is None  # all or nothing


def test_a_carriage_return_already_in_a_name_cannot_split_the_board_events(site):
    c = client(site, "coordinator")
    conn = http.client.HTTPConnection(c.host, int(c.port), timeout=20)
    conn.request("GET", "/board/events", headers={"Cookie": "; ".join(f"{k}={v}" for k, v in c.jar.items())})
    resp = conn.getresponse()
    assert resp.status == 200
    raw = b""
    deadline = time.monotonic() + 15
    while b"event: board" not in raw or not raw.endswith(b"\n\n"):
        raw += resp.read1(65536)
        assert time.monotonic() < deadline, raw[-500:]
    conn.close()
    events = parse_event_stream(raw.decode())  # the browser's rules: CR, LF and CRLF all end a line
    assert [e[0] for e in events if e[0] != "message"] == ["journal", "board"] or \
        [e[0] for e in events if e[0] != "message"] == ["board"], events
    board = next(data for name, data in events if name == "board")
    assert board.count("<tr") >= 4 and "event: journal" in board  # the name is text inside the rows
    assert "spoof" not in "".join(d for n, d in events if n == "journal")


# --- item 10: money ---------------------------------------------------------------------------


def _package(site: dict[str, Any]) -> tuple[int, Decimal]:
    with site["factory"]() as s:
        p = s.scalar(select(CarePackage).where(CarePackage.purchase_order == "PO-1002"))
        return p.id, p.hourly_rate


def _package_form(c: Client, pid: int, **changes: str) -> dict[str, str]:
    page = c.get(f"/packages/{pid}").text
    values = dict(re.findall(r'<input[^>]*? name="(\w+)" value="([^"]*)"', page))
    return {"csrf_token": c.csrf(f"/packages/{pid}"), **values, **changes}


def test_a_coordinator_cannot_change_rates_or_hours_but_finance_can(site):
    pid, rate = _package(site)
    c = client(site, "coordinator")
    page = c.get(f"/packages/{pid}").text
    assert re.search(r'name="hourly_rate" value="[^"]*" maxlength="12" disabled', page)  # shown read-only
    form = _package_form(c, pid, hourly_rate="999999.99")
    r = c.post(f"/packages/{pid}", form)
    assert r.status == 403 and "set by finance or a manager" in r.text  # before the fix: 303, saved
    r = c.post(f"/packages/{pid}", _package_form(c, pid, weekly_hours="168"))
    assert r.status == 403
    r = c.post("/packages/new", {"csrf_token": c.csrf(), "resident_reference": "R002", "purchase_order": "PO-X",
                                 "funder": "Lewisham", "weekly_hours": "1", "hourly_rate": "1", "weekend_rate": "1",
                                 "bank_holiday_rate": "1", "start_date": "2026-01-05"})
    assert r.status == 403
    assert _package(site)[1] == rate
    # The other details a coordinator may still change (the money fields are not sent: disabled).
    form = {k: v for k, v in _package_form(c, pid, funder="Lewisham Council").items()
            if k not in ("weekly_hours", "hourly_rate", "weekend_rate", "bank_holiday_rate")}
    assert c.post(f"/packages/{pid}", form).status == 303
    f = client(site, "finance")
    assert f.post(f"/packages/{pid}", _package_form(f, pid, hourly_rate="22.75")).status == 303
    assert _package(site)[1] == Decimal("22.75")
    with site["factory"]() as s:
        assert s.scalar(select(CarePackage.funder).where(CarePackage.id == pid)) == "Lewisham Council"


def test_a_packages_csv_from_a_coordinator_is_refused_and_from_finance_imported(site):
    data = (b"resident_reference,purchase_order,funder,weekly_hours,hourly_rate,weekend_rate,bank_holiday_rate,"
            b"start_date,end_date\nR004,PO-1004,Lewisham,3,999999.99,23.00,32.25,2026-03-02,\n")
    c = client(site, "coordinator")
    r = c.upload("/import", {"csrf_token": c.csrf("/import"), "kind": "packages"}, "file", "p.csv", data)
    assert r.status == 403 and "only finance or a manager may import it" in r.text
    with site["factory"]() as s:
        assert s.scalar(select(CarePackage.hourly_rate).where(CarePackage.purchase_order == "PO-1004")) == \
            Decimal("21.50")
    f = client(site, "finance")
    r = f.upload("/import", {"csrf_token": f.csrf("/import"), "kind": "packages"}, "file", "p.csv",
                 data.replace(b"999999.99", b"21.60"))
    assert r.status == 200, r.text
    r = f.upload("/import", {"csrf_token": f.csrf("/import"), "kind": "visits"}, "file", "v.csv", b"x")
    assert r.status == 403  # finance does not import the coordinators' files
