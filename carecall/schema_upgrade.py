"""Start without the database: the schema upgrade retried with back-off (issue 14).

``carecall run`` used to run the Alembic upgrade first and exit if the database was
unreachable, so after a crash during an outage no call was answered until the database
came back. Now the first attempt's failure is logged and the server starts anyway:

* until an upgrade has succeeded the call path does not touch the database
  (``Runtime.schema_ready`` is false): every check-in is journalled, fsynced and
  confirmed exactly as in a mid-shift outage, and the journal is not replayed (its
  replay needs the new schema);
* this service retries the upgrade in the database thread pool after 1, 2, 4 … s (at
  most ``max_delay``), logging each failure on one line; when one succeeds it marks the
  runtime ready, which replays the journal at once.

Only connection-level errors (``OperationalError``, ``InterfaceError``: refused, reset,
locked, timed out) are waited out; a migration that is wrong fails the start as before.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ivr.db import upgrade

log = Logger(namespace="carecall.schema")

UNAVAILABLE = (OperationalError, InterfaceError)


def upgrade_at_start(runtime: Any) -> bool:
    """The first, blocking attempt (before anything listens): True if the schema is current."""
    try:
        upgrade(runtime.settings.db_url)
    except UNAVAILABLE as exc:
        runtime.schema_ready = False
        log.warn("database unavailable at start ({error}); answering calls on the journal and retrying the "
                 "schema upgrade", error=type(exc).__name__)
        return False
    runtime.schema_ready = True
    return True


class SchemaUpgrader(Service):
    """Retries the upgrade until it succeeds, then ``runtime.mark_ready()``."""

    name = "schema-upgrade"

    def __init__(self, runtime: Any, first_delay: float = 1.0, max_delay: float = 30.0) -> None:
        self.runtime = runtime
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.delay = first_delay
        self.attempts = 1  # upgrade_at_start made the first
        self._timer: IDelayedCall | None = None

    def startService(self) -> None:
        super().startService()
        if not self.runtime.schema_ready:
            self._schedule()

    def stopService(self) -> None:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _schedule(self) -> None:
        self._timer = self.runtime.reactor.callLater(self.delay, self._attempt)

    def _attempt(self) -> None:
        self._timer = None
        self.attempts += 1
        d = self.runtime.run_db(upgrade, self.runtime.settings.db_url)
        d.addCallbacks(self._upgraded, self._failed)

    def _upgraded(self, _: Any) -> None:
        log.info("database schema upgraded after {attempts} attempts; leaving the journal-only mode",
                 attempts=self.attempts)
        self.runtime.mark_ready()

    def _failed(self, failure: Failure) -> None:
        if not failure.check(*UNAVAILABLE):
            log.failure("schema upgrade failed; the server stays on its journal", failure)
            return
        self.delay = min(self.delay * 2, self.max_delay)
        log.warn("database still unavailable ({error}); schema upgrade attempt {attempts} failed, next in "
                 "{delay:g} s; calls are journalled", error=failure.type.__name__, attempts=self.attempts,
                 delay=self.delay)
        if self.running:
            self._schedule()
