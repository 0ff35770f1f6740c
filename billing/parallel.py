"""Working a big invoice run's bills out in worker processes while the run's own process writes.

Why: in one process, reading a period's attendances, applying the rules and writing the
lines took 6 s for 350,000 attendances. Reading and computing need no write lock, so
they go to other cores: workers take batches of residents (:data:`billing.queries.BATCH`;
the first few cut smaller, so writing starts at once) and return their bills in staged
form (:class:`billing.line_store.StagedBill`), while the run's process stores the
batches already done. The rules are the same functions either way
(:func:`billing.queries.package_bills`); only where they run changes.

What the workers read is what the run would have read itself:

- SQLite: the run's transaction took the write lock at ``BEGIN IMMEDIATE`` before any
  batch was handed out, so no connection can commit until the run does; each worker's read
  sees the database as the run sees it (the run's own writes are to tables the workers do
  not read).
- PostgreSQL: the run's transaction is REPEATABLE READ and exports its snapshot
  (``pg_export_snapshot``); each worker's transaction imports it (``SET TRANSACTION
  SNAPSHOT``), as ``pg_dump --jobs`` does.

Results come back in batch order, so line ids and invoice numbers are exactly those of a
run in one process (``tests/test_billing_parallel.py``); at most ``2 × workers`` batches
wait beyond the one being stored (:func:`in_order`), so memory stays flat. Workers are
forked when the calling process has one thread (the CLI: no start-up cost, every module
already imported, the period's bank-holiday classes already worked out) and come from a
fork server otherwise (the web server's threads make a plain fork unsafe).
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as dt
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session, sessionmaker

from billing.funders import BillTo
from billing.line_store import StagedBill, staged
from billing.queries import FunderPeriod, Unassigned, package_bills
from billing.rules import BillingConfig, day_class
from ivr.db import make_engine, reading, session_factory


def default_workers() -> int:
    """One worker per core, at most four: the run's own process spends much of its time in
    SQLite's C code and waiting for results (measured on two cores: two workers 3.6 s, one 4.2 s)."""
    return max(1, min(4, os.cpu_count() or 1))


def worker_count(requested: int | None, config: BillingConfig, big: Callable[[], bool]) -> int:
    """The worker processes to start: as many as asked (0: none), else ``[billing] workers``
    for a big job and none for a small one (``big`` is asked only then: it may query)."""
    if requested is not None:
        return requested
    if not big():
        return 0
    return default_workers() if config.workers is None else config.workers


def database_url(conn: Connection) -> str:
    """The URL a worker connects with (the password too: it is the run's own database)."""
    return conn.engine.url.render_as_string(hide_password=False)


def process_pool(workers: int, initializer: Callable[..., None],
                 initargs: tuple[Any, ...]) -> concurrent.futures.ProcessPoolExecutor:
    """Worker processes, forked if this process has one thread, else from a fork server.

    A fork copies the run's process as it is, so the workers start at once with every
    module imported; with other threads running (the web server's) a fork could copy a
    lock some thread holds, so a clean fork server starts them instead. A forked worker
    never touches the connections it inherits: it opens its own (``initializer``).
    """
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start_method()),
                                                  initializer=initializer, initargs=initargs)


def start_method() -> str:
    """"fork" while this process has one thread, else "forkserver" (or "spawn" where there is none)."""
    methods = multiprocessing.get_all_start_methods()
    if threading.active_count() == 1 and "fork" in methods:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


_END = object()


def in_order(pool: concurrent.futures.Executor, fn: Callable[..., Any], items: Iterable[tuple[Any, ...]],
             ahead: int) -> Iterator[tuple[tuple[Any, ...], concurrent.futures.Future[Any]]]:
    """``fn(*item)`` for every item on ``pool``, handed back as (item, future) in the items' order.

    At most ``ahead`` items wait in the pool beyond the one handed back, so a fast pool
    never piles results up in memory; the next item is submitted before the caller waits
    for this one. The caller may look at an item before waiting for its result (the
    issue run does, to see where one funder period ends).
    """
    window: collections.deque[tuple[tuple[Any, ...], concurrent.futures.Future[Any]]] = collections.deque()
    todo = iter(items)

    def submit() -> None:
        item = next(todo, _END)
        if item is not _END:
            window.append((item, pool.submit(fn, *item)))

    for _ in range(ahead):
        submit()
    while window:
        step = window.popleft()
        submit()
        yield step


# --- inside a worker process -----------------------------------------------------------------

