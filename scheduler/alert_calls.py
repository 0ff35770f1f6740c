"""The database side of the alert call (:mod:`ivr.alert_dialog`): its effects, and its FastAGI entry.

Each effect runs in one transaction in the database pool (the FastAGI server calls
:meth:`AlertCallStore.run` through ``run_db``). The call itself is the proof of
delivery: :class:`AlertCallStarted` marks the chain's voice delivery answered even if
the AMI's ``OriginateResponse`` has not arrived yet. Acceptance goes through
:func:`scheduler.actions.acknowledge`, the one place that rule lives, as the user the
chain rang, after their phone PIN (a keyed hash on ``web_users.phone_pin_hash``, as
worker PINs are: :class:`ivr.pins.PinHasher` under the site key, with ``user:<id>``
in place of the worker number).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from agi.scripts import Script
from ivr.alert_dialog import (
    SCRIPT,
    AcceptAlert,
    Accepted,
    AlertBrief,
    AlertCallEnded,
    AlertCallStarted,
    AlertDialog,
    AlertDialogConfig,
    AlreadyHandled,
    PassAlertOn,
    PinRejected,
)
from ivr.db import unit_of_work
from ivr.models import Resident, Visit
from ivr.phone import mask
from ivr.pins import PinHasher
from scheduler.actions import AlertActionError, acknowledge
from scheduler.chain import ChainConfig, _history, _minutes, _move_on
from scheduler.models import Alert, AlertDelivery, AlertStatus, DeliveryChannel, DeliveryStatus
from web.models import User

ACCEPTED_BY_PHONE = "accepted by phone"


def pin_key(user_id: int) -> str:
    """What the phone PIN is hashed with, in place of a worker number (equal PINs hash differently)."""
    return f"user:{user_id}"


def set_phone_pin(session: Session, user: User, pin: str, hasher: PinHasher) -> None:
    from ivr.pins import valid_pin

    if not valid_pin(pin):
        raise ValueError("a phone PIN is exactly 4 digits")
    user.phone_pin_hash = hasher.hash(pin_key(user.id), pin)


class AlertCallStore:
    """Runs the alert dialog's effects. ``factory`` is a sessionmaker, ``hasher`` the site's PIN hasher."""

    def __init__(self, factory: sessionmaker[Session], hasher: PinHasher, cfg: ChainConfig,
                 on_chain_due: Any = None) -> None:
        self.factory = factory
        self.hasher = hasher
        self.cfg = cfg
        self.on_chain_due = on_chain_due  # called (from the db thread) when the chain should move now

    def run(self, effect: Any) -> Any:
        handlers = {AlertCallStarted: self._started, AcceptAlert: self._accept, PassAlertOn: self._pass_on,
                    AlertCallEnded: self._ended}
        handler = handlers.get(type(effect))
        if handler is None:
            raise TypeError(f"not an alert-call effect: {effect!r}")
        with unit_of_work(self.factory) as s:
            result = handler(s, effect)
        if isinstance(effect, PassAlertOn | AlertCallEnded) and self.on_chain_due is not None:
            # After the commit, so the tick it wakes sees the new time.
            minutes = self.cfg.pass_on_minutes if isinstance(effect, PassAlertOn) else self.cfg.answered_minutes
            self.on_chain_due(minutes * 60)
        return result

    def _delivery(self, s: Session, alert_id: int, delivery_id: int) -> AlertDelivery | None:
        row = s.get(AlertDelivery, delivery_id)
        if row is None or row.alert_id != alert_id or row.channel != DeliveryChannel.VOICE:
            return None
        return row

    def _who(self, s: Session, row: AlertDelivery) -> str:
        user = s.get(User, row.user_id) if row.user_id is not None else None
        return user.username if user is not None else f"the phone {mask(row.target)}"

    def _started(self, s: Session, e: AlertCallStarted) -> AlertBrief | None:
        row = self._delivery(s, e.alert_id, e.delivery_id)
        alert = s.get(Alert, e.alert_id)
        if row is None or alert is None:
            return None
        if row.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.FAILED):
            # FAILED too: a late answer after a timeout is still an answer.
            row.status = DeliveryStatus.SENT
        row.at = e.at
        if row.outcome in ("", "answered", "timeout", "failed"):
            row.outcome = "answered"
        _history(s, alert.id, e.at, f"step {row.step}: {self._who(s, row)} answered the alert call")
        resident_id = alert.resident_id
        if resident_id is None and alert.visit_id is not None:
            visit = s.get(Visit, alert.visit_id)
            resident_id = visit.resident_id if visit is not None else None
        resident = s.get(Resident, resident_id) if resident_id is not None else None
        handled = alert.acknowledged_by or alert.resolved_by or ""
        return AlertBrief(alert.kind, alert.due_at, resident.reference if resident is not None else "",
                          alert.status == AlertStatus.OPEN, handled)

    def _accept(self, s: Session, e: AcceptAlert) -> Accepted | PinRejected | AlreadyHandled:
        row = self._delivery(s, e.alert_id, e.delivery_id)
        user = s.get(User, row.user_id) if row is not None and row.user_id is not None else None
        if row is None or user is None or not user.active or not user.phone_pin_hash \
                or not self.hasher.verify(pin_key(user.id), e.pin, user.phone_pin_hash):
            if row is not None:
                _history(s, e.alert_id, e.at, f"step {row.step}: wrong phone PIN from {self._who(s, row)}")
            return PinRejected()
        try:
            acknowledge(s, e.alert_id, user.username, f"on the alert call (step {row.step})", e.at,
                        action=ACCEPTED_BY_PHONE)
        except AlertActionError:
            alert = s.get(Alert, e.alert_id)
            by = (alert.acknowledged_by or alert.resolved_by or "") if alert is not None else ""
            return AlreadyHandled(by)
        row.outcome = "accepted"
        s.flush()
        return Accepted(user.username)

    def _pass_on(self, s: Session, e: PassAlertOn) -> None:
        row = self._delivery(s, e.alert_id, e.delivery_id)
        if row is None:
            return
        row.outcome = "passed_on"
        _history(s, e.alert_id, e.at, f"step {row.step}: {self._who(s, row)} passed it on (key 2 on the call)",
                 action="passed on")
        _move_on(s, row, e.at + _minutes(self.cfg.pass_on_minutes))

    def _ended(self, s: Session, e: AlertCallEnded) -> None:
        row = self._delivery(s, e.alert_id, e.delivery_id)
        if row is None:
            return
        if row.outcome in ("", "answered"):
            row.outcome = "no_decision"
        _history(s, e.alert_id, e.at, f"step {row.step}: {self._who(s, row)}'s call ended without accepting "
                                      f"({e.how}); the next person in {self.cfg.answered_minutes:g} min")
        _move_on(s, row, e.at + _minutes(self.cfg.answered_minutes))


def dialog_config(settings: Any) -> AlertDialogConfig:
    return AlertDialogConfig(prompts=settings.table("alert_prompts"), digit_timeout_ms=settings.digit_timeout_ms,
                             region=settings.phone_region)


def fastagi_scripts(runtime: Any) -> list[Script]:
    """The ``alert`` script for the FastAGI server's registry (agi/scripts.py)."""
    config = dialog_config(runtime.settings)
    cfg = ChainConfig.from_settings(runtime.settings)

    def chain_due(delay: float) -> None:
        # From the db thread: wake the alert service on the reactor (it subscribes to "chain_due").
        runtime.reactor.callFromThread(runtime.events.publish, "alert_chain", {"event": "chain_due", "in": delay})

    store = AlertCallStore(runtime.factory, runtime.hasher, cfg, on_chain_due=chain_due)
    return [Script(SCRIPT, lambda clock: AlertDialog(config, clock), store.run)]

