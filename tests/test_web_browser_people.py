"""In real headless Chromium: a no-departure alert ends with people who can act, on an office
screen and on the on-call manager's phone.

A real ``carecall run`` per engine (SQLite and PostgreSQL); its scheduler's catch-up pass
raises the no-departure alert at start. The alert page must show the resident's name,
address, phones, contacts and the worker's name and mobile; a coordinator without
key-safe access cannot reveal the code (403, nothing shown); a manager's reveal shows
it and is in the audit log. At 400 px wide (and at 1366×768) the board, alerts list,
alert page, visit and resident pages have no horizontal scroll, and the nav is a menu
button. Screenshots go to tests/browser.SHOTS (CARECALL_SCREENSHOT_DIR=docs/screenshots for the docs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from sqlalchemy import select

from carecall.config import load_settings
from ivr import keysafe
from ivr.db import unit_of_work
from ivr.importer import import_csv
from ivr.models import Attendance, AuditEntry, Resident, Visit, Worker
from ivr.pins import load_or_create_key
from ivr.sealed import Sealer
from scheduler.models import Alert
from tests.browser import SHOTS, settled_wait
from tests.conftest import fresh_database
from tests.helpers import VISITS_HEADER, context_for, factory_for, import_world, on_today, visit_row
from tests.test_web_browser import chromium, click_to_new_page, login, mark_page, wait_new_page
from tests.webclient import add_users, running_server
from web.models import User

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
CODE = "4821"
CONTACTS = """resident_reference,name,relation,relation_note,phone,phone2,email,notify_missed
R003,Paula White,next of kin,daughter,07911 123101,020 8698 1101,paula.white@example.org,yes
R003,Mr Singh,other,neighbour at no. 5,020 8698 1102,,,no
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("browser-people")
    with fresh_database(request, request.param, tmp) as url:
        settings = load_settings(None, db_url=url, environ={},
                                 secret_file=str(tmp / "carecall.key"), data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        rows = [visit_row("N-PREV", "R001", now - dt.timedelta(minutes=200), 30, "1003", settings=settings),
                visit_row("N-NODEP", "R003", now - dt.timedelta(minutes=120), 45, "1003", settings=settings),
                visit_row("N-LATE", "R002", now - dt.timedelta(minutes=40), 60, "1002", settings=settings),
                visit_row("N-DUE", "R001", on_today(now, 45, settings), 30, "1001;1002", settings=settings)]
        import_world(settings, factory, "\n".join([VISITS_HEADER, *rows]) + "\n")
        assert import_csv(factory, "contacts", CONTACTS, context_for(settings)).ok
        with unit_of_work(factory) as s:
            r3 = s.scalar(select(Resident).where(Resident.reference == "R003"))
            r3.access_notes, r3.keysafe_reference = "Side gate; the dog is friendly", "KS-17, left of the back door"
            keysafe.set_code(s, Sealer(load_or_create_key(settings.secret_path)), r3.id, CODE, actor="setup",
                             now=now)
            w = s.scalar(select(Worker).where(Worker.worker_number == "1003"))
            for ref, leaves in (("N-PREV", True), ("N-NODEP", False)):
                v = s.scalar(select(Visit).where(Visit.visit_ref == ref))
                s.add(Attendance(visit_id=v.id, resident_id=v.resident_id, worker_id=w.id,
                                 arrival_at=v.planned_start + dt.timedelta(minutes=3), arrival_method="phone",
                                 arrival_verified=True, departure_at=v.planned_end if leaves else None,
                                 departure_method="phone" if leaves else None, departure_verified=leaves))
            ids = {v.visit_ref: v.id for v in s.scalars(select(Visit))}
            ids["R003"] = r3.id
        add_users(settings)
        with unit_of_work(factory) as s:
            s.scalar(select(User).where(User.username == "manager")).keysafe_access = True
        try:
            with running_server(settings, tmp, '[web]\npoll_seconds = 1.0\n') as base:
                yield {"settings": settings, "factory": factory, "base": base, "ids": ids}
        finally:
            factory.kw["bind"].dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    yield from chromium()


def page_text(browser: webdriver.Chrome) -> str:
    return browser.execute_script("return document.body.innerText;")


def open_alert(world: dict[str, Any], browser: webdriver.Chrome) -> int:
    """The no-departure alert the server's own catch-up pass raised; its page, loaded."""
    def raised() -> int | None:
        with unit_of_work(world["factory"]) as s:
            return s.scalar(select(Alert.id).where(Alert.kind == "no_departure",
                                                   Alert.visit_id == world["ids"]["N-NODEP"]))

    settled_wait(browser, 30, poll_frequency=0.2).until(lambda d: raised())
    aid = raised()
    assert aid is not None
    browser.get(f"{world['base']}/alerts/{aid}")
    settled_wait(browser, 10).until(EC.presence_of_element_located((By.ID, "people")))
    return aid


def test_no_departure_alert_shows_the_people_and_only_an_authorised_reveal_shows_the_code(world, browser):
    login(browser, world["base"], "coordinator")
    aid = open_alert(world, browser)
    text = page_text(browser)
    for expected in ("Cara White", "3 Ash Close, London, SE6 3CC", "020 8698 9933",  # resident, landline
                     "Side gate; the dog is friendly", "KS-17, left of the back door",
                     "Paula White", "daughter", "07911 123101", "020 8698 1101", "paula.white@example.org",
                     "Mr Singh", "neighbour at no. 5", "020 8698 1102",
                     "Worker Priya Patel", "07911 123003"):
        assert expected in text, expected
    links = browser.execute_script("return [...document.querySelectorAll('#people a.tel')].map(a => a.href);")
    assert {"tel:+442086989933", "tel:+447911123101", "tel:+447911123003"} <= set(links)
    assert "arrival at R003 (SE6 3CC)" in browser.find_element(By.CSS_SELECTOR, ".worker-last").text
    browser.save_screenshot(str(SHOTS / "alert-people.png"))
    # No reveal button for a coordinator without key-safe access, and a hand-made POST is refused.
    assert browser.find_elements(By.ID, "reveal-submit") == []
    mark_page(browser)
    browser.execute_script(
        "const f = document.createElement('form'); f.method = 'post';"
        "f.action = `/residents/${arguments[0]}/keysafe/reveal`;"
        "const t = document.createElement('input'); t.name = 'csrf_token';"
        "t.value = document.querySelector('input[name=csrf_token]').value; f.appendChild(t);"
        "document.body.appendChild(f); f.submit();", world["ids"]["R003"])
    wait_new_page(browser)
    settled_wait(browser, 10).until(EC.presence_of_element_located((By.ID, "error-message")))
    assert "403" in browser.title and CODE not in browser.page_source
    with unit_of_work(world["factory"]) as s:
        assert s.scalar(select(AuditEntry).where(AuditEntry.action == "keysafe_reveal")) is None
    # A manager with key-safe access: the button, the code, and the audit entry.
    login(browser, world["base"], "manager")
    browser.get(f"{world['base']}/alerts/{aid}")
    button = settled_wait(browser, 10).until(EC.element_to_be_clickable((By.ID, "reveal-submit")))
    assert CODE not in browser.page_source  # not on the page until asked for
    click_to_new_page(browser, button)
    settled_wait(browser, 10).until(EC.text_to_be_present_in_element((By.ID, "keysafe-code"), CODE))
    assert browser.current_url.endswith(f"/residents/{world['ids']['R003']}/keysafe/reveal")  # no code in it
    with unit_of_work(world["factory"]) as s:
        entries = [(e.actor, e.entity, e.entity_id) for e in
                   s.scalars(select(AuditEntry).where(AuditEntry.action == "keysafe_reveal"))]
    assert entries == [("manager", "resident", "R003")]
    click_to_new_page(browser, browser.find_element(By.LINK_TEXT, "Back"))
    settled_wait(browser, 10).until(EC.presence_of_element_located((By.ID, "people")))
    assert browser.current_url.endswith(f"/alerts/{aid}")


def no_horizontal_scroll(browser: webdriver.Chrome) -> tuple[int, int]:
    return tuple(browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];"))  # type: ignore[return-value]


@pytest.mark.parametrize("width", [400, 1366])
def test_board_alerts_and_alert_pages_fit_the_screen_with_a_menu_button_on_a_phone(world, browser, width):
    login(browser, world["base"], "manager")
    aid = open_alert(world, browser)
    height = 768 if width == 1366 else 860
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 700})
    try:
        pages = {"board": ("/board", "board-rows"), "alerts": ("/alerts", "alert-rows"),
                 "alert": (f"/alerts/{aid}", "people"), "visit": (f"/visits/{world['ids']['N-NODEP']}", "people"),
                 "resident": (f"/residents/{world['ids']['R003']}", "contacts")}
        for name, (path, marker) in pages.items():
            browser.get(world["base"] + path)
            settled_wait(browser, 10).until(EC.presence_of_element_located((By.ID, marker)))
            if name == "board":  # the live stream has swapped the rows in at least once
                settled_wait(browser, 10).until(lambda d: "live" in d.execute_script(
                    "return document.getElementById('live').textContent;"))
            scroll, inner = no_horizontal_scroll(browser)
            assert inner == width and scroll <= inner, (name, scroll, inner)
            nav_visible = browser.find_element(By.ID, "main-nav").is_displayed()
            menu = browser.find_element(By.ID, "menu-button")
            if width < 700:
                assert menu.is_displayed() and not nav_visible
            else:
                assert nav_visible and not menu.is_displayed()
            suffix = "-phone" if width < 700 else ""
            browser.save_screenshot(str(SHOTS / f"{name}-people{suffix}.png"))
        if width < 700:
            browser.get(world["base"] + "/board")
            button = settled_wait(browser, 10).until(EC.element_to_be_clickable((By.ID, "menu-button")))
            button.click()  # a CSS-only menu: no page change, the nav just shows
            settled_wait(browser, 10, ignored_exceptions=(NoSuchElementException,)).until(
                lambda d: d.find_element(By.ID, "main-nav").is_displayed())
            assert no_horizontal_scroll(browser)[0] <= width
            browser.save_screenshot(str(SHOTS / "menu-phone.png"))
        # The board's state words and counts agree on any screen: counts are the rows' own.
        browser.get(world["base"] + "/board")
        settled_wait(browser, 10).until(EC.presence_of_element_located((By.ID, "board-rows")))
        counts, states = browser.execute_script(
            "const c = {}; document.querySelectorAll('[data-count]').forEach(e => c[e.dataset.count] = +e.textContent);"
            "return [c, [...document.querySelectorAll('#board-rows [data-state]')].map(e => e.dataset.state)];")
        assert {k: v for k, v in counts.items() if v} == {s: states.count(s) for s in set(states)}
        assert states.count("no departure") == 1 and states.count("late") == 1
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
