"""PIN guessing: a growing delay after failures, a lock on one (worker, line) pair, an alert.

A 4-digit PIN has 10,000 values; the keyed hash (:mod:`ivr.pins`) protects a leaked
table, not a phone line. The scope is chosen so that the lockout cannot itself be used
to stop a worker logging visits everywhere:

* **(worker number, line) pair** — after ``pair_after`` failures in the window the
  pair is *locked* for ``lock_for``: that number is refused on that line even with the
  right PIN. Someone guessing from one phone locks out only that phone.
* **line** (any worker number) — failures slow the line down: after the first
  ``free_failures`` (a whole call of typos), each further wrong PIN waits
  ``base_delay · 2^k`` seconds (capped at ``max_delay``) before "incorrect". The
  delay runs on the reactor (``callLater``), blocking nobody else.
* **worker number** (any line) — failures spread over many lines (spoofed caller IDs)
  get the same growing delay and, from ``worker_alert_after``, a ``failed_login`` alert
  for the office, but never a global lock: that would let anyone who knows a worker's
  number stop them logging visits in every home.

A *right* PIN is never delayed. The only cost on the success path is a LEFT JOIN of the
(usually empty) ``login_locks`` table into the worker lookup the call makes anyway; the
failure counting (one insert, one indexed count query) happens only on failures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, insert, or_, select, update

from ivr.fastsql import Prepared
from ivr.models import LoginFailure, LoginLock

failures = LoginFailure.__table__
locks = LoginLock.__table__


@dataclasses.dataclass(frozen=True)
class Verdict:
    delay: float  # seconds to wait before saying "incorrect"
    lock_until: dt.datetime | None  # lock the (worker, line) pair until then
    alert_worker: bool  # this worker number fails on many lines: tell the office


@dataclasses.dataclass(frozen=True)
class LockoutPolicy:
    window: dt.timedelta = dt.timedelta(minutes=60)
    free_failures: int = 3
    base_delay: float = 2.0
    max_delay: float = 30.0
    pair_after: int = 10
    lock_for: dt.timedelta = dt.timedelta(minutes=30)
    worker_alert_after: int = 10

    @classmethod
    def from_settings(cls, settings: Any) -> LockoutPolicy:
        return cls(
            window=dt.timedelta(minutes=settings.lockout_window_minutes),
            free_failures=settings.lockout_free_failures,
            base_delay=settings.lockout_base_delay,
            max_delay=settings.lockout_max_delay,
            pair_after=settings.lockout_pair_after,
            lock_for=dt.timedelta(minutes=settings.lockout_minutes),
            worker_alert_after=settings.lockout_worker_alert_after,
        )

    def delay(self, failures: int) -> float:
        """``failures`` counts this one: the 4th costs base_delay, the 5th twice that …"""
        extra = failures - self.free_failures
        if extra <= 0:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** min(extra - 1, 30)))

    def decide(self, at: dt.datetime, pair: int, line: int, worker: int) -> Verdict:
        """Counts in the window, this failure included."""
        lock_until = at + self.lock_for if pair >= self.pair_after else None
        return Verdict(max(self.delay(line), self.delay(worker)), lock_until, worker >= self.worker_alert_after)


def line_key(caller_e164: str | None, resident_ids: tuple[int, ...] = ()) -> str:
    """What "this line" means: the caller ID, else the home the phone code named, else withheld."""
    if caller_e164:
        return caller_e164[:24]
    if len(resident_ids) >= 1:
        return f"home:{min(resident_ids)}"
    return "withheld"


_INSERT_FAILURE = Prepared(
    insert(failures).values(worker_number=bindparam("number"), line=bindparam("line"),
                            at=bindparam("at", type_=failures.c.at.type), uniqueid=bindparam("uid"))
)
_COUNTS = Prepared(
    select(
        func.coalesce(func.sum(case(
            ((failures.c.worker_number == bindparam("n1")) & (failures.c.line == bindparam("l1")), 1), else_=0,
        )), 0).label("pair"),
        func.coalesce(func.sum(case((failures.c.line == bindparam("l2"), 1), else_=0)), 0).label("line"),
        func.coalesce(func.sum(case((failures.c.worker_number == bindparam("n2"), 1), else_=0)), 0).label("worker"),
    ).where(
        failures.c.at >= bindparam("since", type_=failures.c.at.type),
        or_(failures.c.worker_number == bindparam("n3"), failures.c.line == bindparam("l3")),
    )
)
_EXTEND_LOCK = Prepared(
    update(locks)
    .where(locks.c.worker_number == bindparam("number"), locks.c.line == bindparam("line"))
    .values(until=bindparam("until", type_=locks.c.until.type), failures=bindparam("count"))
)
_INSERT_LOCK = Prepared(
    insert(locks).values(worker_number=bindparam("number"), line=bindparam("line"),
                         until=bindparam("until", type_=locks.c.until.type), failures=bindparam("count"))
)


def record_failure(conn: Connection, policy: LockoutPolicy, *, number: str, line: str, at: dt.datetime,
                   uniqueid: str) -> tuple[Verdict, tuple[int, int, int]]:
    """Count this failure and decide (inside the call's transaction). Failure path only."""
    number = number[:16]
    _INSERT_FAILURE.run(conn, number=number, line=line, at=at, uid=uniqueid[:64])
    row = _COUNTS.first(conn, n1=number, l1=line, l2=line, n2=number, n3=number, l3=line, since=at - policy.window)
    counts = (int(row.pair), int(row.line), int(row.worker))
    verdict = policy.decide(at, *counts)
    if verdict.lock_until is not None and not _EXTEND_LOCK.run(
        conn, number=number, line=line, until=verdict.lock_until, count=counts[0]
    ):
        _INSERT_LOCK.run(conn, number=number, line=line, until=verdict.lock_until, count=counts[0])
    return verdict, counts


def locked_until(conn: Connection, number: str, line: str) -> dt.datetime | None:
    """For the office and the tests: when this pair's lock ends (None if never locked)."""
    return conn.execute(select(locks.c.until).where(locks.c.worker_number == number, locks.c.line == line)).scalar()
