"""The on-call page: who is rung for alerts now, the rota, and people's alert phones and PINs.

Everyone in the office sees who is on call (so a coordinator knows whom the chain will
ring); only managers change the rota or a person's phone number and phone PIN. A rota
entry is a date, a from and a to time in local time (to ≤ from means the next morning),
converted once to a UTC range (:func:`scheduler.oncall.local_range`), so overnight
entries and clock-change nights are right. Bad input gets one message and changes
nothing; every change is in the audit log (a PIN only as "changed").
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ivr.models import AuditEntry
from ivr.phone import PhoneNumberError, mask, normalise
from ivr.pins import valid_pin
from scheduler.alert_calls import set_phone_pin
from scheduler.chain import ChainConfig
from scheduler.oncall import RotaError, board_warning, local_range, parse_hhmm, who_to_ring
from scheduler.oncall_models import RotaEntry, RotaPosition
from web.app import Ctx, FormError, HTTPError, Response, WebApp, redirect
from web.auth import ANYONE, MANAGERS
from web.models import Role, User


def chain_config(ctx: Ctx) -> ChainConfig:
    return ChainConfig.from_settings(ctx.runtime.settings)


async def oncall_banner(ctx: Ctx) -> str:
    """The board's warning when the rota has a gap now or soon ("" when the chain is off or there is none)."""
    cfg = chain_config(ctx)
    if not cfg.enabled:
        return ""
    now = ctx.now()
    return str(await ctx.db(lambda s: board_warning(s, now, cfg.office, cfg.warn_hours, cfg.manager)))


def _view(session: Session, now: dt.datetime, cfg: ChainConfig) -> dict[str, Any]:
    # Office people only: a family member or a commissioner is never put on the rota.
    users = list(session.scalars(select(User).where(User.active.is_(True), User.role.in_(Role.OFFICE))
                                 .order_by(User.username)))
    names = {u.id: u.username for u in users}
    entries = list(session.scalars(select(RotaEntry).where(RotaEntry.ends_at > now - dt.timedelta(days=1))
                                   .order_by(RotaEntry.starts_at, RotaEntry.id).limit(500)))
    office_open = cfg.office.is_open(now)
    first = who_to_ring(session, RotaPosition.ON_CALL, now, cfg.manager)
    second = who_to_ring(session, RotaPosition.SECOND, now, cfg.manager)
    return {
        "users": [{"id": u.id, "username": u.username, "role": u.role,
                   "phone": mask(u.phone_e164) if u.phone_e164 else "", "pin_set": bool(u.phone_pin_hash)}
                  for u in users],
        "entries": [{"id": e.id, "who": names.get(e.user_id, "(inactive user)"), "position": e.position,
                     "label": RotaPosition.LABELS[e.position], "starts_at": e.starts_at, "ends_at": e.ends_at,
                     "note": e.note, "now": e.starts_at <= now < e.ends_at} for e in entries],
        "office_open": office_open,
        "first": first,
        "second": second,
        "warning": board_warning(session, now, cfg.office, cfg.warn_hours, cfg.manager),
    }


async def oncall_page(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    cfg = chain_config(ctx)
    now = ctx.now()
    view = await ctx.db(_view, now, cfg)
    return ctx.render("oncall.html", status=status, error=error, done=ctx.arg("done", limit=20), cfg=cfg,
                      positions=RotaPosition.LABELS, today=now.astimezone(ctx.runtime.settings.tz).date(),
                      can_edit=ctx.user.role in MANAGERS, **view)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise FormError({"day": "must be a date (YYYY-MM-DD)"}) from None


async def rota_add(ctx: Ctx) -> Response:
    tz = ctx.runtime.settings.tz
    try:
        user_id = ctx.field("user", limit=12)
        position = ctx.field("position", limit=10)
        if position not in RotaPosition.ALL:
            raise FormError({"position": "must be on call or second contact"})
        day = _date(ctx.field("day", limit=10))
        try:
            starts, ends = local_range(day, parse_hhmm(ctx.field("start", limit=5), "From"),
                                       parse_hhmm(ctx.field("end", limit=5), "To"), tz)
        except RotaError as exc:
            raise FormError({"time": str(exc)}) from None
        note = ctx.field("note", limit=200)
        actor = ctx.user.username

        def work(session: Session) -> None:
            user = session.get(User, int(user_id)) if user_id.isdigit() else None
            if user is None or not user.active or user.role not in Role.OFFICE:
                raise FormError({"user": "choose an active office user"})
            entry = RotaEntry(user_id=user.id, position=position, starts_at=starts, ends_at=ends, note=note,
                              created_by=actor, created_at=ctx.now())
            session.add(entry)
            session.flush()
            session.add(AuditEntry(actor=actor, action="create", entity="oncall_rota", entity_id=str(entry.id),
                                   after=json.dumps({"user": user.username, "position": position,
                                                     "starts_at": starts.isoformat(), "ends_at": ends.isoformat()})))

        await ctx.db(work)
    except FormError as exc:
        return await oncall_page(ctx, error=str(exc), status=400)
    return redirect("/oncall?done=added")


async def rota_delete(ctx: Ctx, id: str) -> Response:
    actor = ctx.user.username

    def work(session: Session) -> None:
        entry = session.get(RotaEntry, int(id))
        if entry is None:
            raise HTTPError(404, "No such rota entry")
        before = {"user_id": entry.user_id, "position": entry.position, "starts_at": entry.starts_at.isoformat(),
                  "ends_at": entry.ends_at.isoformat()}
        session.execute(delete(RotaEntry).where(RotaEntry.id == entry.id))
        session.add(AuditEntry(actor=actor, action="delete", entity="oncall_rota", entity_id=id,
                               before=json.dumps(before)))

    await ctx.db(work)
    return redirect("/oncall?done=removed")


async def phone_set(ctx: Ctx) -> Response:
    region = ctx.runtime.settings.phone_region
    hasher = ctx.runtime.hasher
    try:
        user_id = ctx.field("user", limit=12)
        phone_text = ctx.field("phone", limit=40)
        pin = ctx.field("pin", limit=8)
        try:
            phone = normalise(phone_text, region) if phone_text else None
        except PhoneNumberError as exc:
            raise FormError({"phone": str(exc)}) from None
        if pin and not valid_pin(pin):
            raise FormError({"pin": "must be exactly 4 digits"})
        actor = ctx.user.username

        def work(session: Session) -> None:
            user = session.get(User, int(user_id)) if user_id.isdigit() else None
            if user is None:
                raise FormError({"user": "choose a user"})
            changed: dict[str, str] = {}
            if phone_text or not pin:  # an empty phone with no PIN clears the phone
                changed["phone"] = mask(phone) if phone else "removed"
                user.phone_e164 = phone
            if pin:
                set_phone_pin(session, user, pin, hasher)
                changed["phone_pin"] = "changed"
            session.add(AuditEntry(actor=actor, action="edit", entity="user", entity_id=user.username,
                                   after=json.dumps(changed)))

        await ctx.db(work)
    except FormError as exc:
        return await oncall_page(ctx, error=str(exc), status=400)
    return redirect("/oncall?done=saved")


def register(app: WebApp) -> None:
    app.add("GET", "/oncall", oncall_page, ANYONE)
    app.add("POST", "/oncall", rota_add, MANAGERS)
    app.add("POST", "/oncall/{id:int}/delete", rota_delete, MANAGERS)
    app.add("POST", "/oncall/phone", phone_set, MANAGERS)
