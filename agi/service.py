"""The FastAGI listener as a Twisted service, one part of ``carecall run`` (carecall/service.py)."""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred

from agi.effectprocess import EffectProcessPool
from agi.fastagi import FastAGIFactory, batches_in_flight
from carecall.config import ConfigError


def endpoint_description(host: str, port: int) -> str:
    """A strports description; ``:`` in an IPv6 address must be escaped."""
    return f"tcp:{port}:interface={host.replace(':', chr(92) + ':')}:backlog=1024"


class FastAGIService(MultiService):
    """The listener and (with ``agi_effects = "process"``) the effect worker processes.

    Stopping is graceful (SIGTERM, ``systemctl stop``): the listening socket closes first,
    so Asterisk's next ``AGI()`` connect is refused and goes to the backup target at once;
    the calls in progress then get ``agi_drain_seconds`` to finish
    (:meth:`FastAGIFactory.drain`); only then do the worker processes that write their
    records stop. (``MultiService`` alone would stop all three at the same moment, and a
    call ended by the shutdown could no longer be recorded: ``EffectProcessGone``.)
    """

    def __init__(self, factory: FastAGIFactory, listener: IService, workers: EffectProcessPool | None,
                 drain_seconds: float) -> None:
        super().__init__()
        self.setName("fastagi")
        self.factory = factory
        self.listener = listener
        self.workers = workers
        self.drain_seconds = drain_seconds
        # Children start in order: the workers before the listener opens.
        if workers is not None:
            workers.setServiceParent(self)
        listener.setServiceParent(self)

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
    listener = strports.service(endpoint_description(s.agi_host, s.agi_port), factory)
    return FastAGIService(factory, listener, workers, s.agi_drain_seconds)
