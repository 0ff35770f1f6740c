"""Waiting in browser tests: for a condition, never for time, and never on a stale element.

A page that posts a form is replaced while a wait polls it, and the live board and
alerts list swap their rows at any moment (server-sent events): an element found in one
poll can be gone by the next WebDriver call. Every wait therefore ignores stale and
missing elements and asks again; values a test asserts on are read in one script call.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.support.ui import WebDriverWait

SETTLE = (StaleElementReferenceException, NoSuchElementException)


def _screenshot_dir() -> Path:
    """Where browser tests save the pages they render at 1366 and 400 px.

    ``CARECALL_SCREENSHOT_DIR=docs/screenshots`` refreshes the pictures the docs show;
    otherwise a temporary folder, so that a test run leaves the checkout as it found it.
    """
    named = os.environ.get("CARECALL_SCREENSHOT_DIR")
    path = Path(named) if named else Path(tempfile.gettempdir()) / f"carecall-screenshots-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


SHOTS = _screenshot_dir()

# The least any wait gives its condition. On the 2-core machine with other suites running,
# a log-in (a password hash, then the board's first query on a fresh PostgreSQL database)
# took over 10 s once in 6 loop rounds. Nothing here waits for something NOT to happen,
# so a longer limit costs time only when a test is failing anyway.
MIN_WAIT = 30.0


# WebDriver errors that mean "the document changed under this call", not "wrong": seen
# while a page is replaced (a form post, a redirect). chromedriver reports some of them as
# plain WebDriverException ("unknown error"), not as a stale element.
TRANSIENT = ("does not belong to the document", "No node with given id", "Execution context was destroyed",
             "Cannot find context with specified id")


class SettledWait(WebDriverWait):
    """``WebDriverWait`` that re-finds rather than fails when the page changed under it.

    A timeout names the last transient error it passed over, so a failure still says why."""

    def until(self, method: Any, message: str = "") -> Any:
        passed_over: list[str] = []

        def settled(driver: Any) -> Any:
            try:
                return method(driver)
            except WebDriverException as exc:
                if isinstance(exc, SETTLE) or any(t in (exc.msg or "") for t in TRANSIENT):
                    passed_over[:] = [f"{type(exc).__name__}: {(exc.msg or '').splitlines()[0][:200]}"]
                    return False
                raise

        try:
            return super().until(settled, message)
        except TimeoutException as exc:
            if passed_over:
                raise TimeoutException(f"{message} (last passed over: {passed_over[0]})".strip(),
                                       exc.screen, exc.stacktrace) from None
            raise


def settled_wait(driver: Any, timeout: float = MIN_WAIT, poll_frequency: float = 0.5,
                 ignored_exceptions: tuple[type[BaseException], ...] = SETTLE) -> WebDriverWait:
    """A :class:`SettledWait` of at least ``MIN_WAIT``; ``ignored_exceptions`` are passed over too."""
    return SettledWait(driver, max(timeout, MIN_WAIT), poll_frequency=poll_frequency,
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


def state_of(driver: Any, visit_id: int) -> str | None:
    """A board row's state word, read in one script call (the live board swaps its rows)."""
    return driver.execute_script(
        "const e = document.querySelector(`tr[data-visit='${arguments[0]}'] .state`);"
        "return e ? e.textContent : null;", visit_id)
