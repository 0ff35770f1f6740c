"""The on-call page in real headless Chromium: a manager fills the rota in; it fits a 400 px phone.

Screenshots for docs/alerts.md (oncall.png, oncall-400.png, board-rota-gap-400.png) go to tests/browser.SHOTS:
CARECALL_SCREENSHOT_DIR=docs/screenshots refreshes the docs' copies.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from sqlalchemy import select

from carecall.config import load_settings
from scheduler.oncall_models import RotaEntry
from tests.browser import SHOTS, page_at, settled_wait, text_of
from tests.conftest import fresh_database
from tests.helpers import factory_for, import_world
from tests.webclient import PASSWORD, add_users, cli, running_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("oncall-browser")
    with fresh_database(request, request.param, tmp) as url:
        settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "carecall.key"),
                                 data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        import_world(settings, factory)
        add_users(settings)
        phone = cli(settings, "user", "phone", "coordinator", "07912 345678", "--pin-stdin", stdin="1357\n")
        assert phone.returncode == 0, phone.stderr
        with running_server(settings, tmp, "[oncall]\nenabled = true\noffice_days = []\n") as base:
            yield {"base": base, "factory": factory, "engine": request.param}
        factory.kw["bind"].dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
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


def login(browser: webdriver.Chrome, base: str, user: str) -> None:
    browser.delete_all_cookies()
    browser.get(base + "/login")
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login-button").click()
    settled_wait(browser, 10).until(lambda d: page_at(d, "/board"))


def no_horizontal_scroll(browser: webdriver.Chrome) -> bool:
    return bool(browser.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth;"))


def test_the_board_warns_of_a_rota_gap_and_a_manager_fills_it_in(site, browser):
    browser.set_window_size(1366, 768)
    login(browser, site["base"], "manager")
    settled_wait(browser, 10).until(
        lambda d: "Nobody is on the on-call rota now" in (text_of(d, "#oncall-banner") or ""))
    browser.set_window_size(400, 800)
    # The banner fits a phone (the board's own 400 px layout is issue 12 part A's).
    assert browser.execute_script("return document.getElementById('oncall-banner').getBoundingClientRect().right"
                                  " <= window.innerWidth;")
    if site["engine"] == "sqlite":
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / "board-rota-gap-400.png"))
    browser.set_window_size(1366, 768)
    # Found and clicked in one go, again if the live board replaced the banner in between.
    settled_wait(browser, 10).until(lambda d: d.find_element(By.LINK_TEXT, "Fix the rota").click() or True)
    settled_wait(browser, 10).until(lambda d: page_at(d, "/oncall"))
    form = browser.find_element(By.ID, "rota-form")
    Select(form.find_element(By.NAME, "user")).select_by_visible_text("coordinator")
    Select(form.find_element(By.NAME, "position")).select_by_visible_text("On call")
    # Today from now until tomorrow morning: covers "now" whatever the time of the run.
    browser.execute_script(
        "const f = arguments[0]; const now = new Date(); const p = n => String(n).padStart(2, '0');"
        "f.start.value = p(now.getHours()) + ':' + p(now.getMinutes());"
        "f.end.value = p(now.getHours()) + ':' + p(now.getMinutes());"  # same time = the next day, 24 h
        "f.note.value = 'covering';", form)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    settled_wait(browser, 10).until(lambda d: page_at(d, "done=added"))
    settled_wait(browser, 10).until(lambda d: text_of(d, "#now-first") == "coordinator")
    rota = text_of(browser, "#rota") or ""
    assert "coordinator" in rota and "covering" in rota
    with site["factory"]() as s:
        assert len(list(s.scalars(select(RotaEntry)))) == 1
    if site["engine"] == "sqlite":
        browser.save_screenshot(str(SHOTS / "oncall.png"))
    browser.set_window_size(400, 800)
    browser.get(site["base"] + "/oncall")
    settled_wait(browser, 10).until(lambda d: text_of(d, "#now-first") == "coordinator")
    assert no_horizontal_scroll(browser)
    if site["engine"] == "sqlite":
        browser.save_screenshot(str(SHOTS / "oncall-400.png"))
    # Covered for the next 24 h: the board now warns only of the gap after that.
    browser.get(site["base"] + "/board")
    text = settled_wait(browser, 10).until(lambda d: text_of(d, "#oncall-banner"))
    assert "The on-call rota has a gap" in text and "Nobody is on the on-call rota now" not in text
    browser.set_window_size(1366, 768)


def test_an_alert_ringing_phones_with_nobody_on_it_is_red_on_the_alerts_page(site, browser):
    from ivr.db import unit_of_work
    from ivr.models import utcnow
    from scheduler.models import Alert
    from scheduler.store import raise_alert

    with unit_of_work(site["factory"]) as s:
        alert_id = raise_alert(s, kind="no_reply", at=utcnow(), key=f"no_reply:test:red:{site['engine']}")
        s.get(Alert, alert_id).chain_step = 3
    browser.set_window_size(1366, 768)
    login(browser, site["base"], "coordinator")
    browser.get(site["base"] + "/alerts")
    # Read in one script call: the live alerts page replaces its rows between two WebDriver calls.
    read = ("const r = document.querySelector(`tr[data-alert='${arguments[0]}']`); if (!r) return null;"
            "const b = r.querySelector('.climbing'); if (!b) return null;"
            "return {cls: r.className, text: b.textContent.trim(), bg: getComputedStyle(b).backgroundColor};")
    row = settled_wait(browser, 10).until(lambda d: d.execute_script(read, alert_id))
    assert "unaccepted" in row["cls"]
    assert row["text"] == "nobody has it: escalating (step 3)"
    assert row["bg"] == "rgb(176, 0, 32)"
    if site["engine"] == "sqlite":
        browser.save_screenshot(str(SHOTS / "alerts-climbing.png"))
    browser.set_window_size(400, 800)
    browser.get(site["base"] + f"/alerts/{alert_id}")
    settled_wait(browser, 10).until(lambda d: d.find_element(By.ID, "climbing"))
    if site["engine"] == "sqlite":
        browser.save_screenshot(str(SHOTS / "alert-climbing-400.png"))
    browser.set_window_size(1366, 768)
