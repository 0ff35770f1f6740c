"""The Twisted FastAGI server: moves bytes between sockets and the codec, runs effects, keeps time.

All call logic is in :class:`ivr.dialog.Dialog`; all protocol rules in
:class:`agi.codec.AGIConnection`. This module only glues them to the reactor:

* bytes from the socket go into the codec; its events go into the dialog;
* the dialog's commands go out through the codec (which refuses a second command
  while one is outstanding); its effects run in the database thread pool through
  ``run_db`` (never SQL on the reactor thread), several calls' at a time
  (:mod:`agi.effects`, group commit), and their results go back in;
* time comes from an injectable clock (``IReactorTime``): an idle timeout and a total
  call limit cut calls whose peer went silent;
* when the dialog finishes, the connection is closed (after our own ``HANGUP``'s reply
  a real Asterisk keeps the channel inside ``AGI()`` until we do).

A connection that sends garbage is logged, hung up and closed; it shares nothing with
other connections except the thread pool, so it cannot affect them.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from agi.codec import (
    NEED_DATA,
    AGIConnection,
    Closed,
    Environment,
    Hangup,
    LocalProtocolError,
    RemoteProtocolError,
)
from agi.effects import EffectBatcher, in_thread_pool, one_by_one
from agi.scripts import ScriptRegistry, inbound_registry, registry_for
from carecall.logobserver import CallLogger
from ivr.callstore import CallStore
from ivr.db import is_sqlite
from ivr.dialog import Action, AppendJournal, CheckIn, Command, Dialog, DialogConfig, Finished, Wait, script_name
from ivr.phone import mask

log = CallLogger(namespace="carecall.agi")
_DIGITS = re.compile(r"\+?\d[\d ()-]{2,}\d")


def redact(text: str) -> str:
    """Peer-supplied text for a log line: phone numbers masked to their last 3 digits, short runs (a PIN,
    a worker number) masked whole."""
    def hide(m: re.Match[str]) -> str:
        digits = sum(c.isdigit() for c in m.group(0))
        return "*" * digits if digits <= 8 else mask(m.group(0))

    return _DIGITS.sub(hide, text)


class FastAGIProtocol(Protocol):
    """One FastAGI connection = one call."""

    def __init__(self, factory: FastAGIFactory) -> None:
        self.factory = factory
        self.codec = AGIConnection()
        self.dialog: Any = Dialog(factory.config, factory.clock.seconds)
        # Set when the script's registry entry runs its own effects (outbound dialogs).
        self._run_effect: Callable[[Any], Any] | None = None
        self._lost = False
        self._timer: IDelayedCall | None = None
        self._started = 0.0
        self._last = 0.0
        self._stage = ""
        self._waiting: IDelayedCall | None = None
        self._direct: socket.socket | None = None

    # ------------------------------------------------------------ transport events

    def connectionMade(self) -> None:
        f = self.factory
        self._started = self._last = f.clock.seconds()
        f.active += 1
        f.peak = max(f.peak, f.active)
        self._timer = f.clock.callLater(min(f.idle_timeout, f.call_limit), self._check_time)
        handle = getattr(self.transport, "getHandle", None)
        sock = handle() if handle is not None else None
        self._direct = sock if isinstance(sock, socket.socket) else None

    def dataReceived(self, data: bytes) -> None:
        self._last = self.factory.clock.seconds()
        try:
            self.codec.receive_data(data)
            self._pump()
        except RemoteProtocolError as exc:
            self._garbage(str(exc))

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._lost = True
        self.factory.active -= 1
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.dialog.finished:
            return
        self._act(self.dialog.hangup("connection closed"))

    # ------------------------------------------------------------ time

    def _check_time(self) -> None:
        f = self.factory
        now = f.clock.seconds()
        self._timer = None
        if now - self._started >= f.call_limit:
            self._cut(f"call longer than {f.call_limit:g} s")
        elif now - self._last >= f.idle_timeout:
            self._cut(f"peer silent for {f.idle_timeout:g} s")
        else:
            due = min(self._last + f.idle_timeout, self._started + f.call_limit) - now
            self._timer = f.clock.callLater(max(due, 0.01), self._check_time)

    def _cut(self, why: str) -> None:
        log.warn("call {uniqueid} caller={caller} cut: {why}", uniqueid=self.dialog.uniqueid,
                 caller=mask(self.dialog.caller_e164), why=why)
        self._act(self.dialog.hangup(why))
        if self.transport is not None and not self._lost:
            self.transport.abortConnection()

    # ------------------------------------------------------------ codec → dialog

    def _pump(self) -> None:
        while True:
            event = self.codec.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, Environment):
                script = self.factory.scripts.get(script_name(event.vars))
                if script is not None:
                    self.dialog = script.make_dialog(self.factory.clock.seconds)
                    self._run_effect = script.run_effect
                self._act(self.dialog.start(event.vars))
            elif isinstance(event, Hangup | Closed):
                if not self.dialog.finished:
                    self._act(self.dialog.hangup("HANGUP from Asterisk" if isinstance(event, Hangup)
                                                 else "connection closed"))
                if isinstance(event, Closed):
                    return
            elif self.dialog.awaiting_reply:
                self._act(self.dialog.send(event))
            # else: a late reply to a command sent before the caller hung up: ignore it.

    def _garbage(self, why: str) -> None:
        log.error("call {uniqueid} caller={caller} protocol error: {why}", uniqueid=self.dialog.uniqueid,
                  caller=mask(self.dialog.caller_e164), why=redact(why))
        if not self._lost and self.transport is not None:
            self._write(b"HANGUP\n")  # best effort: the stream is no longer trusted
            self.transport.loseConnection()
        if not self.dialog.finished:
            self._act(self.dialog.hangup(f"protocol error: {why}"))

    # ------------------------------------------------------------ dialog → world

    def _act(self, action: Action | None) -> None:
        if action is None:
            return
        stage = self.dialog.stage
        if stage != self._stage:
            self._stage = stage
            # One structured line per call step (issue 7): never a PIN, a name or a full number.
            log.info("call {uniqueid} caller={caller} script={script} stage={stage}", uniqueid=self.dialog.uniqueid,
                     caller=mask(self.dialog.caller_e164), script=self.dialog.script, stage=stage)
        if isinstance(action, Command):
            if self._lost:
                self._act(self.dialog.hangup("connection closed"))
                return
            try:
                data = self.codec.send(action.verb, *action.args)
            except LocalProtocolError as exc:
                log.failure("call {uniqueid}: refused to send {verb}", uniqueid=self.dialog.uniqueid,
                            verb=action.verb)
                self._act(self.dialog.fail(str(exc)))
                return
            self._write(data)
        elif isinstance(action, Finished):
            self._finish(action)
        elif isinstance(action, Wait):
            # PIN-guessing slow-down: silence on this call only; the reactor serves the others.
            self._waiting = self.factory.clock.callLater(action.seconds, self._wait_done)
        elif isinstance(action, AppendJournal):
            f = self.factory
            if f.journal is None or f.run_journal is None:
                self._act(self.dialog.fail("database down and no journal configured"))
                return
            d = f.run_journal(f.journal.append, action.effect)
            d.addCallbacks(self._journalled, self._journal_failed)
        elif isinstance(action, CheckIn) and self.factory.journal is not None and self.factory.journal.pending:
            # Journalled check-ins are still waiting for replay: this one queues behind them,
            # so a departure is never written before the arrival it closes.
            self._act(self.dialog.effect_failed("journal not yet replayed"))
        elif self._run_effect is not None:
            d = self.factory.run_db(self._run_effect, action)
            d.addCallbacks(self._effect_done, self._effect_failed)
        else:
            d: Deferred[Any] = self.factory.effects.submit(action)
            d.addCallbacks(self._effect_done, self._effect_failed)

    def _write(self, data: bytes) -> None:
        """Send a command now, straight to the socket, while nothing of ours is buffered.

        Twisted's ``write`` only buffers: the bytes leave on the reactor's next pass, after
        two ``epoll_ctl`` calls, so every command of every call waits one loop over all the
        other connections. A command is a few dozen bytes and the peer has answered the
        last one, so the socket almost always takes it whole. If it does not (or fails),
        the rest and everything after it go through the transport as usual, in order:
        once Twisted holds bytes of ours, we never write around it again.
        """
        if self._direct is not None:
            try:
                sent = self._direct.send(data)
            except OSError:  # would block, or the peer is gone: the transport deals with it
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
            self._direct = None
        self.transport.write(data)  # type: ignore[union-attr]

    def _wait_done(self) -> None:
        self._waiting = None
        self._last = self.factory.clock.seconds()  # our silence is not the peer's
        self._act(self.dialog.send(None))

    def _journalled(self, result: Any) -> None:
        log.warn("call {uniqueid} caller={caller} journalled: database unavailable, event {event} fsynced",
                 uniqueid=self.dialog.uniqueid, caller=mask(self.dialog.caller_e164), event=result.event_id)
        self._act(self.dialog.send(result))

    def _journal_failed(self, failure: Failure) -> None:
        log.critical("call {uniqueid}: journal append failed ({error}); the caller hears no confirmation",
                     uniqueid=self.dialog.uniqueid, error=failure.type.__name__)
        self._act(self.dialog.fail("journal append failed"))

    def _effect_done(self, result: Any) -> None:
        self._act(self.dialog.send(result))

    def _effect_failed(self, failure: Failure) -> None:
        # Only the exception's type: a database error's text can hold the statement's parameters.
        log.error("call {uniqueid} stage={stage} database effect failed: {error}", uniqueid=self.dialog.uniqueid,
                  stage=self.dialog.stage, error=failure.type.__name__)
        self._act(self.dialog.effect_failed(f"database error: {failure.type.__name__}"))

    def _finish(self, finished: Finished) -> None:
        f = self.factory
        f.finished += 1
        f.outcomes[finished.outcome] = f.outcomes.get(finished.outcome, 0) + 1
        log.info("call {uniqueid} caller={caller} script={script} outcome={outcome} stage={stage} "
                 "seconds={seconds:.2f}", uniqueid=self.dialog.uniqueid, caller=mask(self.dialog.caller_e164),
                 script=self.dialog.script, outcome=finished.outcome, stage=finished.stage,
                 seconds=f.clock.seconds() - self._started)
        if finished.record is not None and "call_record_id" in finished.record and f.publish is not None:
            payload = dict(finished.record)
            payload.update(uniqueid=self.dialog.uniqueid, outcome=finished.outcome, stage=finished.stage)
            try:
                f.publish("call", payload)
            except Exception:
                log.failure("call {uniqueid}: a subscriber failed", uniqueid=self.dialog.uniqueid)
        if not self._lost and self.transport is not None:
            if finished.hang_up and self.codec.state == "idle":
                self._write(self.codec.send("HANGUP"))
            self.transport.loseConnection()


def batches_in_flight(settings: Any, pool_threads: int) -> int:
    """How many group-commit batches may run at once (``agi_batches_in_flight``, 0 = by engine).

    SQLite has one writer, so one batch. On PostgreSQL two keep the database busy while
    the next batch gathers; more only make every batch smaller (more commits) and set
    the database threads fighting over the GIL: 10 in flight ran at 456 dialogs/s
    where 2 ran at 783–1,138 (docs/benchmarks.md).
    """
    wanted = settings.agi_batches_in_flight or (1 if is_sqlite(settings.db_url) else 2)
    return max(1, min(wanted, pool_threads))


class FastAGIFactory(Factory):
    """Shared by all calls: configuration, the effect runner, the clock, counters.

    ``run_db(fn, effects)`` must run ``fn`` off the reactor thread and return a Deferred
    (``Runtime.run_db``). ``clock`` supplies ``seconds()`` for the logged times and
    ``callLater`` for timeouts; tests pass a ``task.Clock``.
    """

    protocol = FastAGIProtocol

    def __init__(
        self,
        config: DialogConfig,
        store: CallStore,
        run_db: Callable[..., Deferred[Any]],
        clock: IReactorTime,
        *,
        idle_timeout: float = 60.0,
        call_limit: float = 600.0,
        publish: Callable[[str, dict[str, Any]], None] | None = None,
        journal: Any = None,
        run_journal: Callable[..., Deferred[Any]] | None = None,
        replay: Callable[[], Deferred[Any]] | None = None,
        journal_retry: float = 15.0,
        batches_in_flight: int = 1,
        effect_runner: Callable[[list[Any]], Deferred[Any]] | None = None,
        scripts: ScriptRegistry | None = None,
    ) -> None:
        self.config = config
        # Script path -> dialog (agi/scripts.py); outbound features register theirs here.
        self.scripts = scripts if scripts is not None else inbound_registry(config)
        self.store = store
        self.run_db = run_db
        # Group commit (agi/effects.py): one hand-off and one transaction per batch of calls,
        # in worker processes (effect_runner, agi/effectprocess.py) or the database thread pool.
        if effect_runner is None:
            effect_runner = in_thread_pool(run_db, getattr(store, "run_batch", None) or one_by_one(store.run))
        self.effects = EffectBatcher(effect_runner, max_inflight=batches_in_flight)
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.call_limit = call_limit
        self.publish = publish
        self.journal = journal  # ivr.journal.CallJournal: where check-ins go when the database is down
        self.run_journal = run_journal  # runs journal appends off the reactor thread (fsync blocks)
        self.replay = replay  # () -> Deferred[ReplayReport]: the journal into the database
        self.journal_retry = journal_retry
        self._replay_timer: IDelayedCall | None = None
        self._replaying: Deferred[Any] | None = None
        self.active = 0
        self.peak = 0
        self.finished = 0
        self.outcomes: dict[str, int] = {}

    @classmethod
    def from_runtime(cls, runtime: Any, clock: IReactorTime | None = None,
                     effect_runner: Callable[[list[Any]], Deferred[Any]] | None = None) -> FastAGIFactory:
        s = runtime.settings
        config = DialogConfig.from_settings(s)
        return cls(
            config,
            CallStore.from_runtime(runtime),
            runtime.run_db,
            clock if clock is not None else runtime.reactor,
            idle_timeout=s.agi_idle_timeout,
            call_limit=s.agi_call_limit,
            publish=runtime.events.publish,
            journal=runtime.journal,
            run_journal=runtime.run_journal,
            replay=runtime.replay_journal,
            journal_retry=s.journal_retry_seconds,
            batches_in_flight=batches_in_flight(s, runtime.pool.max),
            effect_runner=effect_runner,
            scripts=registry_for(runtime, config),
        )

    # ------------------------------------------------------------ journal replay

    def startFactory(self) -> None:
        if self.replay is not None and self.journal is not None:
            # At once: a restart after a crash or an outage recovers what was journalled.
            self._replay_timer = self.clock.callLater(0, self._replay_tick)

    def stopFactory(self) -> None:
        b = self.effects
        if b.batches:
            log.info("group commit: {effects} database effects in {batches} batches (largest {largest})",
                     effects=b.effects, batches=b.batches, largest=b.largest)
        if self._replay_timer is not None and self._replay_timer.active():
            self._replay_timer.cancel()
        self._replay_timer = None

    def _replay_tick(self) -> None:
        self._replay_timer = None
        d = self.replay_journal()
        d.addBoth(lambda _: self._schedule_replay())

    def _schedule_replay(self) -> None:
        if self._replay_timer is None and self.replay is not None and self.running_replay_loop:
            self._replay_timer = self.clock.callLater(self.journal_retry, self._replay_tick)

    @property
    def running_replay_loop(self) -> bool:
        return bool(self.numPorts)

    def replay_journal(self) -> Deferred[Any]:
        """Replay now if anything is pending (one replay at a time); fires with the report or None."""
        from twisted.internet.defer import succeed

        if self.replay is None or self.journal is None or not self.journal.pending:
            return succeed(None)
        if self._replaying is not None:
            return succeed(None)
        d = self.replay()
        self._replaying = d

        def done(report: Any) -> Any:
            self._replaying = None
            if report.applied or report.failed or report.torn:
                log.info("journal replay: applied={applied} skipped={skipped} torn={torn} failed={failed} "
                         "pending={pending}", applied=report.applied, skipped=report.skipped, torn=report.torn,
                         failed=len(report.failed), pending=self.journal.pending)
            return report

        def failed(failure: Failure) -> None:
            self._replaying = None
            log.warn("journal replay: database still unavailable ({error}); {pending} events pending",
                     error=failure.type.__name__, pending=self.journal.pending)
            return None

        return d.addCallbacks(done, failed)

    def buildProtocol(self, addr: Any) -> FastAGIProtocol:
        return FastAGIProtocol(self)
