"""The FastAGI listener as a Twisted service, one part of ``carecall run`` (carecall/service.py)."""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.service import IService

from agi.fastagi import FastAGIFactory


def endpoint_description(host: str, port: int) -> str:
    """A strports description; ``:`` in an IPv6 address must be escaped."""
    return f"tcp:{port}:interface={host.replace(':', chr(92) + ':')}:backlog=1024"


def make_service(runtime: Any) -> IService:
    s = runtime.settings
    factory = FastAGIFactory.from_runtime(runtime)
    service = strports.service(endpoint_description(s.agi_host, s.agi_port), factory)
    service.setName("fastagi")
    return service