_worker: dict[str, Any] = {}


def worker_signals() -> None:
    """A worker ends on SIGTERM and leaves Ctrl-C to the run's process.

    A forked worker inherits its parent's handlers: under a Twisted reactor SIGTERM only
    asks the reactor to stop, so a pool shutting down after a worker died waited forever
    for the others. The run's process handles Ctrl-C and stops its pool.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_worker(url: str, config: BillingConfig, snapshot: str | None) -> None:
    worker_signals()
    engine = make_engine(url, pool_size=1, max_overflow=0) if snapshot else make_engine(url)
    _worker.update(factory=session_factory(engine), config=config, snapshot=snapshot)


def _batch(fp: FunderPeriod, resident_ids: list[int]) -> tuple[list[StagedBill], list[int]]:
    factory: sessionmaker[Session] = _worker["factory"]
    config: BillingConfig = _worker["config"]
    unassigned = Unassigned()
    snapshot = _worker["snapshot"]
    with (reading(factory) if snapshot is None else factory()) as session:
        if snapshot is not None:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            session.execute(text(f"SET TRANSACTION SNAPSHOT '{_quote(snapshot)}'"))
        # A private client's invoice is addressed to them (or their representative): looked up
        # here, beside the bill, so the run's own process does one query less per client.
        bill_to = BillTo(session) if config.for_funder(fp.funder).private else None
        bills = [staged(b, bill_to(fp.funder, b.package.resident_id) if bill_to else None)
                 for b in package_bills(session, config, fp, resident_ids, unassigned)]
        session.rollback()
    return bills, sorted(unassigned.attendance_ids)


def _quote(snapshot: str) -> str:
    # pg_export_snapshot() returns e.g. "00000003-0000001B-1"; SET TRANSACTION SNAPSHOT takes no bind parameter.
    if not all(c.isalnum() or c == "-" for c in snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    return snapshot


# --- in the run's process ----------------------------------------------------------------------


def _ramp(plan: Iterator[tuple[FunderPeriod, list[int]]], parts: int) -> Iterator[tuple[FunderPeriod, list[int]]]:
    """The plan with its first batches cut small (the first in ``parts``, the next in half as many …).

    Why: the run's process then has lines to write as soon as a few residents are done,
    not a whole batch each worker (it waited 0.3 s of 3.7 s at 350,000). Batches are only
    lists of residents in order, so the bills, and the lines, are the same.
    """
    for fp, ids in plan:
        size = max(1, -(-len(ids) // parts))
        for i in range(0, len(ids), size):
            yield fp, ids[i:i + size]
        if parts == 1:
            break
        parts //= 2
    yield from plan


class BillWorkers:
    """A pool of bill workers for one issue run (a context manager: the processes end with it).

    ``plan`` is every (funder period, batch of resident ids) of the run in the order the
    run asks for them (:meth:`bills`, one funder period after another); the pool works
    ahead along it, across funder periods, so no worker waits while the run finishes one.
    """

    def __init__(self, session: Session, config: BillingConfig, workers: int, periods: Iterable[FunderPeriod],
                 plan: Iterable[tuple[FunderPeriod, list[int]]]) -> None:
        for fp in periods:
            # The rate class of each day of the period, worked out once here, before the fork:
            # a worker would otherwise load the bank-holiday tables itself (0.4 s each).
            day = fp.period.start
            while day < fp.period.end:
                day_class(day, fp.rules.holiday_subdiv)
                day += dt.timedelta(days=1)
        conn = session.connection()
        snapshot = None
        if conn.dialect.name == "postgresql":
            snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
        self.pool = process_pool(workers, _start_worker, (database_url(conn), config, snapshot))
        ahead = 2 * workers
        self.steps = in_order(self.pool, _batch, _ramp(iter(plan), ahead), ahead)
        self.next_step: tuple[tuple[Any, ...], concurrent.futures.Future[Any]] | None = None

    def __enter__(self) -> BillWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def bills(self, fp: FunderPeriod, unassigned: Unassigned) -> Iterator[StagedBill]:
        """The bills of every batch of ``fp`` in the plan, in batch order."""
        while True:
            if self.next_step is None:
                self.next_step = next(self.steps, None)
            # The next batch belongs to a later funder period: that period's turn has not come.
            if self.next_step is None or self.next_step[0][0] is not fp:
                return
            bills, missing = self.next_step[1].result()
            self.next_step = None
            unassigned.attendance_ids.update(missing)
            yield from bills
