"""PIN guessing: a worker-wide budget across all lines, a per-line lock, a delay, an alert.

A 4-digit PIN has 10,000 values; the keyed hash (:mod:`ivr.pins`) protects a leaked
table, not a phone line. A delay alone bounds nothing — 30 parallel calls from 30
numbers each wait their own delay — so what is bounded is the number of PIN *checks*,
and the bound is scoped so that an outsider cannot use it to stop a worker logging the
visits they are at (issue 14 item 9; docs/reliability.md):

* **trusted line** — the caller ID is a landline of a home where this worker has a
  visit scheduled now (inside the matching window) or an arrival still open. Nothing
  below ever refuses a PIN from it: the worker at the home they visit always gets in.
  Wrong PINs there still count, slow the call down and alert the office.
* **worker budget** (any lines) — after ``worker_budget`` wrong PINs in ``window`` the
  worker number is *guarded* for ``guard_for``: from every line that is not trusted the
  PIN is not even checked (the call is refused as locked, recorded for review), so the
  guesses from untrusted lines are at most the budget per guard period, whatever the
  number of lines or parallel calls.
* **unknown budget** — lines that are not a known home landline (an unknown caller ID
  with a phone code, a withheld number, the no-reply call) share a smaller budget,
  ``unknown_budget``; reaching it guards the number on those lines only.
* **(worker number, line) pair** — after ``pair_after`` failures the pair is locked for
  ``lock_for`` (never on a trusted line): one phone guessing locks out only that phone.
* **delay** — after ``free_failures`` (a whole call of typos), each further wrong PIN
  waits ``base_delay · 2^k`` s (capped at ``max_delay``) before "incorrect", on the reactor.
* **alert** — from ``worker_alert_after`` failures an hour, or when a budget is spent, a
  ``failed_login`` alert for the office (once an hour per worker number).

A *right* PIN is never delayed. On the success path the only cost is two LEFT JOINs of
the (usually empty) ``login_locks`` table into the worker lookup the call makes anyway;
whether the line is trusted is asked only when a lock or guard exists, or on a failure.
Guards are rows of ``login_locks`` with the line ``*`` (all untrusted lines) or ``?*``
(lines that are not a known landline); line keys of such lines start with ``?``.
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


GUARD_ALL = "*"  # login_locks.line of a worker-wide guard: every untrusted line
GUARD_UNKNOWN = "?*"  # ... of the guard on lines that are not a known home landline
UNKNOWN = "?"  # prefix of the line key of such a line


@dataclasses.dataclass(frozen=True)
class Verdict:
    delay: float  # seconds to wait before saying "incorrect"
    lock_until: dt.datetime | None  # lock the (worker, line) pair until then
    alert_worker: bool  # this worker number fails on many lines: tell the office
    guard_until: dt.datetime | None = None  # the worker budget is spent: guard every untrusted line
    guard_unknown_until: dt.datetime | None = None  # the unknown-line budget is spent


@dataclasses.dataclass(frozen=True)
class LockoutPolicy:
    window: dt.timedelta = dt.timedelta(minutes=60)
    free_failures: int = 3
    base_delay: float = 2.0
    max_delay: float = 30.0
    pair_after: int = 10
    lock_for: dt.timedelta = dt.timedelta(minutes=30)
    worker_alert_after: int = 10
    worker_budget: int = 10
    unknown_budget: int = 5
    guard_for: dt.timedelta = dt.timedelta(minutes=60)

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
            worker_budget=getattr(settings, "lockout_worker_budget", 10),
            unknown_budget=getattr(settings, "lockout_unknown_budget", 5),
            guard_for=dt.timedelta(minutes=getattr(settings, "lockout_guard_minutes", 60)),
        )

    def delay(self, failures: int) -> float:
        """``failures`` counts this one: the 4th costs base_delay, the 5th twice that …"""
        extra = failures - self.free_failures
        if extra <= 0:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** min(extra - 1, 30)))

    def decide(self, at: dt.datetime, pair: int, line: int, worker: int, unknown: int = 0,
               trusted: bool = False) -> Verdict:
        """Counts in the window, this failure included; ``unknown`` counts the worker's failures
        on lines that are not a known landline. A trusted line is never locked."""
        lock_until = at + self.lock_for if pair >= self.pair_after and not trusted else None
        guard = at + self.guard_for if worker >= self.worker_budget else None
        guard_unknown = at + self.guard_for if unknown >= self.unknown_budget else None
        alert = worker >= self.worker_alert_after or guard is not None or guard_unknown is not None
        return Verdict(max(self.delay(line), self.delay(worker)), lock_until, alert,
                       guard_until=guard, guard_unknown_until=guard_unknown)


def line_key(caller_e164: str | None, resident_ids: tuple[int, ...] = (), *, landline: bool = True) -> str:
    """What "this line" means: the caller ID, else the home the phone code named, else withheld.

    A line that is not a known home landline (``landline=False``: the caller ID matched no
    home, or was withheld) gets the ``?`` prefix, so its failures count toward the smaller
    unknown-line budget.
    """
    if caller_e164 and landline:
        return caller_e164[:24]
    if caller_e164:
        return UNKNOWN + caller_e164[:23]
    if len(resident_ids) >= 1:
        return f"{UNKNOWN}home:{min(resident_ids)}"
    return f"{UNKNOWN}withheld"


def guard_applies(line: str, guard_all: dt.datetime | None, guard_unknown: dt.datetime | None) -> bool:
    """Whether a worker-wide guard (from the worker lookup's joins) covers this line."""
    return guard_all is not None or (guard_unknown is not None and line.startswith(UNKNOWN))


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
        func.coalesce(func.sum(case(
            ((failures.c.worker_number == bindparam("n4")) & failures.c.line.startswith(UNKNOWN, autoescape=True), 1),
            else_=0,
        )), 0).label("unknown"),
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
                   uniqueid: str, trusted: bool = False) -> tuple[Verdict, tuple[int, int, int]]:
    """Count this failure and decide (inside the call's transaction). Failure path only.

    Returns the verdict and the (pair, line, worker) counts; writes the pair lock and the
    worker-wide guards the verdict asks for.
    """
    number = number[:16]
    _INSERT_FAILURE.run(conn, number=number, line=line, at=at, uid=uniqueid[:64])
    row = _COUNTS.first(conn, n1=number, l1=line, l2=line, n2=number, n3=number, l3=line, n4=number,
                        since=at - policy.window)
    counts = (int(row.pair), int(row.line), int(row.worker))
    verdict = policy.decide(at, *counts, unknown=int(row.unknown), trusted=trusted)
    for key, until, count in ((line, verdict.lock_until, counts[0]), (GUARD_ALL, verdict.guard_until, counts[2]),
                              (GUARD_UNKNOWN, verdict.guard_unknown_until, int(row.unknown))):
        if until is not None and not _EXTEND_LOCK.run(conn, number=number, line=key, until=until, count=count):
            _INSERT_LOCK.run(conn, number=number, line=key, until=until, count=count)
    return verdict, counts


def locked_until(conn: Connection, number: str, line: str) -> dt.datetime | None:
    """For the office and the tests: when this pair's lock ends (None if never locked)."""
    return conn.execute(select(locks.c.until).where(locks.c.worker_number == number, locks.c.line == line)).scalar()
