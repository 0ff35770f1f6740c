"""The FastAGI listener as a Twisted service, one part of ``carecall run`` (carecall/service.py)."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure

from agi.effectprocess import EffectProcessPool
from agi.fastagi import FastAGIFactory, batches_in_flight
from carecall.config import ConfigError
from carecall.logobserver import CallLogger

log = CallLogger(namespace="carecall.agi")

# How long a starting server holds its calls back for the effect workers (they are ready
# in 1-3 s). Past it calls are taken anyway: their check-ins go to the journal until a
# worker is up, which is safe, only slower for the office to see.
WORKERS_READY_WAIT = 15.0


def endpoint_description(host: str, port: int) -> str:
    """A strports description; ``:`` in an IPv6 address must be escaped."""
    return f"tcp:{port}:interface={host.replace(':', chr(92) + ':')}:backlog=1024"


class GatedListener(Service):
    """The FastAGI port, bound at start but accepting only once :meth:`open` is called.

    Binding at once makes a port in use fail ``carecall run`` at start, as before. Not
    accepting until the effect workers are ready means a call that arrives in the first
    seconds waits in the kernel's backlog (Asterisk's connect has already succeeded, it
    is waiting for our first command) instead of being journalled because its first
    database effect timed out behind a worker process still importing its code.
    """

    def __init__(self, reactor: Any, description: str, factory: FastAGIFactory) -> None:
        self.reactor = reactor
        self.description = description
        self.factory = factory
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        outcome: list[Any] = []
        endpoints.serverFromString(self.reactor, self.description).listen(self.factory).addBoth(outcome.append)
        if isinstance(outcome[0], Failure):  # TCP listens at once: the port is in use, or not ours to bind
            outcome[0].raiseException()
        self.port = outcome[0]
        self.port.stopReading()

    def open(self) -> None:
        if self.port is not None and self.running:
            self.port.startReading()  # idempotent: the reactor keeps one registration per reader

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        return maybeDeferred(port.stopListening)


class FastAGIService(MultiService):
    """The listener and (with ``agi_effects = "process"``) the effect worker processes.

    Stopping is graceful (SIGTERM, ``systemctl stop``): the listening socket closes first,
    so Asterisk's next ``AGI()`` connect is refused and goes to the backup target at once;
    the calls in progress then get ``agi_drain_seconds`` to finish
    (:meth:`FastAGIFactory.drain`); only then do the worker processes that write their
    records stop. (``MultiService`` alone would stop all three at the same moment, and a
    call ended by the shutdown could no longer be recorded: ``EffectProcessGone``.)
    """

    def __init__(self, reactor: Any, factory: FastAGIFactory, listener: GatedListener,
                 workers: EffectProcessPool | None, drain_seconds: float,
                 ready_wait: float = WORKERS_READY_WAIT) -> None:
        super().__init__()
        self.setName("fastagi")
        self.reactor = reactor
        self.factory = factory
        self.listener = listener
        self.workers = workers
        self.drain_seconds = drain_seconds
        self.ready_wait = ready_wait
        # Children start in order: the workers, then the port (bound, not yet accepting).
        if workers is not None:
            workers.setServiceParent(self)
        listener.setServiceParent(self)
        self.accepting: Deferred[None] = Deferred()  # fires when calls are taken

    def startService(self) -> None:
        super().startService()
        if self.workers is None:
            self._open(None, 0.0)
            return
        started = self.reactor.seconds()
        ready = self.workers.when_ready().addTimeout(self.ready_wait, self.reactor)
        ready.addBoth(self._open, started)

    def _open(self, result: Any, started: float) -> None:
        if isinstance(result, Failure):
            log.warn("effect workers not ready after {t:g} s; taking calls now (their check-ins are "
                     "journalled until a worker is up)", t=self.ready_wait)
        elif self.workers is not None:
            log.info("effect workers ready in {t:.1f} s; FastAGI taking calls",
                     t=self.reactor.seconds() - started)
        self.listener.open()
        if not self.accepting.called:
            self.accepting.callback(None)

    def stopService(self) -> Deferred[Any]:
        self.running = 0
        d: Deferred[Any] = maybeDeferred(self.listener.stopService)
        d.addBoth(lambda _: self.factory.drain(self.drain_seconds))
        if self.workers is not None:
            workers = self.workers
            d.addBoth(lambda _: workers.stopService())
        return d


def make_service(runtime: Any) -> IService:
    """The listener, and with ``agi_effects = "process"`` the effect worker processes it uses."""
    s = runtime.settings
    if s.agi_effects not in ("process", "thread"):
        raise ConfigError(f"agi_effects must be \"process\" or \"thread\", got {s.agi_effects!r}")
    if s.agi_drain_seconds < 0:
        raise ConfigError(f"agi_drain_seconds must be 0 or more, got {s.agi_drain_seconds!r}")
    workers = None
    if s.agi_effects == "process":
        workers = EffectProcessPool(runtime.reactor, s, batches_in_flight(s, runtime.pool.max))
    factory = FastAGIFactory.from_runtime(runtime, effect_runner=workers.run_batch if workers else None)
    listener = GatedListener(runtime.reactor, endpoint_description(s.agi_host, s.agi_port), factory)
    return FastAGIService(runtime.reactor, factory, listener, workers, s.agi_drain_seconds)
