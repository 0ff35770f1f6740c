"""The worker's phone as the tag reader, in real headless Chromium at phone size.

Against a real ``carecall run`` server: the office issues a home tag and an enrolment
code on its own pages; the worker enrols a phone, sees the roster, checks in by the
home's QR code through Chromium's fake camera (a Y4M file showing the tag's QR code),
and checks out through the tag URL the NFC path opens; the office board turns "on site"
live. A forged tag is refused, the alarm raises a critical alert, and a scan made
offline is queued on the phone and, sent later, is logged at its own time and flagged.
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
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from sqlalchemy import select

from carecall.config import load_settings
from ivr.db import unit_of_work
from ivr.models import Attendance, Resident, Visit, Worker
from scheduler.models import Alert, AlertKind
from tests.browser import SHOTS, page_at, settled_wait, state_of, text_of
from tests.conftest import fresh_database
from tests.fakecamera import qr_y4m
from tests.helpers import VISITS_HEADER, factory_for, import_world, on_today, visit_row
from tests.webclient import PASSWORD, add_users, running_server
from web.worker_models import TagScan

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
WAIT = 20


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("phone")
    with fresh_database(request, request.param, tmp) as url:
        settings = load_settings(None, db_url=url, environ={},
                                 secret_file=str(tmp / "carecall.key"), data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        rows = [visit_row("P-TAG", "R004", on_today(now, -5, settings), 45, "1004", settings=settings),
                visit_row("P-LATER", "R002", on_today(now, 30, settings), 30, "1004", settings=settings)]
        import_world(settings, factory, "\n".join([VISITS_HEADER, *rows]) + "\n")
        add_users(settings)
        with unit_of_work(factory) as s:
            ids = {v.visit_ref: v.id for v in s.scalars(select(Visit))}
            residents = {r.reference: r.id for r in s.scalars(select(Resident))}
            workers = {w.worker_number: w.id for w in s.scalars(select(Worker))}
        try:
            with running_server(settings, tmp, '[web]\npoll_seconds = 1.0\n') as base:
                yield {"settings": settings, "factory": factory, "base": base, "ids": ids, "tmp": tmp,
                       "residents": residents, "workers": workers}
        finally:
            factory.kw["bind"].dispose()


def chromium(size: str, *extra: str) -> tuple[webdriver.Chrome, str]:
    profile = tempfile.mkdtemp(prefix="carecall-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={size}", "--lang=en-GB",
                 *extra):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    return driver, profile


@pytest.fixture(scope="module")
def office(world: dict[str, Any]) -> Iterator[webdriver.Chrome]:
    driver, profile = chromium("1366,768")
    try:
        driver.get(world["base"] + "/login")
        driver.find_element(By.ID, "username").send_keys("coordinator")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login-button").click()
        settled_wait(driver, WAIT).until(lambda d: page_at(d, "/board"))
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def issue_tag(office: webdriver.Chrome, world: dict[str, Any], ref: str) -> str:
    """The office issues a tag on the resident's page; returns the URL it shows for the NFC tag."""
    office.get(f"{world['base']}/residents/{world['residents'][ref]}/tags")
    before = len(office.find_elements(By.CSS_SELECTOR, ".tag-url"))
    office.find_element(By.XPATH, "//button[text()='Issue a new tag']").click()
    settled_wait(office, WAIT).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".tag-url")) == before + 1)
    return office.find_elements(By.CSS_SELECTOR, ".tag-url")[-1].text


def enrolment_code(office: webdriver.Chrome, world: dict[str, Any], number: str) -> str:
    office.get(f"{world['base']}/workers/{world['workers'][number]}/phone")
    office.find_element(By.XPATH, "//button[text()='Issue an enrolment code']").click()
    settled_wait(office, WAIT).until(lambda d: d.find_elements(By.ID, "enrol-code"))
    return office.find_element(By.ID, "enrol-code").text


@pytest.fixture(scope="module")
def tags(office: webdriver.Chrome, world: dict[str, Any]) -> dict[str, str]:
    return {"R004": issue_tag(office, world, "R004"), "R002": issue_tag(office, world, "R002")}


@pytest.fixture(scope="module")
def phone(world: dict[str, Any], tags: dict[str, str]) -> Iterator[webdriver.Chrome]:
    video = qr_y4m(tags["R004"], world["tmp"] / "qr-r004.y4m")
    driver, profile = chromium("400,860", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                               f"--use-file-for-fake-video-capture={video}")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def until(driver: webdriver.Chrome, condition: Any) -> Any:
    try:
        return settled_wait(driver, WAIT).until(condition)
    except Exception:
        print("STATUS", status(driver), driver.current_url, driver.get_log("browser"),
              driver.execute_script("return localStorage.getItem('carecall.queue')"))
        raise


