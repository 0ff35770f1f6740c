"""Helpers for the call tests: an in-process FastAGI server on a real loopback port.

``start_server(settings, now)`` listens on 127.0.0.1 port 0 with the real reactor,
a real database thread pool and a clock whose ``seconds()`` is pinned to ``now`` (so
logged times are exact) while timeouts still run on the reactor.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol

from agi.fastagi import FastAGIFactory
from agi.simulator import CallScript, SimResult, simulate
from carecall.config import Settings
from carecall.runtime import Runtime
from ivr.models import Attendance, CallRecord

# Tuesday 10 March 2026, 09:00 UTC = 09:00 in London (GMT until 29 March).
T0 = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)
R001_LINE = "020 8698 9911"


class PinnedClock:
    """``seconds()`` from a settable instant; ``callLater`` on the real reactor."""

    def __init__(self, reactor: Any, now: dt.datetime) -> None:
        self.reactor = reactor
        self.now = now

    def seconds(self) -> float:
        return self.now.timestamp()

    def callLater(self, delay: float, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.reactor.callLater(delay, fn, *args, **kwargs)

    def getDelayedCalls(self) -> list[Any]:
        return self.reactor.getDelayedCalls()


@dataclasses.dataclass
class TestServer:
    reactor: Any
    runtime: Runtime
    factory: FastAGIFactory
    clock: PinnedClock
    port: int
    listener: Any
    events: list[tuple[str, dict[str, Any]]]
    workers: Any = None  # agi.effectprocess.EffectProcessPool when the effects run in processes

    __test__ = False

    def call(self, **kwargs: Any) -> Deferred[SimResult]:
        kwargs.setdefault("port", self.port)
        return simulate(self.reactor, "127.0.0.1", self.port, CallScript(**kwargs), timeout=20)

    def at(self, when: dt.datetime) -> None:
        self.clock.now = when

    def stop(self) -> Deferred[Any]:
        d = self.listener.stopListening()
        if self.workers is not None:
            d.addBoth(lambda _: self.workers.stopService())

        def done(_: Any) -> None:
            self.runtime.stop()

        return d.addBoth(done)


def start_server(settings: Settings, now: dt.datetime = T0, effects: str = "thread") -> TestServer:
    """``effects="thread"`` (most tests: no child process to start) or ``"process"`` (worker processes)."""
    from twisted.internet import reactor

    from agi.effectprocess import EffectProcessPool

    runtime = Runtime.create(settings, reactor)
    runtime.start()
    clock = PinnedClock(reactor, now)
    workers = None
    if effects == "process":
        workers = EffectProcessPool(reactor, settings, 1)
        workers.startService()
    factory = FastAGIFactory.from_runtime(runtime, clock, effect_runner=workers.run_batch if workers else None)
    listener = reactor.listenTCP(0, factory, interface="127.0.0.1")
    events: list[tuple[str, dict[str, Any]]] = []
    runtime.events.subscribe(lambda kind, payload: events.append((kind, payload)))
    return TestServer(reactor, runtime, factory, clock, listener.getHost().port, listener, events, workers)


class _Raw(Protocol):
    def __init__(self, data: bytes, done: Deferred[bytes], close_after: bool) -> None:
        self.data = data
        self.done = done
        self.close_after = close_after
        self.received = bytearray()

    def connectionMade(self) -> None:
        self.transport.write(self.data)  # type: ignore[union-attr]
        if self.close_after:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(bytes(self.received))


def raw_exchange(reactor: Any, port: int, data: bytes, close_after: bool = False) -> Deferred[bytes]:
    """Send raw bytes; fires with everything the server wrote once it closes the connection."""
    done: Deferred[bytes] = Deferred()

    class F(ClientFactory):
        def buildProtocol(self, addr: Any) -> _Raw:
            return _Raw(data, done, close_after)

        def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
            done.errback(reason)

    reactor.connectTCP("127.0.0.1", port, F())
    timer = reactor.callLater(20, lambda: done.called or done.errback(TimeoutError("server never closed")))
    return done.addBoth(lambda v: (timer.active() and timer.cancel(), v)[1])


def calls(factory: Any) -> list[CallRecord]:
    with factory() as s:
        return list(s.scalars(select(CallRecord).order_by(CallRecord.id)))


def attendances(factory: Any) -> list[Attendance]:
    with factory() as s:
        return list(s.scalars(select(Attendance).order_by(Attendance.id)))
