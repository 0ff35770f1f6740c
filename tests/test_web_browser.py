"""End to end in real headless Chromium against a real ``carecall run`` server (SQLite).

One browser for the module. The board must change from "due" to "on site" without a
reload when a worker rings in (a real FastAGI call to the server's AGI port); a no-reply
call must put its alert on the alerts page without a reload, where it is acknowledged and
its checklist ticked; the correction form must land in the audit log; a bad CSV must list
its errors.
Screenshots go to tests/browser.SHOTS (docs/screenshots/ with CARECALL_SCREENSHOT_DIR=docs/screenshots).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from agi.simulator import CallScript, SimResult, simulate_blocking
from carecall.config import load_settings
from ivr.db import unit_of_work
from ivr.models import Attendance, Visit
from scheduler.models import Alert, AlertCheck
from tests.browser import MIN_WAIT, SHOTS, settled_wait, state_of, text_of
from tests.conftest import fresh_database
from tests.helpers import VISITS_HEADER, factory_for, import_world, on_today, visit_row
from tests.webclient import PASSWORD, add_users, running_server

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("browser")
    with fresh_database(request, request.param, tmp) as url:
        settings = load_settings(None, db_url=url, environ={},
                                 secret_file=str(tmp / "carecall.key"), data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        rows = [visit_row("B-LIVE", "R001", on_today(now, -2, settings), 45, "1001", "yes", settings=settings),
                visit_row("B-FIX", "R002", now - dt.timedelta(minutes=50), 30, "1002", settings=settings),
                visit_row("B-LATER", "R003", on_today(now, 60, settings), 30, "1003", settings=settings),
                visit_row("B-TWO", "R004", now - dt.timedelta(minutes=20), 60, "1003;1004", settings=settings),
                # Ended an hour ago with nobody there: the scheduler's catch-up pass raises "missed" at start.
                visit_row("B-MISS", "R003", now - dt.timedelta(minutes=90), 30, "1003", settings=settings)]
        import_world(settings, factory, "\n".join([VISITS_HEADER, *rows]) + "\n")
        add_users(settings)
        with unit_of_work(factory) as s:
            ids = {v.visit_ref: v.id for v in s.scalars(select(Visit))}
        try:
            with running_server(settings, tmp, '[web]\npoll_seconds = 1.0\n') as base:
                yield {"settings": settings, "factory": factory, "base": base, "ids": ids, "tmp": tmp}
        finally:
            factory.kw["bind"].dispose()





def chromium() -> Iterator[webdriver.Chrome]:
    """Headless Chromium at 1366×768 with a throw-away profile (the browser modules' shared setup)."""
    profile = tempfile.mkdtemp(prefix="carecall-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1366,768", "--lang=en-GB"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    yield from chromium()


# Never sleep, never hold an element across a page change: every wait is for a condition,
# and an element found in a page that is being replaced (a form post, a live update) is
# found again rather than read stale.
def wait(browser: webdriver.Chrome, timeout: float = MIN_WAIT) -> WebDriverWait:
    return settled_wait(browser, timeout)


def mark_page(browser: webdriver.Chrome) -> None:
    """Tag the current document, so that :func:`wait_new_page` can tell when another replaced it.

    A marker in ``window`` rather than an element handle: asking chromedriver about an
    element of a document being torn down fails with errors that are not "stale" (seen:
    "Node with given id does not belong to the document")."""
    browser.execute_script("window.__carecallOldPage = true;")


def wait_new_page(browser: webdriver.Chrome, timeout: float = MIN_WAIT) -> None:
    # While the old document goes away a script call itself may fail: ignore and ask again.
    WebDriverWait(browser, timeout, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return window.__carecallOldPage === undefined && "
                                   "document.readyState === 'complete';"))


def click_to_new_page(browser: webdriver.Chrome, element: WebElement, timeout: float = MIN_WAIT) -> None:
    """Click something that loads a new page, and return once the new page has replaced the old."""
    mark_page(browser)
    element.click()
    wait_new_page(browser, timeout)


def login(browser: webdriver.Chrome, base: str, user: str) -> None:
    browser.delete_all_cookies()
    browser.get(base + "/login")
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    click_to_new_page(browser, browser.find_element(By.ID, "login-button"))
    try:
        wait(browser).until(lambda d: d.current_url.endswith("/board"))
    except TimeoutException:
        page = browser.execute_script("return document.body ? document.body.innerText : ''") or ""
        raise AssertionError(f"log-in as {user} did not reach the board: at {browser.current_url}: "
                             f"{page[:400]!r}") from None


def state_colour(browser: webdriver.Chrome, visit_id: int) -> str:
    return browser.execute_script(
        "const e = document.querySelector(`tr[data-visit='${arguments[0]}'] .state`);"
        "return getComputedStyle(e).backgroundColor;", visit_id)


def ring_from_home(world: dict[str, Any], line: str, worker: str, pin: str) -> SimResult:
    """A real FastAGI call to the server under test, as Asterisk would make it from the resident's line."""
    call = CallScript(callerid=line, digits=[worker, pin], script="checkin", port=world["base"].agi_port)
    result = simulate_blocking("127.0.0.1", world["base"].agi_port, call, timeout=20)
    assert result.error is None and result.server_hung_up, result.transcript
    return result


def test_board_turns_due_to_on_site_live_without_reload(world, browser):
    login(browser, world["base"], "coordinator")
    vid = world["ids"]["B-LIVE"]
    today = dt.datetime.now(world["settings"].tz).date()
    assert browser.find_element(By.ID, "board-day").text.endswith(f"({today:%d/%m/%Y})")  # UK order, not US
    assert state_of(browser, vid) == "due"
    wait(browser).until(lambda d: "live" in (text_of(d, "#live") or ""))
    browser.execute_script("window.__sameDocument = 'yes';")
    ring_from_home(world, "02086989911", "1001", "1234")  # R001's landline, worker 1001 and PIN
    wait(browser).until(lambda d: state_of(d, vid) == "on site")
    assert browser.execute_script("return window.__sameDocument;") == "yes"  # no reload happened
    assert state_of(browser, world["ids"]["B-LATER"]) == "due"
    assert state_colour(browser, vid) != state_colour(browser, world["ids"]["B-LATER"])  # colour as well as words
    with unit_of_work(world["factory"]) as s:  # the call itself was stored, from the home line
        att = s.scalar(select(Attendance).where(Attendance.visit_id == vid))
        assert (att.arrival_method, att.arrival_verified) == ("phone", True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "board.png"))