def status(driver: webdriver.Chrome) -> str:
    return driver.execute_script("const e = document.getElementById('status'); return e ? e.textContent : '';")


def attendance(world: dict[str, Any], ref: str) -> Attendance | None:
    with unit_of_work(world["factory"]) as s:
        return s.scalar(select(Attendance).where(Attendance.visit_id == world["ids"][ref]))


def no_horizontal_scroll(driver: webdriver.Chrome) -> bool:
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth;")


def test_a_wrong_enrolment_code_does_not_enrol_the_phone(world, phone, office):
    phone.delete_all_cookies()
    phone.get(world["base"] + "/w/login")
    phone.find_element(By.NAME, "worker_number").send_keys("1004")
    phone.find_element(By.NAME, "pin").send_keys("4567")
    phone.find_element(By.NAME, "enrolment_code").send_keys("12345678")
    phone.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    settled_wait(phone, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".error"))
    assert "not right" in phone.find_element(By.CSS_SELECTOR, ".error").text
    assert phone.current_url.endswith("/w/login")


def test_worker_enrols_sees_the_roster_and_checks_in_by_qr_code_and_out_by_tag(world, phone, office, tags):
    code = enrolment_code(office, world, "1004")
    office.get(world["base"] + "/board")
    vid = world["ids"]["P-TAG"]
    settled_wait(office, WAIT).until(lambda d: state_of(d, vid) is not None)
    assert "on site" not in (state_of(office, vid) or "").lower()

    phone.get(world["base"] + "/w/login")
    phone.find_element(By.NAME, "worker_number").send_keys("1004")
    phone.find_element(By.NAME, "pin").send_keys("4567")
    phone.find_element(By.NAME, "enrolment_code").send_keys(code)
    phone.find_element(By.NAME, "label").send_keys("test phone")
    phone.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    row = settled_wait(phone, WAIT).until(lambda d: text_of(d, f"#visit-{vid}"))
    assert "Dan Black" in row and "4 Fir Walk" in row
    assert no_horizontal_scroll(phone)
    phone.save_screenshot(str(SHOTS / "worker-phone.png"))

    phone.find_element(By.ID, "scan-qr").click()
    try:
        settled_wait(phone, WAIT).until(lambda d: "Arrival logged" in status(d))
    except Exception:
        print("STATUS", status(phone), phone.get_log("browser"))
        phone.save_screenshot("/tmp/phone-debug.png")
        raise
    att = attendance(world, "P-TAG")
    assert att is not None and att.arrival_method == "tag" and att.arrival_verified
    assert att.arrival_entered_at is None
    # The office board turns without a reload.
    settled_wait(office, WAIT).until(lambda d: "on site" in (state_of(d, vid) or "").lower())

    # Out through the tag URL, as Android opens it from an NFC tap.
    phone.get(world["base"] + "/t/" + tags["R004"].rsplit("/t/", 1)[1])
    settled_wait(phone, WAIT).until(lambda d: "Departure logged" in status(d))
    att = attendance(world, "P-TAG")
    assert att is not None and att.departure_method == "tag" and att.departure_at is not None


def test_a_forged_or_altered_tag_is_refused(world, phone, tags):
    tag_id, sig = tags["R002"].rsplit("/t/", 1)[1].split(".")
    altered = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    for payload in (f"{tag_id}.{altered}", "AAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBB"):
        phone.get(world["base"] + "/w")
        phone.execute_script("document.getElementById('status').textContent = '';")
        phone.execute_script("location.hash = arguments[0];", "#tag=" + payload)
        settled_wait(phone, WAIT).until(lambda d: "not one of ours" in status(d))
    assert attendance(world, "P-LATER") is None
    with unit_of_work(world["factory"]) as s:
        assert s.scalar(select(TagScan.id).where(TagScan.outcome == "forged")) is not None


