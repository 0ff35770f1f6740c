"""The alert scheduler inside the server: a pass at each deadline, plus a safety-net interval.

A *pass* runs the rules (:mod:`scheduler.store`), delivery planning and escalation in
the runtime's database pool (:meth:`Runtime.run_db`), publishes new, settled and
escalated alerts on ``runtime.events`` ("alert"), and sends due deliveries in the
reactor's thread pool (blocking SMTP/AMI, never on the reactor, never holding a
database thread).

When a pass runs:

* **At the next deadline.** Every pass ends by asking the database for the next rule
  deadline (:func:`scheduler.store.next_deadline`: a few indexed ``ORDER BY … LIMIT 1``
  over the same deadline definitions the pass reads by) and for the next chain step or
  delivery retry, and sets a reactor timer for each (an earlier time replaces a later
  one). An alert is stored, and its first delivery started, about one pass after its
  deadline instead of up to one interval later.
* **On an event.** A recorded arrival, departure or no-reply call (FastAGI, the worker
  app), imported visits or a corrected attendance may make a deadline due at once (a
  departure → short visit): :meth:`AlertService.nudge` asks for a pass
  ``WAKE_DEBOUNCE`` seconds later, so a burst of calls gives one pass.
* **Every ``interval_seconds``** (APScheduler ``TwistedScheduler``, default 15 s): the
  safety net, and the "full" pass that also does what a deadline pass with nothing new
  skips (escalation timers, retries, outreach). Nothing depends on a wake-up alone:
  another server's calls, a CLI import, a stepped clock are all caught here.
* Once at start (catch-up: deadlines that passed while the server was down, within
  ``lookback_hours``).

Passes never overlap in one process (one asked for while another runs runs once after
it), and at least ``pass_gap_seconds`` separate the end of one from the start of the
next, so a busy morning cannot make a busy loop of it. A deadline or event pass that
finds nothing to write takes no write lock (SQLite's one writer belongs to the call
path). Several processes may pass at once — the database keeps alerts, claims and
escalations exactly-once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.twisted import TwistedScheduler
from sqlalchemy import func, select
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
from scheduler import alerts_table, chain, delivery  # noqa: F401 - alerts_table registers [alerts]
from scheduler.chain import ChainConfig, Ring
from scheduler.delivery import DeliveryConfig, Job
from scheduler.models import Alert, AlertDelivery, AlertStatus, DeliveryStatus
from scheduler.rules import Rules
from scheduler.store import PassResult, next_deadline, pass_would_write, run_pass

log = Logger(namespace="carecall.alerts")
# A pass this slow is logged: its deadlines reach the office that much later, and on a
# busy server its CPU is taken from the calls.
SLOW_PASS_SECONDS = 0.1
# An event (a call recorded, visits imported) asks for a pass this much later: the calls of
# a burst share one pass, and the call's own transaction has committed by then.
WAKE_DEBOUNCE = 0.1
# A deadline pass starts this long after the deadline, so the pass's ``now`` is past it.
DEADLINE_MARGIN = 0.005
# How far ahead the next deadline is looked for (at least two intervals): the bounded range
# keeps the query the same cost whatever the table size; a further deadline is found by a
# later pass.
HORIZON = dt.timedelta(hours=1)
# After a failed pass (a lost race, a database blip), the next one this much later.
RETRY_SECONDS = 1.0


class AlertService(Service):
    name = "alerts"

    def __init__(self, runtime: Runtime, *, interval: float = 15.0, pass_gap: float = 0.5,
                 rules: Rules | None = None,
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
        self._again_full = False
        # The two pending wake-ups, by "full": False = a deadline or an event (the rules pass,
        # and the outbox only if it raised something); True = a chain step or retry is due.
        self._timers: dict[bool, Any] = {}
        self._last_end = 0.0  # reactor.seconds() when the last pass ended
        self.pass_gap = pass_gap
        self.next_deadline: dt.datetime | None = None  # the next rule deadline this service wakes for
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
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers = {}
        return self._running

    def _on_event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "alert_chain" and payload.get("event") == "chain_due":
            self.wake(float(payload.get("in", 0)))
        elif kind in ("recorded", "visits"):
            # A check-in or no-reply call recorded (FastAGI, the worker phone app), visits imported
            # or corrected: a deadline may be due now (a departure → short visit) or have moved.
            self.nudge()

    def nudge(self) -> None:
        """A rules pass soon (``WAKE_DEBOUNCE``): cheap, on the reactor; a burst gives one pass."""
        self._schedule(WAKE_DEBOUNCE, full=False)

    def wake(self, delay: float = 0.0) -> None:
        """A full pass after ``delay`` seconds (a chain timer shorter than the interval)."""
        self._schedule(max(0.0, delay) + 0.05, full=True)

    def _schedule(self, delay: float, *, full: bool) -> None:
        """Keep one timer per kind of pass, at the earliest time asked for, never inside the pass gap."""
        if not self.running:
            return
        reactor = self.runtime.reactor
        now = reactor.seconds()
        at = max(now + max(0.0, delay), self._last_end + self.pass_gap)
        pending = self._timers.get(full)
        if pending is not None and pending.active():
            if pending.getTime() <= at:
                return
            pending.cancel()
        self._timers[full] = reactor.callLater(at - now, self.tick, full)

    def _from_scheduler(self) -> None:
        # Runs in a reactor pool thread (TwistedExecutor): only hop to the reactor.
        self.runtime.reactor.callFromThread(self.tick)

    # -- one tick --------------------------------------------------------------------
    def tick(self, full: bool = True) -> Deferred[Any]:
        """Evaluate the rules now; a ``full`` tick also escalates and delivers whatever is due.

        Skipped if the previous tick is still running: it then runs once more when that one ends.
        """
        if self._running is not None:
            self._again = True
            self._again_full = self._again_full or full
            return succeed(None)
        d = self._tick(full)
        self._running = d

        def done(result: Any) -> Any:
            self._running = None
            self._last_end = self.runtime.reactor.seconds()
            if self._again:
                again_full, self._again, self._again_full = self._again_full, False, False
                self._schedule(0, full=again_full)
            return result

        d.addBoth(done)
        return d

    @inlineCallbacks
    def _tick(self, full: bool = True) -> Any:
        now = self.clock()
        try:
            result = yield self.runtime.run_db(self._db_pass, now, full)
        except DBAPIError as exc:  # a lost race (deadlock) or a database blip: retried shortly
            log.warn("alert pass at {now} failed: {error}", now=now.isoformat(), error=str(exc.orig))
            self._schedule(RETRY_SECONDS, full=True)
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
        if result["delivered"]:  # a new alert's first delivery starts in the pass that raised it
            yield self.deliver()
            if self.chain_cfg.enabled:
                yield self.ring_due()
        if full and self.outreach is not None:  # lateness notices and quality calls (outreach.calls)
            yield self.outreach.tick(now)
        yield self._plan_next()
        return result

    @inlineCallbacks
    def _plan_next(self) -> Any:
        """Set the wake-ups for the next rule deadline and for the next chain step or retry."""
        now = self.clock()
        try:
            rule_at, timer_at = yield self.runtime.run_db(self._next_times, now)
        except DBAPIError as exc:
            log.warn("alert scheduler: next deadline not read ({error}); the interval pass covers it",
                     error=str(exc.orig))
            return None
        self.next_deadline = rule_at
        if rule_at is not None:
            self._schedule((rule_at - now).total_seconds() + DEADLINE_MARGIN, full=False)
        if timer_at is not None:
            self._schedule((timer_at - now).total_seconds() + DEADLINE_MARGIN, full=True)
        return rule_at

    def _next_times(self, now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The next rule deadline, and the next chain step or delivery retry, within the horizon."""
        horizon = max(HORIZON, dt.timedelta(seconds=2 * self.interval))
        with reading(self.runtime.factory) as s:
            rule_at = next_deadline(s, now, self.rules, horizon)
            timers = [s.scalar(select(func.min(AlertDelivery.next_attempt_at)).where(
                AlertDelivery.status == DeliveryStatus.PENDING, AlertDelivery.next_attempt_at > now))]
            if self.chain_cfg.enabled:
                timers.append(s.scalar(select(func.min(Alert.chain_next_at)).where(
                    Alert.status == AlertStatus.OPEN, Alert.chain_next_at > now)))
        due = [t for t in timers if t is not None and t <= now + horizon]
        return rule_at, min(due) if due else None

    def _db_pass(self, now: dt.datetime, full: bool = True) -> dict[str, Any]:
        started = time.perf_counter()
        with reading(self.runtime.factory) as s:  # no write lock while the rules read and evaluate
            needed, visits_read = pass_would_write(s, now, self.rules)
            # An alert raised outside a pass (a no-reply call raises its own) waits for its first delivery.
            undelivered = s.scalar(select(Alert.id).where(Alert.deliveries_planned_at.is_(None)).limit(1))
        res = PassResult(visits_read=visits_read)
        if needed:
            with unit_of_work(self.runtime.factory) as s:
                res = run_pass(s, now, self.rules)
        escalated: list[dict[str, Any]] = []
        delivered = full or bool(res.raised) or undelivered is not None
        if delivered:  # a rules pass with no new alert leaves the outbox to the full passes
            with unit_of_work(self.runtime.factory) as s:
                delivery.plan_deliveries(s, now, self.cfg)
                escalated = delivery.escalate(s, now, self.cfg)
                delivery.plan_deliveries(s, now, self.cfg)
                if self.chain_cfg.enabled:
                    chain.stale_calls(s, now, chain.safety_margin(self.chain_cfg, self.ami) * 2)
                    chain.start_new(s, now, self.chain_cfg)
                    escalated += chain.advance(s, now, self.chain_cfg, self.ami)
        return {"raised": res.raised, "settled": res.settled, "escalated": escalated, "visits_read": res.visits_read,
                "seconds": time.perf_counter() - started, "delivered": delivered}

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
    table = runtime.settings.table("alerts")  # checked there (scheduler/alerts_table.py): the interval, the gap
    if not table.enabled:
        return None
    rules = Rules.from_section(runtime.settings.section("alerts"), runtime.settings.timezone)
    cfg = DeliveryConfig.from_settings(runtime.settings)
    interval, pass_gap = float(table.interval_seconds), float(table.pass_gap_seconds)
    chain_cfg = ChainConfig.from_settings(runtime.settings)
    ami: AmiConfig = runtime.settings.table("ami")
    service = AlertService(runtime, interval=interval, pass_gap=pass_gap, rules=rules, cfg=cfg, chain_cfg=chain_cfg,
                           ami=ami)
    service.outreach = outreach_calls(service)
    return service


def outreach_calls(service: AlertService) -> OutreachCalls:
    """The lateness notices and quality calls, ringing through the same originator as the alert chain."""
    from ivr.pins import load_or_create_key

    def ring(number: str, script: str, args: dict[str, str]) -> Deferred[Any]:
        return service.ring(OutboundCall(service.ami.dial_number(number), script, args))

    return OutreachCalls(service.runtime, service.cfg, service.rules, ring=ring, clock=service.clock,
                         key=load_or_create_key(service.runtime.settings.secret_path))
