"""What a running carecall process shares: settings, database, thread pool, PIN key.

The reactor thread never touches the database. Blocking SQLAlchemy work goes through
:meth:`Runtime.run_db`, which runs a plain function in a dedicated thread pool and hands
back a Deferred; the function opens its own ``Session`` and returns plain data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from carecall.config import Settings
from ivr.db import is_sqlite, make_engine, session_factory
from ivr.pins import PinHasher, load_or_create_key

T = TypeVar("T")


class EventHub:
    """In-process notifications (a call was recorded, an alert raised), reactor thread only.

    Other servers on the same database learn the same facts by polling it; this only
    makes the local board quicker.
    """

    def __init__(self) -> None:
        self._subscribers: list[Callable[[str, dict[str, Any]], None]] = []

    def subscribe(self, callback: Callable[[str, dict[str, Any]], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        for callback in list(self._subscribers):
            callback(kind, payload)


@dataclasses.dataclass
class Runtime:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    pool: ThreadPool
    hasher: PinHasher
    reactor: Any
    events: EventHub = dataclasses.field(default_factory=EventHub)
    journal: Any = None  # ivr.journal.CallJournal: check-ins the database could not take
    journal_pool: ThreadPool | None = None  # one thread: fsynced appends, in order, off the reactor
    # False while the schema upgrade has not run (started with the database down,
    # carecall/schema_upgrade.py): the call path journals without touching the database.
    schema_ready: bool = True
    ready_callbacks: list[Callable[[], None]] = dataclasses.field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings, reactor: Any | None = None) -> Runtime:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        threads = settings.db_threads or (1 if is_sqlite(settings.db_url) else 10)
        # hide_parameters: an error message must not carry a caller's number into the logs.
        engine = make_engine(settings.db_url, hide_parameters=True)
        pool = ThreadPool(minthreads=1, maxthreads=threads, name="carecall-db")
        hasher = PinHasher(load_or_create_key(settings.secret_path))
        from ivr.journal import CallJournal, directory_for

        journal = CallJournal(directory_for(settings), hasher)
        journal_pool = ThreadPool(minthreads=1, maxthreads=1, name="carecall-journal")
        return cls(settings, engine, session_factory(engine), pool, hasher, reactor, journal=journal,
                   journal_pool=journal_pool)

    def start(self) -> None:
        if not self.pool.started:
            self.pool.start()
        if self.journal_pool is not None and not self.journal_pool.started:
            self.journal_pool.start()

    def stop(self) -> None:
        if self.pool.started:
            self.pool.stop()
        if self.journal_pool is not None and self.journal_pool.started:
            self.journal_pool.stop()
        self.engine.dispose()

    def mark_ready(self) -> None:
        """The schema is current: the database may be used (and the journal replayed)."""
        self.schema_ready = True
        for callback in list(self.ready_callbacks):
            callback()

    def run_journal(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """Journal work (fsynced appends, status reads) on its own thread: never behind a
        database that hangs. A runtime built without a journal pool uses the database pool."""
        pool = self.journal_pool if self.journal_pool is not None else self.pool
        return deferToThreadPool(self.reactor, pool, fn, *args)

    def replay_journal(self) -> Deferred[Any]:
        """The journal into the database (in the database pool) → ``ReplayReport``."""
        from ivr.callstore import CallStore

        return self.run_db(self.journal.replay, self.factory, CallStore.from_runtime(self))

    def journal_status(self) -> dict[str, Any]:
        """For the office board: is this server running on its journal? (reads the files: call off-reactor)."""
        from ivr.journal import status

        return status(self.settings)

    def run_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run blocking database work off the reactor thread."""
        return deferToThreadPool(self.reactor, self.pool, fn, *args, **kwargs)