def test_a_scan_made_offline_is_queued_then_sent_and_flagged(world, phone, tags):
    phone.get(world["base"] + "/w")
    settled_wait(phone, WAIT).until(lambda d: d.find_elements(By.ID, "scan-qr"))
    phone.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    try:
        phone.execute_script("location.hash = arguments[0];", "#tag=" + tags["R002"])
        until(phone, lambda d: "saved on this phone" in status(d))
        assert phone.execute_script("return JSON.parse(localStorage.getItem('carecall.queue')).length") == 1
        assert attendance(world, "P-LATER") is None
    finally:
        phone.set_network_conditions(offline=False, latency=0, download_throughput=-1, upload_throughput=-1)
    # Back in signal: the page sends its queue by itself (the "online" event, else its 15 s timer).
    until(phone, lambda d: "sent late from this phone" in status(d))
    att = attendance(world, "P-LATER")
    assert att is not None and att.arrival_method == "tag"
    assert att.arrival_entered_at is not None and att.arrival_entered_at >= att.arrival_at
    assert phone.execute_script("return JSON.parse(localStorage.getItem('carecall.queue') || '[]').length") == 0


def test_the_alarm_raises_a_critical_alert_with_the_current_visit(world, phone):
    phone.get(world["base"] + "/w")
    settled_wait(phone, WAIT).until(lambda d: d.find_elements(By.ID, "alarm"))
    phone.find_element(By.ID, "alarm").click()
    settled_wait(phone, WAIT).until(lambda d: "Tap again" in d.find_element(By.ID, "alarm").text)
    phone.find_element(By.ID, "alarm").click()
    settled_wait(phone, WAIT).until(lambda d: "office has been alerted" in status(d))
    with unit_of_work(world["factory"]) as s:
        alert = s.scalar(select(Alert).where(Alert.kind == AlertKind.ALARM))
        assert alert is not None and alert.severity == 6
        assert alert.worker_id == world["workers"]["1004"]
        assert alert.visit_id == world["ids"]["P-LATER"]  # the queued arrival above left the worker there


def test_messages_go_both_ways_beside_the_visit(world, phone, office):
    """The worker writes from the phone; the office reads it on the visit they are at and answers there."""
    phone.get(world["base"] + "/w")
    settled_wait(phone, WAIT).until(lambda d: d.find_elements(By.NAME, "body"))
    phone.find_element(By.NAME, "body").send_keys("Resident has a fall alarm going off; staying on")
    phone.find_element(By.XPATH, "//button[text()='Send']").click()
    settled_wait(phone, WAIT).until(lambda d: "fall alarm" in d.find_element(By.CSS_SELECTOR, ".messages").text)

    vid = world["ids"]["P-LATER"]  # where the worker is logged in (the queued arrival above)
    office.get(f"{world['base']}/visits/{vid}")
    settled_wait(office, WAIT).until(lambda d: d.find_elements(By.ID, "visit-messages"))
    assert "fall alarm" in office.find_element(By.ID, "visit-messages").text
    form = office.find_element(By.CSS_SELECTOR, "#messages form")
    form.find_element(By.NAME, "body").send_keys("Thanks, the on-call manager is ringing you now")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    settled_wait(office, WAIT).until(
        lambda d: "on-call manager" in d.find_element(By.ID, "visit-messages").text)

    phone.get(world["base"] + "/w")
    settled_wait(phone, WAIT).until(lambda d: "on-call manager" in d.find_element(By.CSS_SELECTOR, ".messages").text)


def test_the_office_types_in_a_device_and_its_seed_is_never_shown_again(world, office):
    from ivr.devices import VerificationDevice

    seed = "KRUGKIDROVUWG2ZAMJZG653OEBTG66BA"
    office.get(f"{world['base']}/residents/{world['residents']['R003']}/tags")
    form = office.find_element(By.ID, "device-form")
    form.find_element(By.NAME, "serial").send_keys("TOK-TYPED")
    form.find_element(By.NAME, "secret").send_keys("not-a-seed")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    settled_wait(office, WAIT).until(lambda d: d.find_elements(By.ID, "device-error"))
    assert "base32" in office.find_element(By.ID, "device-error").text
    with unit_of_work(world["factory"]) as s:
        assert s.scalar(select(VerificationDevice.id).where(VerificationDevice.serial == "TOK-TYPED")) is None

    form = office.find_element(By.ID, "device-form")
    form.find_element(By.NAME, "serial").send_keys("TOK-TYPED")
    form.find_element(By.NAME, "secret").send_keys(seed)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    settled_wait(office, WAIT).until(lambda d: "TOK-TYPED" in d.find_element(By.ID, "device-list").text)
    assert seed not in office.page_source
    with unit_of_work(world["factory"]) as s:
        sealed = s.scalar(select(VerificationDevice.secret_sealed).where(VerificationDevice.serial == "TOK-TYPED"))
    assert sealed is not None and seed not in sealed
    office.save_screenshot(str(SHOTS / "home-tags-devices.png"))
