"""The unanswered-mode marker on the board and the worker page's switch, in headless Chromium
at 1366×768 and 400 px wide; screenshots for docs/telephony.md."""

from __future__ import annotations

import datetime as dt

import pytest
from selenium.webdriver.common.by import By
from sqlalchemy import select, update

from agi.simulator import CallScript, simulate_blocking
from carecall.config import load_settings
from ivr.db import unit_of_work
from ivr.models import Worker
from tests.browser import SHOTS
from tests.conftest import fresh_database
from tests.helpers import VISITS_HEADER, factory_for, import_world, on_today, visit_row
from tests.test_web_browser import chromium, login, wait
from tests.webclient import add_users, running_server

pytestmark = pytest.mark.browser


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request, tmp_path):
    with fresh_database(request, request.param, tmp_path) as url:
        settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp_path / "carecall.key"),
                                 data_dir=str(tmp_path / "var"))
        factory = factory_for(settings)
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        import_world(settings, factory, "\n".join([
            VISITS_HEADER, visit_row("U-1", "R001", on_today(now, -10, settings), 45, "1001", settings=settings),
            visit_row("P-1", "R002", on_today(now, -5, settings), 30, "1002", settings=settings)]) + "\n")
        with unit_of_work(factory) as s:
            s.execute(update(Worker).where(Worker.worker_number == "1001").values(
                unanswered_ddi="+442079460001", unanswered_enabled=True))
        add_users(settings)
        try:
            # Effects in the thread pool: no worker process still starting when the first call comes.
            with running_server(settings, tmp_path, 'agi_effects = "thread"\n') as base:
                yield {"base": base, "factory": factory, "request": request}
        finally:
            factory.kw["bind"].dispose()


def test_board_marks_the_unanswered_arrival_and_the_worker_page_has_the_switch(site):
    base = site["base"]
    # Worker 1001 rings their own number from R001's landline (never answered); 1002 uses the PIN.
    r = simulate_blocking("127.0.0.1", base.agi_port, CallScript(script="unanswered", callerid="02086989911",
                                                                  args=["02079460001"]))
    assert [c for c, _ in r.transcript] == ["EXEC Wait 3", "HANGUP"]
    r = simulate_blocking("127.0.0.1", base.agi_port, CallScript(callerid="02086989922", digits=["1002", "2345"]))
    assert r.completed
    engine = site["request"].node.callspec.params["site"]
    for browser in chromium():
        login(browser, base, "coordinator")
        browser.get(base + "/board")
        # Read in one script call: the live board may swap its rows between two WebDriver calls.
        markers = wait(browser).until(lambda d: d.execute_script(
            "const m = [...document.querySelectorAll('abbr.unanswered')].map(e => [e.textContent, e.title]);"
            "return m.length ? m : null;"))
        [(text, title)] = markers
        assert text == "U" and "no PIN" in title
        if engine == "sqlite":
            browser.save_screenshot(str(SHOTS / "board-unanswered-1366.png"))
        browser.set_window_size(400, 800)
        browser.get(base + "/board")
        wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "abbr.unanswered"))
        if engine == "sqlite":
            browser.save_screenshot(str(SHOTS / "board-unanswered-400.png"))
        browser.set_window_size(1366, 768)
        with site["factory"]() as s:
            wid = s.scalar(select(Worker.id).where(Worker.worker_number == "1001"))
        browser.get(f"{base}/workers/{wid}")
        field = wait(browser).until(lambda d: d.find_element(By.NAME, "unanswered_ddi"))
        assert field.get_attribute("value") == "020 7946 0001"
        assert browser.find_element(By.NAME, "unanswered_enabled").is_selected()
        if engine == "sqlite":
            browser.save_screenshot(str(SHOTS / "worker-unanswered-1366.png"))
