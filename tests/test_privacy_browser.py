"""A manager in a real (headless Chromium) browser: reveals a worker's NI number, reads a
resident's view log, downloads nothing by accident, erases with the typed confirmation.
Screenshots at 1366×768 and 400 px go to tests/browser.SHOTS (docs/privacy.md)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.browser import SHOTS, page_at, settled_wait, text_of
from tests.privacy_world import plant
from tests.test_web_browser import login
from tests.webclient import add_users, running_server


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="carecall-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", f"--user-data-dir={profile}", "--window-size=1366,768",
                 "--lang=en-GB"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shoot(browser: webdriver.Chrome, name: str) -> None:
    for width, height, suffix in ((1366, 768, ""), (400, 900, "-narrow")):
        browser.set_window_size(width, height)
        full = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(width, min(max(full, height), 2400))
        browser.save_screenshot(str(SHOTS / f"{name}{suffix}.png"))
    browser.set_window_size(1366, 768)


def test_manager_reveals_ni_reads_views_and_erases_in_the_browser(settings, tmp_path, browser):
    world = plant(settings)
    add_users(settings)
    with running_server(settings, tmp_path, "[alerts]\nenabled = false\n[retention]\nenabled = false\n") as base:
        login(browser, base, "manager")
        browser.get(f"{base}/workers/{world.worker_id['1003']}")
        assert "AB123456C" not in browser.page_source
        shoot(browser, "privacy-worker")
        browser.find_element(By.ID, "ni-reveal").click()
        settled_wait(browser, 10).until(lambda d: page_at(d, "/ni") and text_of(d, "#ni-number"))
        assert text_of(browser, "#ni-number") == "AB 12 34 56 C"
        shoot(browser, "privacy-ni-reveal")
        browser.get(f"{base}/residents/{world.resident_id['R003']}")
        browser.find_element(By.ID, "privacy-link").click()
        settled_wait(browser, 10).until(lambda d: page_at(d, "/privacy/residents/"))
        rows = browser.execute_script(
            "return [...document.querySelectorAll('#views tbody tr')].map(r => r.innerText);")
        assert any("manager" in r and "resident page" in r for r in rows)
        assert any("data rights page" in r for r in rows)
        shoot(browser, "privacy-person")
        browser.find_element(By.ID, "erase-confirm").send_keys("R003")
        browser.find_element(By.ID, "erase-button").click()
        settled_wait(browser, 10).until(lambda d: page_at(d, "?done=erased"))
        assert "erased-resident-3" in (text_of(browser, "h1") or "")
        assert "Cara White" not in browser.page_source
