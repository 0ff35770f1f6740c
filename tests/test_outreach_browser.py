"""The family and council views in real headless Chromium against a real ``carecall run`` server.

A manager invites a contact from the office page; the invitation arrives at a real SMTP
server on loopback; the family member opens the link, sets a password, sees the week and
sends feedback, which the coordinator finds in the queue and answers. A commissioner sees
their funder's week ahead and figures. Every page is shot at 1366×768 and 400 px wide
(docs/screenshots/outreach-*.png) for docs/outreach.md.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from sqlalchemy import select

from carecall.config import load_settings
from ivr.db import unit_of_work
from ivr.models import Attendance, Resident, ResidentContact, Visit, Worker
from outreach.models import Feedback
from tests.browser import SHOTS, page_at, settled_wait, text_of
from tests.conftest import fresh_database
from tests.helpers import VISITS_HEADER, factory_for, import_world, visit_row
from tests.test_alerts_servers import SmtpServer
from tests.test_web_browser import browser  # noqa: F401 - the module's one Chromium
from tests.webclient import PASSWORD, add_users, cli, running_server

pytestmark = pytest.mark.browser
WAIT = 30


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("outreach-browser")
    with fresh_database(request, request.param, tmp) as url, SmtpServer() as smtp:
        settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "carecall.key"),
                                 data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        tz = settings.tz
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        today = now.astimezone(tz).date()
        monday = today - dt.timedelta(days=today.weekday())
        at = lambda days, hh, mm=0: dt.datetime.combine(monday + dt.timedelta(days=days), dt.time(hh, mm), tz)  # noqa: E731
        rows = []
        for day in range(7):
            rows.append(visit_row(f"W-{day}-AM", "R001", at(day, 8), 45, "1001", settings=settings))
            rows.append(visit_row(f"W-{day}-PM", "R001", at(day, 17, 30), 30, "1002", settings=settings))
        rows += [visit_row("W-OTHER", "R002", at(0, 9), 30, "1002", settings=settings),
                 visit_row("W-AHEAD", "R004", now + dt.timedelta(days=1), 60, "1001", settings=settings)]
        import_world(settings, factory, "\n".join([VISITS_HEADER, *rows]) + "\n")
        add_users(settings)
        with unit_of_work(factory) as s:
            rid = s.scalar(select(Resident.id).where(Resident.reference == "R001"))
            s.add(ResidentContact(resident_id=rid, name="Jane Brown", relation_note="daughter",
                                  email="jane@family.test", notify_missed=True))
            workers = {w.worker_number: w.id for w in s.scalars(select(Worker))}
            for v in s.scalars(select(Visit).where(Visit.resident_id == rid, Visit.planned_end <= now)):
                if v.visit_ref == "W-0-PM":
                    continue  # nobody came: "did not happen"
                s.add(Attendance(visit_id=v.id, resident_id=rid, worker_id=workers["1001" if "AM" in v.visit_ref
                                                                                    else "1002"],
                                 arrival_method="phone", arrival_at=v.planned_start + dt.timedelta(minutes=3),
                                 departure_method="phone", departure_at=v.planned_end - dt.timedelta(minutes=2)))
        config = (f"[web]\nlogin_ip_free_attempts = 1000\n[alerts]\nenabled = false\nsmtp_port = {smtp.port}\n"
                  f'[notices]\nprovider_name = "Riverside Care"\noffice_phone = "020 7946 0000"\n')
        try:
            with running_server(settings, tmp, config) as base:
                yield {"settings": settings, "factory": factory, "base": base, "smtp": smtp, "rid": rid,
                       "engine": request.param}
        finally:
            factory.kw["bind"].dispose()


def shoot(driver: webdriver.Chrome, world: dict[str, Any], name: str) -> None:
    """The page at 1366×768 and at 400 px wide (docs use the SQLite run's shots)."""
    if world["engine"] != "sqlite":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"outreach-{name}.png"))
    driver.set_window_size(400, 800)
    try:
        settled_wait(driver, WAIT).until(lambda d: d.execute_script("return window.innerWidth") <= 400)
        driver.save_screenshot(str(SHOTS / f"outreach-{name}-400.png"))
    finally:
        driver.set_window_size(1366, 768)


def login(driver: webdriver.Chrome, base: str, user: str, password: str = PASSWORD, lands: str = "/board") -> None:
    driver.delete_all_cookies()
    driver.get(base + "/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-button").click()
    settled_wait(driver, WAIT).until(lambda d: page_at(d, lands))