def test_correction_appears_in_the_audit_log(world, browser):
    login(browser, world["base"], "coordinator")
    vid = world["ids"]["B-FIX"]
    browser.get(f"{world['base']}/visits/{vid}")
    Select(browser.find_element(By.ID, "time-action")).select_by_value("arrival")
    at = (dt.datetime.now(world["settings"].tz) - dt.timedelta(minutes=45)).strftime("%Y-%m-%dT%H:%M")
    field = browser.find_element(By.ID, "time-at")
    browser.execute_script("arguments[0].value = arguments[1];", field, at)
    Select(browser.find_element(By.ID, "time-reason")).select_by_value("line_down")
    browser.find_element(By.ID, "time-note").send_keys("BT fault reported")
    click_to_new_page(browser, browser.find_element(By.ID, "time-submit"))
    wait(browser).until(EC.presence_of_element_located((By.ID, "form-done")))
    audit = browser.find_element(By.ID, "audit-log").text
    assert "manual arrival" in audit and "coordinator" in audit and "Resident's phone line down" in audit
    assert "BT fault reported" in audit
    assert "manual" in browser.find_element(By.ID, "timeline").text
    browser.save_screenshot(str(SHOTS / "visit.png"))


def test_bad_csv_upload_lists_every_error(world, browser):
    login(browser, world["base"], "coordinator")
    bad = world["tmp"] / "visits-bad.csv"
    bad.write_text(VISITS_HEADER + "\nX1,R999,2026-01-01 09:00,2026-01-01 10:00,1001,no\n"
                   "X2,R001,2026-01-01 09:00,2026-01-01 08:00,1001,no\nX3,R001,2026-01-01 09:00,"
                   "2026-01-01 09:30,9999,no\n")
    browser.get(world["base"] + "/import")
    Select(browser.find_element(By.ID, "import-kind")).select_by_value("visits")
    browser.find_element(By.ID, "import-file").send_keys(str(bad))
    click_to_new_page(browser, browser.find_element(By.ID, "import-submit"))
    wait(browser).until(EC.presence_of_element_located((By.ID, "import-errors")))
    errors = browser.find_element(By.ID, "import-errors").text.splitlines()
    assert errors == ["line 2: resident_reference 'R999' is not a known resident",
                      "line 3: planned_end must be after planned_start",
                      "line 4: unknown worker number(s): 9999"]
    assert "nothing imported" in browser.find_element(By.ID, "import-summary").text


