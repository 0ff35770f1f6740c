"""Placing the lateness notices and quality calls, and the FastAGI scripts that speak them.

:class:`OutreachCalls` runs inside the alert scheduler's tick (``scheduler.service``):
in the database pool it plans the notices due now, draws the month's quality-call
sample and claims what is due; then it places each call with the AMI originator the
alert chain uses (``ring``: an outbound call → a Deferred firing with the call's own
outcome, from ``OriginateResponse``), or sends the e-mail in a thread, and records the
outcome. Once the callee answers, Asterisk hands the channel to our FastAGI server,
which runs :class:`ivr.outreach_dialogs.NoticeDialog` / ``SurveyDialog`` (registered by
:func:`fastagi_scripts`); their records land through :func:`run_effect`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from ivr.clock import format_local
from ivr.db import unit_of_work
from ivr.outreach_dialogs import NOTICE, SURVEY, NoticeDialog, OutboundPrompts, RecordNotice, RecordSurvey, SurveyDialog
from outreach import lateness, survey
from outreach.config import NoticesConfig
from outreach.models import NoticeChannel
from scheduler.delivery import DeliveryConfig, send_message
from scheduler.rules import Rules

log = Logger(namespace="carecall.outreach")

# (number, script, args) -> Deferred firing with an object that has ``answered`` and ``describe()``.
Ring = Callable[[str, str, dict[str, str]], Deferred[Any]]


def prompts(cfg: NoticesConfig) -> OutboundPrompts:
    d = cfg.sounds_dir
    return OutboundPrompts(provider=cfg.provider_sound, running_late=f"{d}/worker-running-late",
                           survey_intro=f"{d}/survey-intro",
                           survey_questions=(f"{d}/survey-on-time", f"{d}/survey-did-what-needed",
                                             f"{d}/survey-recommend"))


def lateness_email(job: lateness.NoticeJob, cfg: DeliveryConfig) -> EmailMessage:
    """The e-mail form of the notice, for a resident who asked that a named contact be e-mailed."""
    from zoneinfo import ZoneInfo

    n = cfg.notices
    tz = ZoneInfo(cfg.timezone)
    msg = EmailMessage()
    msg["Subject"] = f"Care visit update from {n.provider_name}"
    msg["From"] = cfg.email_from
    msg["To"] = job.target
    phone = f" on {n.office_phone}" if n.office_phone else ""
    msg.set_content(
        f"This is {n.provider_name}.\n\nThe care worker for the visit planned at "
        f"{format_local(job.planned_start, tz, '%H:%M')} today is running late. The office knows and will "
        f"call if the visit changes.\n\nQuestions: call the office{phone}.\n")
    return msg


def run_effect(factory: Any, clock: Callable[[], dt.datetime]) -> Callable[[Any], Any]:
    """The dialogs' effects, run in the database pool by the FastAGI server."""

    def run(effect: Any) -> None:
        with unit_of_work(factory) as s:
            if isinstance(effect, RecordNotice):
                lateness.record_dialog(s, effect.notice_id, effect.outcome, effect.detail, clock())
            elif isinstance(effect, RecordSurvey):
                survey.record_answers(s, effect.survey_id, effect.answers, effect.complete, effect.detail, clock())
            else:
                raise TypeError(f"not an outreach effect: {effect!r}")

    return run


def fastagi_scripts(runtime: Any) -> list[Any]:
    """``notice`` and ``survey`` for the FastAGI server's registry (agi/scripts.py)."""
    from agi.scripts import Script
    from ivr.models import utcnow

    cfg: NoticesConfig = runtime.settings.table("notices")
    p = prompts(cfg)
    timeout = runtime.settings.digit_timeout_ms
    runner = run_effect(runtime.factory, utcnow)
    return [Script(NOTICE, lambda clock: NoticeDialog(p, timeout, clock), runner),
            Script(SURVEY, lambda clock: SurveyDialog(p, timeout, clock), runner)]


