"""The alert scheduler inside the server: APScheduler's ``TwistedScheduler`` calls one tick.

APScheduler only says *when*: it wakes on the wall clock and runs its job in the
reactor's thread pool, so the job does nothing but hop back to the reactor
(``callFromThread``). The tick then runs the rules pass, delivery planning and
escalation in the runtime's database pool (:meth:`Runtime.run_db`), publishes new,
settled and escalated alerts on ``runtime.events`` ("alert"), and sends due deliveries
in the reactor's thread pool (blocking SMTP/AMI, never on the reactor, never holding a
database thread). The in-memory job store keeps SQL out of APScheduler entirely.

A tick runs once at start (catch-up: deadlines that passed while the server was down,
within ``lookback_hours``) and then every ``interval_seconds`` (default 15 s: an alert
is stored at most one interval plus one pass after its deadline). Ticks never overlap
in one process; several processes may tick at once — the database keeps alerts, claims
and escalations exactly-once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.twisted import TwistedScheduler
from sqlalchemy.exc import DBAPIError
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from agi.outbound import AmiConfig, OriginateResult, Originator, OutboundCall
from carecall.runtime import Runtime
from ivr.alert_dialog import SCRIPT as ALERT_SCRIPT
from ivr.db import reading, unit_of_work
from ivr.models import utcnow
from outreach.calls import OutreachCalls
from scheduler import chain, delivery
from scheduler.chain import ChainConfig, Ring
from scheduler.delivery import DeliveryConfig, Job
from scheduler.rules import Rules
from scheduler.store import PassResult, pass_would_write, run_pass

log = Logger(namespace="carecall.alerts")
# A pass this slow is logged: its deadlines reach the office that much later, and on a
# busy server its CPU is taken from the calls.
SLOW_PASS_SECONDS = 0.1


class AlertService(Service):
    name = "alerts"

    def __init__(self, runtime: Runtime, *, interval: float = 15.0, rules: Rules | None = None,
                 cfg: DeliveryConfig | None = None, clock: Callable[[], dt.datetime] = utcnow,
                 sender: Callable[[Job, DeliveryConfig], None] = delivery.send,
                 chain_cfg: ChainConfig | None = None, ami: AmiConfig | None = None,
                 ring: Callable[[OutboundCall], Deferred[OriginateResult]] | None = None) -> None:
        self.runtime = runtime
        # The escalation chain (scheduler/chain.py): on when [oncall] enabled; ``ring`` places
        # the calls (agi.outbound.Originator.originate; tests may pass their own).
        self.chain_cfg = chain_cfg or ChainConfig()
        self.ami = ami or AmiConfig()
        self.ring = ring or Originator(self.ami, runtime.reactor).originate
        self.calls: set[Deferred[Any]] = set()  # chain calls ringing now
        self.outreach: OutreachCalls | None = None  # make_service: lateness notices and quality calls
        self._again = False
        self._wake_calls: list[Any] = []
        self._unsubscribe: Callable[[], None] | None = None
        self.interval = interval
        self.rules = rules or Rules()
        self.cfg = cfg or DeliveryConfig()
        self.clock = clock
        self.sender = sender
        self.scheduler: TwistedScheduler | None = None
        self._running: Deferred[Any] | None = None
        self.ticks = 0
        self.last_pass: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        reactor = self.runtime.reactor
        self.scheduler = TwistedScheduler(
            reactor=reactor, timezone=dt.UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, int(self.interval))})
        self.scheduler.add_job(self._from_scheduler, "interval", seconds=self.interval, id="alerts-tick")
        self.scheduler.start()
        reactor.callWhenRunning(self.tick)  # catch-up pass at start
        # The alert call's "pass it on" (a FastAGI effect) asks for the chain's next step now.
        self._unsubscribe = self.runtime.events.subscribe(self._on_event)
        log.info("alert scheduler started: every {interval} s, look-back {hours} h",
                 interval=self.interval, hours=self.rules.lookback_hours)

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for call in self._wake_calls:
            if call.active():
                call.cancel()
        self._wake_calls = []
        return self._running

    def _on_event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "alert_chain" and payload.get("event") == "chain_due":
            self.wake(float(payload.get("in", 0)))

    def wake(self, delay: float = 0.0) -> None:
        """A tick after ``delay`` seconds (a chain timer shorter than the interval)."""
        if not self.running:
            return
        self._wake_calls = [c for c in self._wake_calls if c.active()]
        self._wake_calls.append(self.runtime.reactor.callLater(max(0.0, delay) + 0.05, self.tick))

    def _from_scheduler(self) -> None:
        # Runs in a reactor pool thread (TwistedExecutor): only hop to the reactor.
        self.runtime.reactor.callFromThread(self.tick)

    # -- one tick --------------------------------------------------------------------
    def tick(self) -> Deferred[Any]:
        """Evaluate the rules now, escalate, deliver. Skipped if the previous tick is still running."""
        if self._running is not None:
            self._again = True  # asked for while running: once more when this one ends
            return succeed(None)
        d = self._tick()
        self._running = d

        def done(result: Any) -> Any:
            self._running = None
            if self._again:
                self._again = False
                self.runtime.reactor.callLater(0, self.tick)
            return result

        d.addBoth(done)
        return d

    @inlineCallbacks
    def _tick(self) -> Any:
        now = self.clock()
        try:
            result = yield self.runtime.run_db(self._db_pass, now)
        except DBAPIError as exc:  # a lost race (deadlock) or a database blip: the next tick retries
            log.warn("alert pass at {now} failed: {error}", now=now.isoformat(), error=str(exc.orig))
            return None
        self.ticks += 1
        self.last_pass = {"now": now.isoformat(), "raised": len(result["raised"]),
                          "settled": len(result["settled"]), "escalated": len(result["escalated"])}
        if result["seconds"] >= SLOW_PASS_SECONDS:  # its deadlines are detected this much later
            log.info("slow alert pass at {now}: {visits} visits read in {ms:.0f} ms", now=now.isoformat(),
                     visits=result["visits_read"], ms=result["seconds"] * 1000)
        for item in result["raised"] + result["settled"] + result["escalated"]:
            self.runtime.events.publish("alert", item)
        for item in result["raised"]:
            log.info("alert {id} raised: {kind} due {due_at}", id=item["id"], kind=item["kind"],
                     due_at=item["due_at"])
        yield self.deliver()
        if self.chain_cfg.enabled:
            yield self.ring_due()
        if self.outreach is not None:  # lateness notices and quality calls (outreach.calls)
            yield self.outreach.tick(now)
        return result

    def _db_pass(self, now: dt.datetime) -> dict[str, Any]:
        started = time.perf_counter()
        with reading(self.runtime.factory) as s:  # no write lock while the rules read and evaluate
            needed, visits_read = pass_would_write(s, now, self.rules)
        res = PassResult(visits_read=visits_read)
        if needed:
            with unit_of_work(self.runtime.factory) as s:
                res = run_pass(s, now, self.rules)
        with unit_of_work(self.runtime.factory) as s:
            delivery.plan_deliveries(s, now, self.cfg)
            escalated = delivery.escalate(s, now, self.cfg)
            delivery.plan_deliveries(s, now, self.cfg)
            if self.chain_cfg.enabled:
                chain.stale_calls(s, now, chain.safety_margin(self.chain_cfg, self.ami) * 2)
                chain.start_new(s, now, self.chain_cfg)
                escalated += chain.advance(s, now, self.chain_cfg, self.ami)
        return {"raised": res.raised, "settled": res.settled, "escalated": escalated, "visits_read": res.visits_read,
                "seconds": time.perf_counter() - started}

    def _claim(self, now: dt.datetime) -> list[Job]:
        with unit_of_work(self.runtime.factory) as s:
            return delivery.claim_due(s, now, self.cfg)

    def _record(self, job: Job, error: str) -> None:
        with unit_of_work(self.runtime.factory) as s:
            delivery.record_outcome(s, job.delivery_id, not error, error, self.clock(), self.cfg)

    @inlineCallbacks
    def deliver(self) -> Any:
        jobs: list[Job] = yield self.runtime.run_db(self._claim, self.clock())
        reactor = self.runtime.reactor

        @inlineCallbacks
        def one(job: Job) -> Any:
            try:
                yield deferToThreadPool(reactor, reactor.getThreadPool(), self.sender, job, self.cfg)
                error = ""
            except Exception as exc:  # every failure is recorded and retried
                error = f"{type(exc).__name__}: {exc}"
                log.warn("alert {id} {channel} delivery attempt {n} failed: {error}", id=job.alert_id,
                         channel=job.channel, n=job.attempt, error=error)
            yield self.runtime.run_db(self._record, job, error)

        yield DeferredList([one(job) for job in jobs], consumeErrors=True)
        return len(jobs)

    # -- the chain's phone calls -------------------------------------------------------
    def _claim_calls(self, now: dt.datetime) -> list[Ring]:
        with unit_of_work(self.runtime.factory) as s:
            return chain.claim_calls(s, now)

    def _record_call(self, ring: Ring, result: OriginateResult) -> bool:
        with unit_of_work(self.runtime.factory) as s:
            return chain.record_call(s, ring.delivery_id, result, self.clock(), self.chain_cfg)

    @inlineCallbacks
    def ring_due(self) -> Any:
        """Ring every claimed chain call; the tick does not wait for the phones (they ring for ~30 s)."""
        rings: list[Ring] = yield self.runtime.run_db(self._claim_calls, self.clock())
        for ring in rings:
            self._start_call(ring)
        return len(rings)

    def _start_call(self, ring: Ring) -> None:
        call = OutboundCall(self.ami.dial_number(ring.number), ALERT_SCRIPT,
                            {"alert": str(ring.alert_id), "delivery": str(ring.delivery_id)})
        d = self.ring(call)

        @inlineCallbacks
        def outcome(result: OriginateResult) -> Any:
            if not result.answered:
                log.warn("alert {id} chain step {step}: call {outcome}", id=ring.alert_id, step=ring.step,
                         outcome=result.describe())
            moved = yield self.runtime.run_db(self._record_call, ring, result)
            if moved:
                self.wake(self.chain_cfg.no_answer_minutes * 60)
            return result

        d.addCallback(outcome)
        d.addErrback(lambda f: log.failure("alert {id} chain call", f, id=ring.alert_id))
        self.calls.add(d)
        d.addBoth(lambda r: (self.calls.discard(d), r)[1])

    def calls_done(self) -> Deferred[Any]:
        """Fires once every chain call ringing now has its outcome recorded (tests, shutdown)."""
        return DeferredList(list(self.calls), consumeErrors=True)


def make_service(runtime: Runtime) -> AlertService | None:
    section = runtime.settings.section("alerts")
    if section.get("enabled", True) is False:
        return None
    rules = Rules.from_section(section, runtime.settings.timezone)
    cfg = DeliveryConfig.from_settings(runtime.settings)
    interval = float(section.get("interval_seconds", 15))
    if interval <= 0:
        from carecall.config import ConfigError

        raise ConfigError("[alerts] interval_seconds must be positive")
    chain_cfg = ChainConfig.from_settings(runtime.settings)
    ami: AmiConfig = runtime.settings.table("ami")
    service = AlertService(runtime, interval=interval, rules=rules, cfg=cfg, chain_cfg=chain_cfg, ami=ami)
    service.outreach = outreach_calls(service)
    return service


def outreach_calls(service: AlertService) -> OutreachCalls:
    """The lateness notices and quality calls, ringing through the same originator as the alert chain."""
    from ivr.pins import load_or_create_key

    def ring(number: str, script: str, args: dict[str, str]) -> Deferred[Any]:
        return service.ring(OutboundCall(service.ami.dial_number(number), script, args))

    return OutreachCalls(service.runtime, service.cfg, service.rules, ring=ring, clock=service.clock,
                         key=load_or_create_key(service.runtime.settings.secret_path))
