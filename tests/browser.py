"""Waiting in browser tests: for a condition, never for time, and never on a stale element.

A page that posts a form is replaced while a wait polls it, and the live board and
alerts list swap their rows at any moment (server-sent events): an element found in one
poll can be gone by the next WebDriver call. Every wait therefore ignores stale and
missing elements and asks again; values a test asserts on are read in one script call.
"""

from __future__ import annotations

from typing import Any

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

SETTLE = (StaleElementReferenceException, NoSuchElementException)


def settled_wait(driver: Any, timeout: float = 10, poll_frequency: float = 0.5,
                 ignored_exceptions: tuple[type[BaseException], ...] = SETTLE) -> WebDriverWait:
    """``WebDriverWait`` that re-finds rather than fails when the page changed under it."""
    return WebDriverWait(driver, timeout, poll_frequency=poll_frequency,
                         ignored_exceptions=tuple({*SETTLE, *ignored_exceptions}))


def text_of(driver: Any, css: str) -> str | None:
    """An element's text read in one script call (None when absent): cannot go stale in between."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)


def page_at(driver: Any, fragment: str) -> bool:
    """The browser has moved to a URL containing ``fragment`` and that page has loaded.

    The URL changes when the new document is committed, before it is parsed: reading an
    element straight after a URL check can still meet the old page or an empty new one."""
    return fragment in driver.current_url and driver.execute_script("return document.readyState") == "complete"
