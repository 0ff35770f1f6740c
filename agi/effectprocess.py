"""The server's side of the effect worker processes (:mod:`agi.effectworker`).

``agi_effects = "process"`` (the default) runs the calls' group-commit batches in
worker processes instead of the database thread pool, so their Python work never holds
the reactor's GIL. One process runs one batch at a time; the pool has as many processes
as batches may be in flight (1 for SQLite, 2 for PostgreSQL).

A worker that dies (killed, out of memory, a bug) fails the batch it was running and
is started again a second later; meanwhile batches fail at once. A failed check-in
batch is not lost: the dialog journals it (:mod:`ivr.journal`) and tells the worker it
is logged, exactly as when the database itself is down.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from agi.effects import Outcome
from agi.effectworker import HEADER, MAX_FRAME, frame
from carecall.logobserver import CallLogger

log = CallLogger(namespace="carecall.agi.effects")
ROOT = Path(__file__).resolve().parent.parent
RESTART_DELAY = 1.0
STOP_TIMEOUT = 10.0


class EffectProcessGone(Exception):
    """The worker process died or is restarting: this batch did not run (or did not commit)."""


class EffectProcess(ProcessProtocol):
    """One worker process and the batches sent to it (reactor thread only)."""

    def __init__(self, reactor: Any, settings: Any, name: str) -> None:
        self.reactor = reactor
        self.settings = settings
        self.name = name
        self.running = False
        self.stopping = False
        self.started = 0  # how many times it was spawned (a restart counts)
        self.pending: dict[int, Deferred[list[Outcome]]] = {}
        self._buffer = bytearray()
        self._next_id = 0
        self._restart: Any = None
        self._ended: list[Deferred[None]] = []
        self.ready = False  # the worker has opened its store and said so (its first frame)
        self._ready_waiters: list[Deferred[None]] = []

    @property
    def busy(self) -> int:
        return len(self.pending)

    def start(self) -> None:
        self._restart = None
        if self.running or self.stopping:
            return
        self._buffer.clear()
        self.ready = False
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, PYTHONPATH=path)
        self.reactor.spawnProcess(self, sys.executable, [sys.executable, "-m", "agi.effectworker"], env=env,
                                  childFDs={0: "w", 1: "r", 2: "r"})
        self.running = True
        self.started += 1
        self.transport.write(frame(self.settings))  # type: ignore[union-attr]

    def when_ready(self) -> Deferred[None]:
        """Fires once the worker has imported its code and built its store (1-3 s after a start)."""
        if self.ready:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._ready_waiters.append(d)
        return d

    def run_batch(self, effects: Sequence[Any]) -> Deferred[list[Outcome]]:
        if not self.running or self.stopping:
            return fail(EffectProcessGone(f"{self.name} is not running"))
        self._next_id += 1
        d: Deferred[list[Outcome]] = Deferred()
        self.pending[self._next_id] = d
        self.transport.write(frame((self._next_id, list(effects))))  # type: ignore[union-attr]
        return d

    # ------------------------------------------------------------ the pipe

    def outReceived(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while len(buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(buf)
            if size > MAX_FRAME:
                log.error("{name}: frame of {size} bytes; killing the worker", name=self.name, size=size)
                self.transport.signalProcess("KILL")  # type: ignore[union-attr]
                return
            if len(buf) < HEADER.size + size:
                return
            batch_id, outcomes = pickle.loads(bytes(buf[HEADER.size : HEADER.size + size]))  # our own child
            del buf[: HEADER.size + size]
            if batch_id == "ready":
                self.ready = True
                waiters, self._ready_waiters = self._ready_waiters, []
                for waiter in waiters:
                    if not waiter.called:  # a waiter that gave up (timed out) was cancelled
                        waiter.callback(None)
                continue
            d = self.pending.pop(batch_id, None)
            if d is not None:
                d.callback(outcomes)

    def errReceived(self, data: bytes) -> None:
        from agi.fastagi import redact

        # A worker only writes here when it crashes; numbers in the text are masked.
        text = redact(data.decode("utf-8", "replace").strip())[-2000:]
        if text:
            log.error("{name} stderr: {text}", name=self.name, text=text)

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        self.ready = False
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.errback(Failure(EffectProcessGone(f"{self.name} exited while running a batch")))
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(None)
        if self.stopping:
            return
        clean = reason.check(ProcessDone) is not None
        log.error("{name} exited ({how}); {lost} batch(es) failed; restarting in {delay:g} s", name=self.name,
                  how="cleanly" if clean else reason.getErrorMessage(), lost=len(pending), delay=RESTART_DELAY)
        self._restart = self.reactor.callLater(RESTART_DELAY, self.start)

    def stop(self) -> Deferred[None]:
        """End of stdin: the worker finishes its batch and exits; killed after STOP_TIMEOUT."""
        self.stopping = True
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        if not self.running:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._ended.append(d)
        self.transport.closeStdin()  # type: ignore[union-attr]
        timer = self.reactor.callLater(STOP_TIMEOUT, self._kill)
        return d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])

    def _kill(self) -> None:
        if self.running:
            log.warn("{name} did not stop within {t:g} s; killed", name=self.name, t=STOP_TIMEOUT)
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]


class EffectProcessPool(Service):
    """``n`` worker processes; a batch goes to the least busy one (the batcher sends at most ``n``)."""

    def __init__(self, reactor: Any, settings: Any, n: int) -> None:
        self.processes = [EffectProcess(reactor, settings, f"effect worker {i + 1}") for i in range(max(1, n))]

    def run_batch(self, effects: Sequence[Any]) -> Deferred[list[Outcome]]:
        alive = [p for p in self.processes if p.running and not p.stopping]
        if not alive:
            return fail(EffectProcessGone("no effect worker is running"))
        return min(alive, key=lambda p: p.busy).run_batch(effects)

    def when_ready(self) -> Deferred[None]:
        """Fires once every worker is ready for its first batch."""
        d = DeferredList([p.when_ready() for p in self.processes], consumeErrors=True)
        return d.addCallback(lambda _: None)

    def startService(self) -> None:
        super().startService()
        for p in self.processes:
            p.start()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        return DeferredList([p.stop() for p in self.processes])
