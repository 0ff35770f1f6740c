"""The carecall server as one Twisted ``MultiService``.

Each feature package contributes its part through a ``make_service(runtime)`` function
(FastAGI listener, office web, alert scheduler); the list below is the one place that
says what a server runs. A part may decline (``None``), e.g. alerts switched off.
"""

from __future__ import annotations

import importlib
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred

from carecall.runtime import Runtime

SERVICE_MODULES = ("agi.service", "web.service", "scheduler.service", "privacy.service")


class CarecallService(MultiService):
    """The server: the runtime's thread pools start before the parts and stop after them.

    ``MultiService`` stops all its children at once; a part that is finishing work in
    the database pool (an alert tick, a journal replay) returns a Deferred that fires
    only when that work is done. Stopping the pool at the same moment would drop the
    queued work (``ThreadPool.stop`` stops doing work), the Deferred would never fire,
    and the reactor would wait for it forever. So the pools stop only once every
    part's Deferred has fired.
    """

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime

    def startService(self) -> None:
        self.runtime.start()
        super().startService()

    def stopService(self) -> Deferred[None]:
        d: Deferred[Any] = maybeDeferred(super().stopService)

        def stop_runtime(result: Any) -> Any:
            self.runtime.stop()
            return result

        return d.addBoth(stop_runtime)


def make_service(runtime: Runtime, modules: tuple[str, ...] = SERVICE_MODULES) -> CarecallService:
    top = CarecallService(runtime)
    for name in modules:
        child: IService | None = importlib.import_module(name).make_service(runtime)
        if child is not None:
            child.setServiceParent(top)
    return top
