"""Escalation as a chain: every serious alert climbs until a named person has taken it.

Each alert kind has a chain of steps (default ``web → on_call → second → manager``):

* ``web`` — the office web: in office hours the coordinators have ``web_minutes`` to
  acknowledge it on the board; out of hours the step is skipped (nobody is there).
* ``on_call`` / ``second`` — the people on the rota now (:mod:`scheduler.oncall`);
  an on-call gap rings the manager instead; no second contact skips the step.
* ``manager`` — the default manager.

A phone step writes a voice delivery (``alert_deliveries``, ``purpose = chain``) that
the alert service rings through the AMI (:mod:`agi.outbound`); the call's outcome —
never merely "queued" — decides the next step's time: not answered, busy, congested or
a channel that cannot be dialled → the next person after ``no_answer_minutes``;
answered → the alert dialog runs (:mod:`ivr.alert_dialog`), where 1 + the user's PIN
accepts (acknowledges) the alert and stops the chain, and 2 ("pass it on") moves to the
next person after ``pass_on_minutes``; answered without a decision → after
``answered_minutes``. Past the last step the last one repeats every
``repeat_minutes``: an alert nobody accepts keeps climbing, and
:attr:`scheduler.models.Alert.unaccepted_escalated` tells the board to show it red.

State is two columns on the alert: ``chain_step`` (steps started) and ``chain_next_at``
(when the next starts). A step is claimed with ``UPDATE … WHERE chain_step = k`` so two
servers never start it twice. Every step, attempt and outcome is a row in the alert's
history (``alert_actions``, actor ``chain``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from agi.outbound import AmiConfig, OriginateResult
from carecall.config import ConfigError, register_table
from ivr.alert_dialog import DEFAULT_KIND_PROMPTS, AlertPrompts
from ivr.phone import mask
from scheduler.models import (
    Alert,
    AlertAction,
    AlertDelivery,
    AlertKind,
    AlertStatus,
    DeliveryChannel,
    DeliveryPurpose,
    DeliveryStatus,
)
from scheduler.oncall import DAYS, OfficeHours, parse_hhmm, who_to_ring

ACTOR = "chain"
STEPS = ("web", "on_call", "second", "manager")
STEP_LABELS = {"web": "office web", "on_call": "on-call phone", "second": "second contact", "manager": "manager"}
CHAIN_KINDS = (AlertKind.MISSED, AlertKind.NO_DEPARTURE, AlertKind.NO_REPLY, AlertKind.DOUBLE_UP_APART,
               AlertKind.ALARM)


def _steps(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[oncall] {where} must be a non-empty list of steps ({', '.join(STEPS)})")
    unknown = [v for v in value if v not in STEPS]
    if unknown:
        raise ConfigError(f"[oncall] {where}: unknown step(s) {', '.join(unknown)}; known: {', '.join(STEPS)}")
    return tuple(value)


@register_table("oncall")
@dataclasses.dataclass(frozen=True)
class ChainConfig:
    """``[oncall]``: office hours, the chain per alert kind and its timers (minutes)."""

    enabled: bool = False  # ring phones (needs [ami]); off: alerts stay on the web and e-mail
    office_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    office_start: str = "09:00"
    office_end: str = "17:00"
    chain: tuple[str, ...] = STEPS
    chains: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # kind = [steps] overrides
    kinds: tuple[str, ...] = CHAIN_KINDS  # the kinds that climb
    web_minutes: float = 10.0
    no_answer_minutes: float = 2.0
    answered_minutes: float = 5.0
    pass_on_minutes: float = 0.0
    repeat_minutes: float = 10.0
    start_window_minutes: float = 60.0  # alerts older than this when the chain is switched on do not start one
    manager: str = ""  # username rung by default; "" = the first active manager with a phone
    warn_hours: float = 24.0  # the board warns of rota gaps this far ahead
    timezone: str = "Europe/London"

    def __post_init__(self) -> None:
        bad_days = [d for d in self.office_days if d not in DAYS]
        if bad_days:
            raise ConfigError(f"[oncall] office_days: unknown day(s) {', '.join(bad_days)}; use {', '.join(DAYS)}")
        start = parse_hhmm(self.office_start, "[oncall] office_start")
        end = parse_hhmm(self.office_end, "[oncall] office_end")
        if end <= start:
            raise ConfigError("[oncall] office_end must be after office_start")
        _steps(list(self.chain), "chain")
        if not isinstance(self.chains, Mapping):
            raise ConfigError("[oncall] chains must be a table of kind = [steps]")
        parsed = {}
        for kind, steps in self.chains.items():
            if kind not in AlertKind.ALL:
                raise ConfigError(f"[oncall] chains: unknown alert kind {kind!r}")
            parsed[kind] = _steps(steps, f"chains.{kind}")
        object.__setattr__(self, "chains", parsed)
        unknown = [k for k in self.kinds if k not in AlertKind.ALL]
        if unknown:
            raise ConfigError(f"[oncall] kinds: unknown alert kind(s) {', '.join(unknown)}")
        for name in ("web_minutes", "no_answer_minutes", "answered_minutes", "pass_on_minutes",
                     "start_window_minutes", "warn_hours"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[oncall] {name} cannot be negative")
        if self.repeat_minutes <= 0:
            raise ConfigError("[oncall] repeat_minutes must be positive")

    @property
    def office(self) -> OfficeHours:
        return OfficeHours(self.office_days, parse_hhmm(self.office_start), parse_hhmm(self.office_end),
                           self.timezone)

    def chain_for(self, kind: str) -> tuple[str, ...]:
        return self.chains.get(kind) or self.chain

    @classmethod
    def from_settings(cls, settings: Any) -> ChainConfig:
        cfg: ChainConfig = settings.table("oncall")
        return dataclasses.replace(cfg, timezone=settings.timezone) if "timezone" not in \
            settings.section("oncall") else cfg


@register_table("alert_prompts")
@dataclasses.dataclass(frozen=True)
class AlertPromptsTable(AlertPrompts):
    """``[alert_prompts]``: the sounds of the alert call (see :class:`ivr.alert_dialog.AlertPrompts`)."""

    def __post_init__(self) -> None:
        if not isinstance(self.kinds, Mapping) or not all(isinstance(v, str) for v in self.kinds.values()):
            raise ConfigError("[alert_prompts] kinds must be a table of kind = \"sound\"")
        unknown = [k for k in self.kinds if k not in AlertKind.ALL]
        if unknown:
            raise ConfigError(f"[alert_prompts] kinds: unknown alert kind(s) {', '.join(unknown)}")
        object.__setattr__(self, "kinds", {**DEFAULT_KIND_PROMPTS, **dict(self.kinds)})


def _minutes(m: float) -> dt.timedelta:
    return dt.timedelta(minutes=m)


def _history(session: Session, alert_id: int, now: dt.datetime, note: str, action: str = "chain") -> None:
    session.add(AlertAction(alert_id=alert_id, at=now, actor=ACTOR, action=action, note=note[:1000]))


def start_new(session: Session, now: dt.datetime, cfg: ChainConfig) -> int:
    """Start the chain of every open, recent alert of a climbing kind that has none yet."""
    if not cfg.kinds:
        return 0
    res = session.execute(update(Alert).where(
        Alert.status == AlertStatus.OPEN, Alert.chain_step == 0, Alert.chain_next_at.is_(None),
        Alert.kind.in_(cfg.kinds), Alert.raised_at >= now - _minutes(cfg.start_window_minutes))
        .values(chain_next_at=now))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


def safety_margin(cfg: ChainConfig, ami: AmiConfig) -> dt.timedelta:
    """How long a rung phone may take to tell us anything before the chain moves on regardless."""
    return dt.timedelta(seconds=ami.connect_timeout + ami.ring_seconds + ami.response_grace_seconds) \
        + _minutes(cfg.answered_minutes)


def advance(session: Session, now: dt.datetime, cfg: ChainConfig, ami: AmiConfig, limit: int = 200) -> list[
        dict[str, Any]]:
    """Start every chain step that is due; returns "escalated" events for the board."""
    events: list[dict[str, Any]] = []
    due = session.execute(select(Alert.id, Alert.kind, Alert.chain_step).where(
        Alert.status == AlertStatus.OPEN, Alert.chain_next_at.is_not(None), Alert.chain_next_at <= now,
        Alert.kind.in_(cfg.kinds)).order_by(Alert.chain_next_at, Alert.id).limit(limit)).all()
    for row in due:
        steps = cfg.chain_for(row.kind)
        step = row.chain_step
        # Steps with nobody to ring are passed at once; one round at most per pass.
        for _ in range(len(steps) + 1):
            claimed = session.execute(update(Alert).where(
                Alert.id == row.id, Alert.chain_step == step, Alert.status == AlertStatus.OPEN)
                .values(chain_step=step + 1, chain_next_at=None))
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                break  # another server took this step, or the alert was taken meanwhile
            wait, note = _start_step(session, row.id, row.kind, step, steps, now, cfg, ami)
            step += 1
            if wait is not None:
                session.execute(update(Alert).where(Alert.id == row.id).values(chain_next_at=now + wait))
                events.append({"event": "escalated", "id": row.id, "kind": row.kind, "note": note})
                break
        else:
            session.execute(update(Alert).where(Alert.id == row.id)
                            .values(chain_next_at=now + _minutes(cfg.repeat_minutes)))
            _history(session, row.id, now, f"nobody could be rung; trying again in {cfg.repeat_minutes:g} min")
    return events


def _start_step(session: Session, alert_id: int, kind: str, index: int, steps: tuple[str, ...],
                now: dt.datetime, cfg: ChainConfig, ami: AmiConfig) -> tuple[dt.timedelta | None, str]:
    """Do step ``index`` (0-based; past the end the last step repeats). ``None`` wait = go straight on."""
    repeat = index >= len(steps)
    name = steps[-1] if repeat else steps[index]
    n = index + 1
    prefix = f"step {n}: " + ("still not accepted, again the " if repeat else "") + STEP_LABELS[name]
    if name == "web":
        if cfg.office.is_open(now) and not repeat:
            note = f"{prefix}: the office has {cfg.web_minutes:g} min to acknowledge it"
            _history(session, alert_id, now, note)
            return _minutes(cfg.web_minutes), note
        _history(session, alert_id, now, f"{prefix}: skipped (out of office hours)")
        return None, ""
    person = who_to_ring(session, name, now, cfg.manager)
    if person is None:
        _history(session, alert_id, now, f"{prefix}: nobody {'on the rota' if name == 'second' else 'to ring'}; "
                                         "skipped")
        return None, ""
    if not person.phone:
        _history(session, alert_id, now, f"{prefix}: {person.username} ({person.why}) has no phone number; skipped")
        return None, ""
    session.execute(insert(AlertDelivery).values(
        alert_id=alert_id, purpose=DeliveryPurpose.CHAIN, channel=DeliveryChannel.VOICE, target=person.phone,
        attempt=1, status=DeliveryStatus.PENDING, error="", created_at=now, next_attempt_at=now,
        user_id=person.user_id, step=n, outcome=""))
    note = f"{prefix}: ringing {person.username} ({person.why}) on {mask(person.phone)}"
    _history(session, alert_id, now, note)
    return safety_margin(cfg, ami), note


@dataclasses.dataclass(frozen=True)
class Ring:
    """A claimed chain call, as plain data for the originator."""

    delivery_id: int
    alert_id: int
    number: str
    step: int


def claim_calls(session: Session, now: dt.datetime, limit: int = 20) -> list[Ring]:
    """Pending chain calls, each claimed (``pending → sending``) by exactly one server."""
    rows = session.execute(select(AlertDelivery.id, AlertDelivery.alert_id, AlertDelivery.target, AlertDelivery.step)
                           .where(AlertDelivery.purpose == DeliveryPurpose.CHAIN,
                                  AlertDelivery.status == DeliveryStatus.PENDING,
                                  AlertDelivery.next_attempt_at <= now)
                           .order_by(AlertDelivery.id).limit(limit)).all()
    out = []
    for r in rows:
        done = session.execute(update(AlertDelivery).where(AlertDelivery.id == r.id,
                                                           AlertDelivery.status == DeliveryStatus.PENDING)
                               .values(status=DeliveryStatus.SENDING, at=now))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            out.append(Ring(r.id, r.alert_id, r.target, r.step))
    return out


def _username(session: Session, user_id: int | None) -> str:
    from web.models import User

    user = session.get(User, user_id) if user_id is not None else None
    return user.username if user is not None else "?"


def _move_on(session: Session, delivery: AlertDelivery, at: dt.datetime) -> None:
    """The chain's next step at ``at`` — only if this call is still the alert's current step."""
    session.execute(update(Alert).where(Alert.id == delivery.alert_id, Alert.status == AlertStatus.OPEN,
                                        Alert.chain_step == delivery.step).values(chain_next_at=at))


def record_call(session: Session, delivery_id: int, result: OriginateResult, now: dt.datetime,
                cfg: ChainConfig) -> bool:
    """The AMI's word on a chain call (from ``OriginateResponse``). True when the chain moves on now-ish."""
    row = session.get(AlertDelivery, delivery_id)
    if row is None:
        return False
    who = _username(session, row.user_id)
    if result.answered:
        if row.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING):
            row.status, row.at = DeliveryStatus.SENT, now
        if row.outcome in ("", "answered"):
            row.outcome = "answered"
            _move_on(session, row, now + _minutes(cfg.answered_minutes))  # unless they decide on the call
        session.flush()
        return False
    row.status = DeliveryStatus.FAILED
    row.at = now
    row.outcome = result.outcome[:20]
    row.error = result.describe()[:1000]
    _history(session, row.alert_id, now, f"step {row.step}: call to {who} ({mask(row.target)}): "
                                         f"{result.describe()}; the next person in "
                                         f"{cfg.no_answer_minutes:g} min", action="call failed")
    _move_on(session, row, now + _minutes(cfg.no_answer_minutes))
    session.flush()
    return True


def stale_calls(session: Session, now: dt.datetime, older_than: dt.timedelta) -> int:
    """Chain calls left ``sending`` by a server that died: failed (the chain's own timer moves on)."""
    rows = list(session.scalars(select(AlertDelivery).where(
        AlertDelivery.purpose == DeliveryPurpose.CHAIN, AlertDelivery.status == DeliveryStatus.SENDING,
        AlertDelivery.at <= now - older_than)))
    for row in rows:
        row.status, row.outcome, row.error = DeliveryStatus.FAILED, "interrupted", "the server ringing it stopped"
    return len(rows)