@dataclasses.dataclass
class OutreachCalls:
    """The outreach part of one scheduler tick."""

    runtime: Any
    delivery: DeliveryConfig
    rules: Rules
    ring: Ring | None = None
    clock: Callable[[], dt.datetime] | None = None
    survey_any_hour: bool = False  # tests: call outside office hours
    key: bytes = b""
    calls: set[Deferred[Any]] = dataclasses.field(default_factory=set)  # ringing now

    @property
    def cfg(self) -> NoticesConfig:
        return self.delivery.notices

    def _now(self) -> dt.datetime:
        from ivr.models import utcnow

        return (self.clock or utcnow)()

    def db_pass(self, now: dt.datetime) -> tuple[list[lateness.NoticeJob], list[survey.SurveyJob]]:
        tz = self.runtime.settings.tz
        with unit_of_work(self.runtime.factory) as s:
            lateness.plan(s, now, self.cfg, self.rules, tz)
            if self.cfg.survey_sample > 0:
                survey.draw(s, now, self.cfg, tz, self.key)
        with unit_of_work(self.runtime.factory) as s:
            notices = lateness.claim(s, now)
            surveys = survey.claim(s, now, tz, any_hour=self.survey_any_hour) if self.ring is not None else []
        return notices, surveys

    @inlineCallbacks
    def tick(self, now: dt.datetime) -> Any:
        """Plan and claim; start each call without waiting for it (a phone rings for half a minute)."""
        notices, surveys = yield self.runtime.run_db(self.db_pass, now)
        for d in [self._notice(job) for job in notices] + [self._survey(job) for job in surveys]:
            self.calls.add(d)
            d.addErrback(lambda f: log.failure("outreach call", f))
            d.addBoth(lambda _r, d=d: self.calls.discard(d))
        return len(notices) + len(surveys)

    def calls_done(self) -> Deferred[Any]:
        """Fires once every call started so far has its outcome recorded (tests, shutdown)."""
        return DeferredList(list(self.calls), consumeErrors=True)

    @inlineCallbacks
    def _notice(self, job: lateness.NoticeJob) -> Any:
        reactor = self.runtime.reactor
        if job.channel == NoticeChannel.EMAIL_CONTACT:
            try:
                yield deferToThreadPool(reactor, reactor.getThreadPool(), send_message,
                                        lateness_email(job, self.delivery), self.delivery)
                answered, outcome = True, "e-mail accepted"
            except Exception as exc:  # recorded and retried
                answered, outcome = False, f"{type(exc).__name__}: {exc}"
        else:
            answered, outcome = yield self._ring(job.target, NOTICE, {"id": str(job.notice_id)})
        yield self.runtime.run_db(self._record_notice, job.notice_id, answered, outcome)

    def _record_notice(self, notice_id: int, answered: bool, outcome: str) -> None:
        with unit_of_work(self.runtime.factory) as s:
            lateness.record_attempt(s, notice_id, answered=answered, outcome=outcome, now=self._now(), cfg=self.cfg)

    @inlineCallbacks
    def _survey(self, job: survey.SurveyJob) -> Any:
        answered, outcome = yield self._ring(job.target, SURVEY, {"id": str(job.survey_id)})
        yield self.runtime.run_db(self._record_survey, job.survey_id, answered, outcome)

    def _record_survey(self, survey_id: int, answered: bool, outcome: str) -> None:
        with unit_of_work(self.runtime.factory) as s:
            survey.record_attempt(s, survey_id, answered=answered, outcome=outcome, now=self._now(), cfg=self.cfg)

    @inlineCallbacks
    def _ring(self, number: str, script: str, args: dict[str, str]) -> Any:
        if self.ring is None:
            return False, "failed: outbound calls are not configured ([ami])"
        try:
            result = yield self.ring(number, script, args)
        except Exception as exc:  # the originator reports failures as results; this is a bug guard
            log.failure("outbound {script} call failed", script=script)
            return False, f"failed: {exc}"
        return bool(result.answered), result.describe()
