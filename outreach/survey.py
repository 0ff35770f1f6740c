"""Quality calls (spec §5.34, §5.40): a monthly random sample of the residents who agreed, three
keypad questions, every answer (and every non-answer) stored, figures per funder and team.

The sample is drawn once per local calendar month from the residents with survey
consent, no "do not call", no processing restriction and a landline. The draw is seeded
by the month and the site key, so two servers drawing at once pick the same residents
(and ``UNIQUE (resident_id, month)`` stores each once), while nobody without the key can
tell in advance who will be called. Calls go out on weekdays in office hours only, and
never in the resident's quiet hours.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import random
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ivr.clock import local_day_bounds
from ivr.models import Resident, ResidentLine
from outreach.config import NoticesConfig
from outreach.models import NoticePreference, SurveyCall, SurveyStatus
from outreach.preferences import effective

CALL_HOURS = (10, 18)  # local, weekdays
RETRY_AFTER = dt.timedelta(hours=2)
SENDING_STALE = dt.timedelta(minutes=15)


def month_of(now: dt.datetime, tz: ZoneInfo) -> str:
    return now.astimezone(tz).strftime("%Y-%m")


def eligible(session: Session) -> list[Any]:
    return list(session.execute(
        select(Resident.id, Resident.funder, Resident.team)
        .join(NoticePreference, NoticePreference.resident_id == Resident.id)
        .where(NoticePreference.survey_consent.is_(True), NoticePreference.do_not_call.is_(False),
               Resident.active.is_(True), Resident.processing_restricted.is_(False),
               select(ResidentLine.id).where(ResidentLine.resident_id == Resident.id).exists())
        .order_by(Resident.id)).all())


def draw(session: Session, now: dt.datetime, cfg: NoticesConfig, tz: ZoneInfo, key: bytes) -> list[int]:
    """This month's sample, if not drawn yet: the new survey rows' ids."""
    month = month_of(now, tz)
    if session.scalar(select(SurveyCall.id).where(SurveyCall.month == month).limit(1)) is not None:
        return []
    pool = eligible(session)
    seed = hashlib.sha256(key + f"survey:{month}".encode()).digest()
    chosen = random.Random(seed).sample(pool, min(cfg.survey_sample, len(pool)))
    dialect = session.get_bind().dialect.name
    out = []
    for r in sorted(chosen, key=lambda r: r.id):
        target = session.scalar(select(ResidentLine.e164).where(ResidentLine.resident_id == r.id)
                                .order_by(ResidentLine.id).limit(1)) or ""
        ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(SurveyCall).values(
            resident_id=r.id, month=month, funder=r.funder or "", team=r.team or "", target=target,
            status=SurveyStatus.PENDING, attempts=0, note="", created_at=now)
        new_id = session.execute(ins.on_conflict_do_nothing(index_elements=["resident_id", "month"])
                                 .returning(SurveyCall.id)).scalar_one_or_none()
        if new_id is not None:
            out.append(int(new_id))
    return out


def has_work(session: Session, now: dt.datetime, tz: ZoneInfo) -> bool:
    """Whether :func:`draw` or :func:`claim` could write anything now (read only)."""
    if session.scalar(select(SurveyCall.id).where(SurveyCall.month == month_of(now, tz)).limit(1)) is None:
        return bool(eligible(session))
    return session.scalar(select(SurveyCall.id).where(
        SurveyCall.status.in_((SurveyStatus.PENDING, SurveyStatus.SENDING))).limit(1)) is not None


def in_call_hours(now: dt.datetime, tz: ZoneInfo) -> bool:
    local = now.astimezone(tz)
    return local.weekday() < 5 and CALL_HOURS[0] <= local.hour < CALL_HOURS[1]


@dataclasses.dataclass(frozen=True)
class SurveyJob:
    survey_id: int
    target: str
    attempt: int


def claim(session: Session, now: dt.datetime, tz: ZoneInfo, limit: int = 5, *, any_hour: bool = False
          ) -> list[SurveyJob]:
    """Pending quality calls due now (office hours, not the resident's quiet hours), one server each."""
    session.execute(update(SurveyCall).where(SurveyCall.status == SurveyStatus.SENDING,
                                             SurveyCall.called_at <= now - SENDING_STALE)
                    .values(status=SurveyStatus.PENDING, note="interrupted; tried again"))
    if not any_hour and not in_call_hours(now, tz):
        return []
    jobs = []
    for s in session.scalars(select(SurveyCall).where(SurveyCall.status == SurveyStatus.PENDING)
                             .order_by(SurveyCall.id).limit(limit * 4)):
        if s.called_at is not None and now - s.called_at < RETRY_AFTER:
            continue
        prefs = effective(session, s.resident_id)
        resident = session.get(Resident, s.resident_id)
        if prefs.do_not_call or not prefs.survey_consent or resident is None or resident.processing_restricted:
            s.status, s.note = SurveyStatus.FAILED, "not called: consent withdrawn, do not call, or restricted"
            continue
        if prefs.in_quiet_hours(now.astimezone(tz)) or not s.target:
            continue
        attempt = s.attempts + 1
        done = session.execute(update(SurveyCall).where(SurveyCall.id == s.id,
                                                        SurveyCall.status == SurveyStatus.PENDING)
                               .values(status=SurveyStatus.SENDING, attempts=attempt, called_at=now))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            jobs.append(SurveyJob(s.id, s.target, attempt))
        if len(jobs) >= limit:
            break
    return jobs


def record_attempt(session: Session, survey_id: int, *, answered: bool, outcome: str, now: dt.datetime,
                   cfg: NoticesConfig) -> None:
    s = session.get(SurveyCall, survey_id)
    if s is None or s.status != SurveyStatus.SENDING:
        return  # answered: the dialog has already stored the answers
    if answered:
        return  # the dialog's record follows (or the answers came first)
    if s.attempts < cfg.survey_attempts:
        s.status, s.note = SurveyStatus.PENDING, f"attempt {s.attempts}: {outcome}; trying again later"
    else:
        s.status, s.note = SurveyStatus.UNANSWERED, f"not answered after {s.attempts} attempt(s): {outcome}"


def record_answers(session: Session, survey_id: int, answers: tuple[int | None, int | None, int | None],
                   complete: bool, detail: str, now: dt.datetime) -> None:
    s = session.get(SurveyCall, survey_id)
    if s is None:
        return
    s.on_time, s.did_what_needed, s.would_recommend = answers
    given = any(a is not None for a in answers)
    s.status = SurveyStatus.COMPLETED if complete else (SurveyStatus.PARTIAL if given else SurveyStatus.UNANSWERED)
    s.note = detail or "all three questions answered"
    s.called_at = s.called_at or now


# --- the KPI figures --------------------------------------------------------------------------


@dataclasses.dataclass
class Satisfaction:
    """Quality-call figures for one scope: calls, answered, and per question the mean and the 4–5 share."""

    called: int = 0
    answered: int = 0  # at least one question answered
    sums: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0])
    counts: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0])
    good: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0])  # answered 4 or 5

    def mean(self, i: int) -> Decimal | None:
        if not self.counts[i]:
            return None
        return (Decimal(self.sums[i]) / self.counts[i]).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)

    def good_percent(self, i: int) -> Decimal | None:
        if not self.counts[i]:
            return None
        return (Decimal(self.good[i]) * 100 / self.counts[i]).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