def alert_ids(browser: webdriver.Chrome, kind: str) -> list[int]:
    return browser.execute_script(
        "return [...document.querySelectorAll(`tr.alert-${arguments[0]}`)].map(e => +e.dataset.alert);", kind)


def test_no_reply_call_raises_an_alert_live_and_the_coordinator_acknowledges_and_checks_it(world, browser):
    login(browser, world["base"], "coordinator")
    browser.get(world["base"] + "/alerts")
    wait(browser).until(lambda d: "live" in (text_of(d, "#live") or ""))
    assert alert_ids(browser, "no_reply") == []
    browser.execute_script("window.__sameDocument = 'yes';")
    # Worker 1004 (no mobile on file, caller ID withheld) cannot get an answer at B-TWO's door.
    call = CallScript(callerid=None, digits=["1004", "4567"], script="noreply", port=world["base"].agi_port)
    result = simulate_blocking("127.0.0.1", world["base"].agi_port, call, timeout=20)
    assert result.error is None and result.server_hung_up, result.transcript
    wait(browser).until(lambda d: alert_ids(d, "no_reply"))
    assert browser.execute_script("return window.__sameDocument;") == "yes"  # appeared without a reload
    [aid] = alert_ids(browser, "no_reply")
    wait(browser, 20).until(lambda d: alert_ids(d, "missed"))  # B-MISS, by the scheduler's own pass
    first = browser.execute_script("return +document.querySelector('#alert-rows tr').dataset.alert;")
    assert first == aid  # no reply is the most severe
    browser.get(f"{world['base']}/alerts/{aid}")
    wait(browser).until(EC.element_to_be_clickable((By.ID, "ack-note"))).send_keys("Ringing next of kin")
    click_to_new_page(browser, browser.find_element(By.ID, "ack-submit"))
    wait(browser).until(EC.presence_of_element_located((By.ID, "form-done")))
    assert (text_of(browser, "#alert-status") or "").lower() == "acknowledged"
    click_to_new_page(browser, wait(browser).until(EC.element_to_be_clickable((By.ID, "check-door_time"))))
    wait(browser).until(lambda d: "coordinator" in (text_of(d, "tr[data-step='door_time']") or ""))
    history = text_of(browser, "#alert-history") or ""
    assert "acknowledged" in history and "Ringing next of kin" in history and "check" in history
    with unit_of_work(world["factory"]) as s:
        alert = s.get(Alert, aid)
        assert (alert.kind, alert.status, alert.acknowledged_by) == ("no_reply", "acknowledged", "coordinator")
        assert s.get(Visit, alert.visit_id).visit_ref == "B-TWO"
        assert list(s.scalars(select(AlertCheck.step).where(AlertCheck.alert_id == aid))) == ["door_time"]
    browser.save_screenshot(str(SHOTS / "alerts.png"))