def test_family_member_joins_from_the_invitation_sees_the_week_and_sends_feedback(world, browser):  # noqa: F811
    base, rid = world["base"], world["rid"]
    login(browser, base, "manager")
    browser.get(f"{base}/residents/{rid}/outreach")
    browser.find_element(By.CSS_SELECTOR, "button.invite").click()
    settled_wait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "done"))
    assert "Invitation sent." in browser.find_element(By.ID, "done").text
    assert "sent, expires" in browser.find_element(By.ID, "invites").text
    shoot(browser, world, "office-resident")
    (msg,) = [m for m in world["smtp"].messages if m["To"] == "jane@family.test"]
    # The link is on the site's public address (base_url); this server listens on a test port.
    path = re.search(r"http://127\.0\.0\.1:8080(/family/join\?token=[A-Za-z0-9_-]+)", msg.get_content()).group(1)
    link = base + path

    browser.delete_all_cookies()
    browser.get(link)
    settled_wait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "join-button"))
    shoot(browser, world, "join")
    browser.find_element(By.ID, "username").send_keys("jane.brown")
    browser.find_element(By.ID, "password").send_keys("jane's own password")
    browser.find_element(By.ID, "password2").send_keys("jane's own password")
    browser.find_element(By.ID, "join-button").click()
    settled_wait(browser, WAIT).until(lambda d: page_at(d, f"/family/residents/{rid}"))
    week = browser.find_element(By.ID, "week")
    days = week.find_elements(By.CSS_SELECTOR, "section.day")
    assert len(days) == 7
    states = browser.execute_script("return [...document.querySelectorAll('#week .visit')].map(e => e.dataset.state);")
    assert len(states) == 14  # R001's fourteen visits, none of R002's
    today = dt.datetime.now(world["settings"].tz)
    if today.weekday() > 0 or today.hour >= 18:  # Monday's evening visit has ended with nobody there
        assert "missed" in states
    assert "Alice" in browser.find_element(By.TAG_NAME, "h1").text
    shoot(browser, world, "family-week")

    browser.find_element(By.LINK_TEXT, "Feedback").click()
    settled_wait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "feedback-form"))
    browser.find_element(By.ID, "kind-compliment").click()
    browser.find_element(By.ID, "message").send_keys("Thank you for being so patient with Mum on Monday.")
    browser.find_element(By.ID, "send-feedback").click()
    settled_wait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "sent"))
    assert "Thank you for being so patient" in browser.find_element(By.ID, "my-feedback").text
    shoot(browser, world, "family-feedback")

    # The office finds it in the queue and replies; the family sees the reply.
    login(browser, base, "coordinator")
    browser.get(f"{base}/feedback")
    settled_wait(browser, WAIT).until(
        lambda d: "Thank you for being so patient" in (text_of(d, "#feedback-queue") or ""))
    shoot(browser, world, "office-queue")
    browser.find_element(By.CSS_SELECTOR, "#feedback-queue td.time a").click()
    settled_wait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "reply-form"))
    Select(browser.find_element(By.ID, "status")).select_by_value("closed")
    browser.find_element(By.ID, "reply").send_keys("Thank you, we have passed this on to Wendy.")
    browser.find_element(By.ID, "save-reply").click()
    settled_wait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "done"))
    assert browser.find_element(By.ID, "fb-status").text == "Closed"
    shoot(browser, world, "office-feedback-item")
    browser.get(f"{base}/outreach")
    settled_wait(browser, WAIT).until(lambda d: "R001" in (text_of(d, "#outreach") or ""))
    shoot(browser, world, "office-list")
    with world["factory"]() as s:
        (fb,) = s.scalars(select(Feedback))
        assert (fb.resident_id, fb.kind, fb.status, fb.replied_by) == (rid, "compliment", "closed", "coordinator")

    login(browser, base, "jane.brown", "jane's own password", lands="/family/residents/")
    browser.get(f"{base}/family/feedback")
    settled_wait(browser, WAIT).until(lambda d: "passed this on" in (text_of(d, "#my-feedback") or ""))
    # Another resident's page, as this family user: not found.
    browser.get(f"{base}/family/residents/{rid + 1}")
    assert "Not found" in browser.find_element(By.TAG_NAME, "main").text


def test_commissioner_sees_the_funders_week_ahead_and_figures(world, browser):  # noqa: F811
    r = cli(world["settings"], "user", "add", "x", "--role", "commissioner", "--password-stdin", stdin=PASSWORD)
    assert r.returncode != 0  # outside users are made only with their scope, on the office page
    base = world["base"]
    login(browser, base, "manager")
    browser.get(f"{base}/council-users")
    browser.find_element(By.NAME, "username").send_keys("lewisham.council")
    Select(browser.find_element(By.NAME, "funder")).select_by_visible_text("Lewisham")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.stack button").click()
    settled_wait(browser, WAIT).until(lambda d: "lewisham.council" in (text_of(d, "#commissioners") or ""))
    login(browser, base, "lewisham.council", lands="/council")
    planned = browser.find_element(By.ID, "planned").text
    assert "Dan Black" in planned and "Cara White" not in planned
    shoot(browser, world, "council")
    browser.find_element(By.CSS_SELECTOR, "#planned a").click()
    settled_wait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "resident-visits"))
    shoot(browser, world, "council-resident")
    browser.get(f"{base}/council/figures")
    settled_wait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "figures"))
    assert "Missed visits" in browser.find_element(By.ID, "figures").text
    shoot(browser, world, "council-figures")
    browser.get(f"{base}/board")
    assert "Your role may not do this" in browser.find_element(By.TAG_NAME, "main").text
