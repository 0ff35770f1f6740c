"""A starting server takes calls only once it can record them (docs/reliability.md, "Cold start").

Before, the FastAGI port accepted calls the moment ``carecall run`` started, while the
effect worker process was still importing its code (1-3 s): the first call's line
lookup waited past ``agi_effect_timeout`` and the check-in went to the journal, so the
office saw it only after a replay. Now the port is bound at once (a port in use still
fails the start) and accepts once the workers are ready; a call in the first seconds
waits in the kernel's backlog.
"""

from __future__ import annotations

import datetime as dt
import socket

import pytest
import pytest_twisted
from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol

from agi.service import FastAGIService, GatedListener
from agi.simulator import CallScript, simulate_blocking
from tests.callhelpers import attendances, calls
from tests.carecall_process import CarecallProcess
from tests.helpers import add_visits, factory_for, import_world


class Hello(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hello\n")


class FakeWorkers(Service):
    """Effect workers whose readiness the test decides."""

    def __init__(self) -> None:
        self.ready: Deferred[None] = Deferred()

    def when_ready(self) -> Deferred[None]:
        return self.ready


class Greeting(Protocol):
    def __init__(self, got: Deferred[bytes]) -> None:
        self.got = got

    def dataReceived(self, data: bytes) -> None:
        if not self.got.called:
            self.got.callback(data)


def connect(port: int) -> Deferred[bytes]:
    got: Deferred[bytes] = Deferred()
    client = ClientFactory()
    client.buildProtocol = lambda addr: Greeting(got)  # type: ignore[method-assign]
    reactor.connectTCP("127.0.0.1", port, client)
    return got


def sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


def gated_service(ready_wait: float = 30.0) -> tuple[FastAGIService, FakeWorkers]:
    factory = Factory.forProtocol(Hello)
    listener = GatedListener(reactor, "tcp:0:interface=127.0.0.1", factory)  # type: ignore[arg-type]
    workers = FakeWorkers()
    service = FastAGIService(reactor, factory, listener, workers, 0.0, ready_wait=ready_wait)  # type: ignore[arg-type]
    return service, workers


@pytest_twisted.inlineCallbacks
def test_the_port_is_bound_at_start_but_a_call_is_taken_only_once_the_workers_are_ready():
    service, workers = gated_service()
    service.startService()
    try:
        port = service.listener.port.getHost().port
        got = connect(port)
        yield sleep(0.5)  # a connection the server would have taken is answered within ms
        assert not got.called, "the server took a call before its effect workers were ready"
        assert not service.accepting.called
        workers.ready.callback(None)
        greeting = yield got
        assert greeting == b"hello\n"
        assert service.accepting.called
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_workers_that_never_get_ready_do_not_keep_the_port_shut():
    service, _workers = gated_service(ready_wait=0.3)
    service.startService()
    try:
        greeting = yield connect(service.listener.port.getHost().port)
        assert greeting == b"hello\n"  # taken after 0.3 s: such calls go to the journal, not to silence
    finally:
        yield service.stopService()


def test_a_port_in_use_still_fails_the_start_at_once():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        listener = GatedListener(reactor, f"tcp:{taken}:interface=127.0.0.1", Factory.forProtocol(Hello))  # type: ignore[arg-type]
        with pytest.raises(Exception, match=r"Address already in use|Couldn't listen"):
            listener.startService()


def test_the_first_call_after_carecall_run_starts_is_recorded_not_journalled(settings, tmp_path):
    """A real ``carecall run``, called the moment it says it is running.

    ``agi_effect_timeout = 1`` (a second, less than a cold worker takes to start): before
    this change the first check-in timed out behind the starting worker and was journalled.
    """
    factory = factory_for(settings)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    import_world(settings, factory)
    add_visits(settings, factory, ("V1", "R001", now - dt.timedelta(minutes=5), 30, "1001"))
    server = CarecallProcess(settings, tmp_path / "server", agi_effect_timeout=1.0).start()
    try:
        result = simulate_blocking("127.0.0.1", server.agi_port,
                                   CallScript(digits=("1001", "1234"), uniqueid="cold-1"), timeout=60)
        assert result.completed, result
        assert "agent-loginok" in result.played(), result.played()  # "logged", not the journal's "thank you"
        [call] = calls(factory)
        assert call.outcome == "arrival", call.outcome
        [att] = attendances(factory)
        assert att.arrival_uniqueid == "cold-1"
    finally:
        server.stop()
    assert "effect workers ready in" in server.text()  # the log is flushed at exit