@dataclasses.dataclass
class SatisfactionFigures:
    overall: Satisfaction
    by_funder: dict[str, Satisfaction]
    by_team: dict[str, Satisfaction]


QUESTION_TITLES = ("Carers on time", "Did what was needed", "Would recommend us")


def figures(session: Session, date_from: dt.date, date_to: dt.date, tz: ZoneInfo, funder: str | None = None,
            team: str | None = None) -> SatisfactionFigures:
    """Quality calls made in local dates ``date_from``..``date_to`` (by the call's time), per funder and team.

    Aggregated in SQL would be a handful of rows too; the monthly sample is tens of calls,
    so they are read as rows and summed here.
    """
    lo, hi = local_day_bounds(date_from, tz)[0], local_day_bounds(date_to, tz)[1]
    q = select(SurveyCall).where(SurveyCall.called_at >= lo, SurveyCall.called_at < hi,
                                 SurveyCall.status.in_((SurveyStatus.COMPLETED, SurveyStatus.PARTIAL,
                                                        SurveyStatus.UNANSWERED)))
    if funder is not None:
        q = q.where(SurveyCall.funder == funder)
    if team is not None:
        q = q.where(SurveyCall.team == team)
    out = SatisfactionFigures(Satisfaction(), defaultdict(Satisfaction), defaultdict(Satisfaction))
    for s in session.scalars(q):
        answers = (s.on_time, s.did_what_needed, s.would_recommend)
        for scope in (out.overall, out.by_funder[s.funder or "(none)"], out.by_team[s.team or "(none)"]):
            scope.called += 1
            if any(a is not None for a in answers):
                scope.answered += 1
            for i, a in enumerate(answers):
                if a is not None:
                    scope.sums[i] += a
                    scope.counts[i] += 1
                    scope.good[i] += a >= 4
    out.by_funder, out.by_team = dict(out.by_funder), dict(out.by_team)
    return out


def satisfaction_table(sat: SatisfactionFigures | None) -> Markup:
    """The satisfaction section of the KPI report (CLI HTML, office and council pages): one place."""
    head = '<h2 id="satisfaction">Satisfaction from quality calls (§5.34, §5.40)</h2>'
    if sat is None or not sat.overall.called:
        return Markup(head + '<p class="muted">No quality calls in this range.</p>')
    rows = [("All", sat.overall)] + [(f"Funder {k}", v) for k, v in sorted(sat.by_funder.items())] + [
        (f"Team {k}", v) for k, v in sorted(sat.by_team.items())]
    out = [head, '<table class="list" id="satisfaction-table"><tr><th>Scope</th><th>Called</th><th>Answered</th>']
    out += [f"<th>{escape(t)}</th>" for t in QUESTION_TITLES]
    out.append("</tr>")
    for label, s in rows:
        cells = [f"<td>{escape(label)}</td><td>{s.called}</td><td>{s.answered}</td>"]
        for i in range(3):
            mean = s.mean(i)
            cells.append("<td>–</td>" if mean is None else
                         f"<td>{mean} / 5 · {s.good_percent(i)}% gave 4–5 ({s.counts[i]})</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append('</table><p class="small muted">Keypad answers 1 (poor) to 5 (very good); the mean and the share '
               "answering 4 or 5 are of those who answered that question (how many in brackets).</p>")
    return Markup("".join(out))
