"""The Twisted FastAGI server: moves bytes between sockets and the codec, runs effects, keeps time.

All call logic is in :class:`ivr.dialog.Dialog`; all protocol rules in
:class:`agi.codec.AGIConnection`. This module only glues them to the reactor:

* bytes from the socket go into the codec; its events go into the dialog;
* the dialog's commands go out through the codec (which refuses a second command
  while one is outstanding); its effects run in the database thread pool through
  ``run_db`` (never SQL on the reactor thread), several calls' at a time
  (:mod:`agi.effects`, group commit), and their results go back in;
* time comes from an injectable clock (``IReactorTime``): an idle timeout and a total
  call limit cut calls whose peer went silent, and an environment deadline cuts a peer
  that has not sent its whole ``agi_*`` environment in ``env_timeout`` seconds (a
  slowloris dripping a byte a second never trips the idle timeout);
* at most ``max_connections`` calls at once: the excess is closed at once (Asterisk's
  ``AGISTATUS`` is then ``FAILURE`` and the dialplan tries the backup server), counted
  and logged, so a flood of idle peers cannot hold every file descriptor;
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
from ivr.dialog import (
    Action,
    AppendJournal,
    CheckedIn,
    CheckIn,
    Command,
    Dialog,
    DialogConfig,
    Finished,
    NoReplyRecorded,
    Wait,
    script_name,
)
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
        self._effect_token = 0  # the database effect the dialog waits for (older results are ignored)
        self._effect_timer: IDelayedCall | None = None
        self._effect_deferred: Deferred[Any] | None = None
        self._direct: socket.socket | None = None

    # ------------------------------------------------------------ transport events

    def connectionMade(self) -> None:
        f = self.factory
        self._started = self._last = f.clock.seconds()
        f.active += 1
        f.calls.add(self)
        f.peak = max(f.peak, f.active)
        self._timer = f.clock.callLater(min(f.idle_timeout, f.call_limit, f.env_timeout), self._check_time)
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
        if self._effect_timer is not None and self._effect_timer.active():
            self._effect_timer.cancel()  # the effect's own result still reaches the dialog
        self._effect_timer = None
        if self.dialog.finished:
            self.factory.call_ended(self)
            return
        self._act(self.dialog.hangup("connection closed"))

    def shut_down(self) -> None:
        """The drain time is up: the dialog ends this call at its next command (see Dialog.shut_down)."""
        log.warn("call {uniqueid} caller={caller} cut: server shutting down at stage {stage}",
                 uniqueid=self.dialog.uniqueid, caller=mask(self.dialog.caller_e164), stage=self.dialog.stage)
        action = self.dialog.shut_down("server shutting down")
        if action is not None:
            self._act(action)
        elif self._waiting is not None and self._waiting.active():
            # A PIN-guessing delay: no reason to sit it out now.
            self._waiting.cancel()
            self._wait_done()

    # ------------------------------------------------------------ time

    def _check_time(self) -> None:
        f = self.factory
        now = f.clock.seconds()
        self._timer = None
        in_env = self.codec.state == "env"
        if now - self._started >= f.call_limit:
            self._cut(f"call longer than {f.call_limit:g} s")
        elif in_env and now - self._started >= f.env_timeout:
            self._cut(f"environment not complete after {f.env_timeout:g} s")
        elif now - self._last >= f.idle_timeout:
            self._cut(f"peer silent for {f.idle_timeout:g} s")
        else:
            due = min(self._last + f.idle_timeout, self._started + f.call_limit,
                      self._started + f.env_timeout if in_env else float("inf")) - now
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
        elif not self.factory.ready():
            # Started with the database down, schema not yet upgraded: straight to the journal.
            self._act(self.dialog.effect_failed("database schema not yet upgraded"))
        elif isinstance(action, CheckIn) and self.factory.journal is not None and self.factory.journal.pending:
            # Journalled check-ins are still waiting for replay: this one queues behind them,
            # so a departure is never written before the arrival it closes.
            self._act(self.dialog.effect_failed("journal not yet replayed"))
        elif self._run_effect is not None:
            # An outbound dialog's own effects: no deadline (its dialog has no journal to fall to).
            self._submit(action, self.factory.run_db(self._run_effect, action))
        else:
            self._submit(action)

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

    def _submit(self, effect: Any, running: Deferred[Any] | None = None) -> None:
        """Run a database effect, but never keep the caller in silence longer than ``effect_timeout``.

        A database that hangs (another process holding SQLite's write lock, a PostgreSQL
        row lock) would otherwise hold the caller through the busy timeout, or behind a
        stuck batch. Past the deadline the effect counts as failed, exactly as if the
        database were down: the dialog falls back to the journal and the call goes on.
        If the effect had not left the queue it never runs; if it is already running and
        commits late, its result is ignored and the replay finds the check-in by its
        uniqueid (a ``duplicate``, never a second attendance).
        """
        f = self.factory
        self._effect_token += 1
        token = self._effect_token
        deadline = running is None
        d: Deferred[Any] = f.effects.submit(effect) if running is None else running
        self._effect_deferred = d
        if deadline and f.effect_timeout > 0:
            self._effect_timer = f.clock.callLater(f.effect_timeout, self._effect_late, token)
        d.addCallbacks(self._effect_done, self._effect_failed, callbackArgs=(token,), errbackArgs=(token,))

    def _settle(self, token: int) -> bool:
        """True if ``token`` is the effect the dialog still waits for (then it waits no more)."""
        if token != self._effect_token:
            return False
        self._effect_token += 1
        if self._effect_timer is not None and self._effect_timer.active():
            self._effect_timer.cancel()
        self._effect_timer = None
        self._effect_deferred = None
        return True

    def _effect_late(self, token: int) -> None:
        self._effect_timer = None
        d = self._effect_deferred
        if not self._settle(token):
            return
        f = self.factory
        f.effects_timed_out += 1
        withdrawn = d is not None and f.effects.withdraw(d)
        log.warn("call {uniqueid} stage={stage} database effect took over {timeout:g} s ({where}); "
                 "falling back to the journal", uniqueid=self.dialog.uniqueid, stage=self.dialog.stage,
                 timeout=f.effect_timeout, where="withdrawn from the queue" if withdrawn else "still running")
        self._act(self.dialog.effect_failed(f"database slower than {f.effect_timeout:g} s"))

    def _effect_done(self, result: Any, token: int) -> None:
        if self._settle(token):
            self._act(self.dialog.send(result))
            if isinstance(result, (CheckedIn, NoReplyRecorded)) and self.factory.publish is not None:
                self._recorded(result)

    def _recorded(self, result: CheckedIn | NoReplyRecorded) -> None:
        """Tell the alert scheduler a fact is stored now (a departure may be a short visit at once),
        without waiting for the call to end: it wakes on "recorded" (scheduler/service.py)."""
        try:
            self.factory.publish("recorded", {"call_record_id": result.call_record_id})  # type: ignore[misc]
        except Exception:
            log.failure("call {uniqueid}: a subscriber failed", uniqueid=self.dialog.uniqueid)

    def _effect_failed(self, failure: Failure, token: int) -> None:
        if not self._settle(token):
            return
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
        f.call_ended(self)


def batches_in_flight(settings: Any, pool_threads: int) -> int:
    """How many group-commit batches may run at once (``agi_batches_in_flight``, 0 = by engine).

    SQLite has one writer, so one batch. On PostgreSQL two keep the database busy while
    the next batch gathers; more only make every batch smaller (more commits) and set
    the database threads fighting over the GIL: 10 in flight ran at 456 dialogs/s
    where 2 ran at 783–1,138 (docs/benchmarks.md).
    """
    wanted = settings.agi_batches_in_flight or (1 if is_sqlite(settings.db_url) else 2)
    return max(1, min(wanted, pool_threads))


def max_connections(settings: Any) -> int:
    """``agi_max_connections``, or (0) the open-file limit less 256 descriptors for everything else.

    Past the limit ``accept`` fails with EMFILE for the web and the database too; the
    cap keeps that from happening however many peers connect.
    """
    if settings.agi_max_connections:
        return int(settings.agi_max_connections)
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(16, soft - 256)


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
        env_timeout: float = 10.0,
        max_connections: int = 10_000,
        effect_timeout: float = 0.0,
        publish: Callable[[str, dict[str, Any]], None] | None = None,
        journal: Any = None,
        run_journal: Callable[..., Deferred[Any]] | None = None,
        replay: Callable[[], Deferred[Any]] | None = None,
        journal_retry: float = 15.0,
        batches_in_flight: int = 1,
        effect_runner: Callable[[list[Any]], Deferred[Any]] | None = None,
        ready: Callable[[], bool] = lambda: True,
        scripts: ScriptRegistry | None = None,
    ) -> None:
        self.config = config
        self.ready = ready  # False until the schema upgrade has run (carecall/schema_upgrade.py)
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
        self.env_timeout = env_timeout
        self.max_connections = max_connections
        self.effect_timeout = effect_timeout  # 0 = wait for the database however long it takes
        self.effects_timed_out = 0
        self.refused = 0  # connections closed at once because max_connections were open
        self._refusals_logged_at: float | None = None
        self.publish = publish
        self.journal = journal  # ivr.journal.CallJournal: where check-ins go when the database is down
        self.run_journal = run_journal  # runs journal appends off the reactor thread (fsync blocks)
        self.replay = replay  # () -> Deferred[ReplayReport]: the journal into the database
        self.journal_retry = journal_retry
        self._replay_timer: IDelayedCall | None = None
        self._replaying: Deferred[Any] | None = None
        self.active = 0
        self.calls: set[FastAGIProtocol] = set()  # connected and not yet finished (what a drain waits for)
        self._drained: list[Deferred[None]] = []
        self.draining = False
        self.peak = 0
        self.finished = 0
        self.outcomes: dict[str, int] = {}

    @classmethod
    def from_runtime(cls, runtime: Any, clock: IReactorTime | None = None,
                     effect_runner: Callable[[list[Any]], Deferred[Any]] | None = None) -> FastAGIFactory:
        s = runtime.settings
        config = DialogConfig.from_settings(s)
        factory = cls(
            config,
            CallStore.from_runtime(runtime),
            runtime.run_db,
            clock if clock is not None else runtime.reactor,
            idle_timeout=s.agi_idle_timeout,
            call_limit=s.agi_call_limit,
            env_timeout=s.agi_environment_timeout,
            max_connections=max_connections(s),
            effect_timeout=s.agi_effect_timeout,
            publish=runtime.events.publish,
            journal=runtime.journal,
            run_journal=runtime.run_journal,
            replay=runtime.replay_journal,
            journal_retry=s.journal_retry_seconds,
            batches_in_flight=batches_in_flight(s, runtime.pool.max),
            effect_runner=effect_runner,
            ready=lambda: runtime.schema_ready,
            scripts=registry_for(runtime, config),
        )
        runtime.ready_callbacks.append(factory.replay_soon)
        return factory

    # ------------------------------------------------------------ graceful shutdown

    def call_ended(self, protocol: FastAGIProtocol) -> None:
        self.calls.discard(protocol)
        if not self.calls and self._drained:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def drain(self, seconds: float, grace: float = 30.0) -> Deferred[None]:
        """Fires once every call in progress has finished (its record written).

        Called after the listener stopped accepting: new calls already go to the next
        ``agi://`` target. Calls in progress get ``seconds`` to finish normally; then each
        is cut at its next command (an apology and a ``cut`` record when not yet logged,
        :meth:`Dialog.shut_down`). A call still there ``grace`` seconds later (a peer that
        never answers its command) is aborted, which records it as a hang-up.
        """
        self.draining = True
        d: Deferred[None] = Deferred()
        if not self.calls:
            d.callback(None)
            return d
        self._drained.append(d)
        log.info("shutdown: {n} calls in progress; up to {seconds:g} s to finish", n=len(self.calls), seconds=seconds)
        cut = self.clock.callLater(seconds, self._cut_all)
        abort = self.clock.callLater(seconds + grace, self._abort_all)

        def done(result: None) -> None:
            for timer in (cut, abort):
                if timer.active():
                    timer.cancel()
            return result

        return d.addBoth(done)

    def _cut_all(self) -> None:
        if self.calls:
            log.warn("shutdown: drain time up, cutting {n} calls", n=len(self.calls))
        for protocol in list(self.calls):
            protocol.shut_down()

    def _abort_all(self) -> None:
        for protocol in list(self.calls):
            if protocol.transport is not None and not protocol._lost:
                protocol.transport.abortConnection()
        self.clock.callLater(10.0, self._give_up)

    def _give_up(self) -> None:
        """Last resort: a dialog whose effect never returned must not keep the process up forever."""
        if self.calls:
            log.error("shutdown: {n} calls never finished; stopping anyway", n=len(self.calls))
            self.calls.clear()
            self.call_ended(None)  # type: ignore[arg-type]

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

    def replay_soon(self) -> None:
        """The database just became usable: replay now rather than at the next retry."""
        if self.replay is not None and self.journal is not None and self.running_replay_loop:
            self.clock.callLater(0, self.replay_journal)

    @property
    def running_replay_loop(self) -> bool:
        return bool(self.numPorts)

    def replay_journal(self) -> Deferred[Any]:
        """Replay now if anything is pending (one replay at a time); fires with the report or None."""
        from twisted.internet.defer import succeed

        if self.replay is None or self.journal is None or not self.journal.pending or not self.ready():
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

    def buildProtocol(self, addr: Any) -> Protocol:
        if self.active >= self.max_connections:
            self.refused += 1
            self._log_refusal()
            return _Refused()
        return FastAGIProtocol(self)

    def _log_refusal(self) -> None:
        """One warning per 10 s at most: a flood must not become a flood of log lines."""
        now = self.clock.seconds()
        if self._refusals_logged_at is not None and now - self._refusals_logged_at < 10:
            return
        self._refusals_logged_at = now
        log.warn("AGI connection refused: {active} calls open (agi_max_connections={cap}); {refused} refused so far",
                 active=self.active, cap=self.max_connections, refused=self.refused)


class _Refused(Protocol):
    """An AGI connection over the cap: closed before anything is read or sent."""

    def connectionMade(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]
