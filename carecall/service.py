"""The carecall server as one Twisted ``MultiService``.

Each feature package contributes its part through a ``make_service(runtime)`` function
(FastAGI listener, office web, alert scheduler); the list below is the one place that
says what a server runs. A part may decline (``None``), e.g. alerts switched off.
"""

from __future__ import annotations

import importlib
from typing import Any

from twisted.application.service import IService, MultiService, Service

from carecall.runtime import Runtime

SERVICE_MODULES = ("agi.service", "web.service", "scheduler.service")


class RuntimeService(Service):
    """Starts the database thread pool first and stops it last."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def startService(self) -> None:
        self.runtime.start()
        super().startService()

    def stopService(self) -> Any:
        super().stopService()
        self.runtime.stop()


def make_service(runtime: Runtime, modules: tuple[str, ...] = SERVICE_MODULES) -> MultiService:
    top = MultiService()
    RuntimeService(runtime).setServiceParent(top)
    for name in modules:
        child: IService | None = importlib.import_module(name).make_service(runtime)
        if child is not None:
            child.setServiceParent(top)
    return top
