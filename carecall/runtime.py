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

    @classmethod
    def create(cls, settings: Settings, reactor: Any | None = None) -> Runtime:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        threads = settings.db_threads or (1 if is_sqlite(settings.db_url) else 10)
        engine = make_engine(settings.db_url)
        pool = ThreadPool(minthreads=1, maxthreads=threads, name="carecall-db")
        hasher = PinHasher(load_or_create_key(settings.secret_path))
        return cls(settings, engine, session_factory(engine), pool, hasher, reactor)

    def start(self) -> None:
        if not self.pool.started:
            self.pool.start()

    def stop(self) -> None:
        if self.pool.started:
            self.pool.stop()
        self.engine.dispose()

    def run_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run blocking database work off the reactor thread."""
        return deferToThreadPool(self.reactor, self.pool, fn, *args, **kwargs)
