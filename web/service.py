"""The office web listener as a Twisted service inside the carecall server process."""

from __future__ import annotations

from typing import Any

from twisted.application import internet, service
from twisted.internet import endpoints

from carecall.runtime import Runtime
from web.site import build_app, build_site


class WebService(service.MultiService):
    """TCP listener plus the live board hub, started and stopped together."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.app = build_app(runtime)
        settings = runtime.settings
        endpoint = endpoints.TCP4ServerEndpoint(runtime.reactor, settings.web_port, interface=settings.web_host)
        self.listener = internet.StreamServerEndpointService(endpoint, build_site(self.app))
        self.listener.setServiceParent(self)

    def startService(self) -> None:
        for hub in self.app.hubs:
            hub.start()
        super().startService()

    def stopService(self) -> Any:
        for hub in self.app.hubs:
            hub.stop()
        return super().stopService()


def make_service(runtime: Runtime) -> service.IService:
    return WebService(runtime)
