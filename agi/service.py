"""The FastAGI listener as a Twisted service, one part of ``carecall run`` (carecall/service.py)."""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService

from agi.effectprocess import EffectProcessPool
from agi.fastagi import FastAGIFactory, batches_in_flight
from carecall.config import ConfigError


def endpoint_description(host: str, port: int) -> str:
    """A strports description; ``:`` in an IPv6 address must be escaped."""
    return f"tcp:{port}:interface={host.replace(':', chr(92) + ':')}:backlog=1024"


def make_service(runtime: Any) -> IService:
    """The listener, and with ``agi_effects = "process"`` the effect worker processes it uses."""
    s = runtime.settings
    if s.agi_effects not in ("process", "thread"):
        raise ConfigError(f"agi_effects must be \"process\" or \"thread\", got {s.agi_effects!r}")
    workers = None
    if s.agi_effects == "process":
        workers = EffectProcessPool(runtime.reactor, s, batches_in_flight(s, runtime.pool.max))
    factory = FastAGIFactory.from_runtime(runtime, effect_runner=workers.run_batch if workers else None)
    listener = strports.service(endpoint_description(s.agi_host, s.agi_port), factory)
    if workers is None:
        listener.setName("fastagi")
        return listener
    # Children start in order and stop in reverse: the workers before the listener opens,
    # and after it has closed.
    service = MultiService()
    service.setName("fastagi")
    workers.setServiceParent(service)
    listener.setServiceParent(service)
    return service
