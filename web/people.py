"""The people behind an alert: a resident's contacts and access, a worker's mobile, key-safe codes.

An alert is only worth raising if it ends with someone who can act, and they need to
know who lives there, how to get in, whom to ring and where the worker was last logged
(spec 004 §3.42–3.44, §14). This module builds those cards for the alert, checklist and
visit pages (:func:`resident_card`, :func:`worker_card`), and owns the resident page's
contacts (add, edit, remove, reorder) and key-safe actions.

Personal data stays in the page body: never in a URL, a log line or the JSON API. A
key-safe code is shown only in the response to an explicit POST "reveal" by a user with
the key-safe permission (``User.keysafe_access``, checked in the database on every
request, so revoking it works at once), and every reveal writes the audit log.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from ivr import keysafe
from ivr.models import Attendance, AuditEntry, ContactRelation, Resident, ResidentContact, Visit, Worker
from ivr.phone import PhoneNumberError, format_uk, normalise
from ivr.pins import load_or_create_key
from ivr.sealed import Sealer
from web.app import Ctx, FormError, HTTPError, Response, WebApp, redirect
from web.auth import ANYONE, VISIT_EDITORS
from web.models import User

RELATION_LABELS = {ContactRelation.NEXT_OF_KIN: "next of kin", ContactRelation.REPRESENTATIVE: "representative",
                   ContactRelation.OTHER: "other"}
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# Where a reveal may send the user back to: our own pages only, never another site.
BACK = re.compile(r"^/(alerts|visits|residents)/[0-9]{1,9}$")


# --- cards for the alert, checklist and visit pages ----------------------------------------


def contact_view(c: ResidentContact) -> dict[str, Any]:
    return {"id": c.id, "position": c.position, "name": c.name, "relation": c.relation,
            "relation_label": RELATION_LABELS.get(c.relation, c.relation), "relation_note": c.relation_note,
            "phones": [p for p in (c.phone_e164, c.phone2_e164) if p], "email": c.email,
            "notify_missed": c.notify_missed, "billing_address": c.billing_address}


def resident_card(session: Session, resident_id: int) -> dict[str, Any] | None:
    """Who lives there, how to get in, whom to ring: everything the office needs, in one dict."""
    r = session.scalar(select(Resident).where(Resident.id == resident_id)
                       .options(selectinload(Resident.contacts), selectinload(Resident.lines)))
    if r is None:
        return None
    return {"id": r.id, "reference": r.reference, "name": r.name, "address": r.address, "postcode": r.postcode,
            "lines": [ln.e164 for ln in r.lines], "access_notes": r.access_notes,
            "keysafe_reference": r.keysafe_reference, "keysafe_held": keysafe.has_code(session, r.id) is not None,
            "contacts": [contact_view(c) for c in r.contacts]}


def last_logged(session: Session, worker_id: int, now: dt.datetime) -> dict[str, Any] | None:
    """The worker's latest logged arrival or departure at or before ``now``, anywhere.

    For a late visit that is where they were last seen (the previous visit); for a no
    departure it is their arrival at this one: either way, where to start looking."""
    atts = session.scalars(select(Attendance).where(Attendance.worker_id == worker_id,
                                                    Attendance.arrival_at <= now)
                           .options(selectinload(Attendance.resident))
                           .order_by(Attendance.arrival_at.desc()).limit(5)).all()
    best: tuple[dt.datetime, str, Attendance] | None = None
    for a in atts:
        for what, at in (("arrival at", a.arrival_at), ("departure from", a.departure_at)):
            if at is not None and at <= now and (best is None or at > best[0]):
                best = (at, what, a)
    if best is None:
        return None
    at, what, a = best
    return {"at": at, "what": what, "resident_ref": a.resident.reference, "postcode": a.resident.postcode,
            "visit_id": a.visit_id}


def worker_card(session: Session, worker_id: int, now: dt.datetime) -> dict[str, Any] | None:
    w = session.get(Worker, worker_id)
    if w is None:
        return None
    return {"id": w.id, "number": w.worker_number, "name": w.name, "mobile": w.mobile_e164,
            "last": last_logged(session, w.id, now)}


def visit_worker_ids(session: Session, visit_id: int | None) -> list[int]:
    if visit_id is None:
        return []
    v = session.scalar(select(Visit).where(Visit.id == visit_id).options(selectinload(Visit.assignments)))
    return [vw.worker_id for vw in v.assignments] if v else []


def can_reveal(session: Session, user_id: int) -> bool:
    """Read from the database each time: a permission withdrawn by a manager stops at once."""
    return bool(session.scalar(select(User.keysafe_access).where(User.id == user_id, User.active.is_(True))))


def people_for(session: Session, resident_id: int | None, worker_ids: list[int], now: dt.datetime,
               user_id: int) -> dict[str, Any]:
    """What ``_people.html`` shows: the resident card, each worker's card, may this user reveal."""
    workers = [c for c in (worker_card(session, w, now) for w in dict.fromkeys(worker_ids)) if c]
    return {"res": resident_card(session, resident_id) if resident_id else None, "people_workers": workers,
            "can_reveal": can_reveal(session, user_id)}


# --- resident page: contacts and key safe ---------------------------------------------------


def resident_extra(session: Session, resident_id: int, user_id: int) -> dict[str, Any]:
    """The resident page's contacts and key-safe section (below the generic edit form)."""
    card = resident_card(session, resident_id) or {}
    held = keysafe.has_code(session, resident_id)
    history = [{"at": e.at, "actor": e.actor, "action": e.action.replace("_", " ")}
               for e in keysafe.reveals(session, card.get("reference", ""))] if card else []
    return {"res": card, "relations": RELATION_LABELS, "can_reveal": can_reveal(session, user_id),
            "keysafe_set_by": held.set_by if held else None, "keysafe_set_at": held.set_at if held else None,
            "keysafe_history": history}


def _phone(ctx: Ctx, name: str) -> str | None:
    text = ctx.field(name, limit=40)
    if not text:
        return None
    try:
        return normalise(text, ctx.runtime.settings.phone_region)
    except PhoneNumberError as exc:
        raise FormError({name: str(exc)}) from None


def contact_fields(ctx: Ctx) -> dict[str, Any]:
    """Every contact field checked; all errors together, nothing saved if any."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    try:
        values["name"] = ctx.field("name", limit=200)
        if not values["name"]:
            errors["name"] = "is required"
        values["relation"] = ctx.field("relation", limit=20) or ContactRelation.NEXT_OF_KIN
        if values["relation"] not in ContactRelation.ALL:
            errors["relation"] = "must be next of kin, representative or other"
        values["relation_note"] = ctx.field("relation_note", limit=80)
        values["email"] = ctx.field("email", limit=254)
        if values["email"] and not EMAIL.match(values["email"]):
            errors["email"] = "is not an e-mail address"
        values["notify_missed"] = ctx.field("notify_missed", limit=5) in ("on", "yes", "1")
        values["billing_address"] = ctx.field("billing_address", limit=500)
    except FormError as exc:
        errors.update(exc.errors)
    for name, column in (("phone", "phone_e164"), ("phone2", "phone2_e164")):
        try:
            values[column] = _phone(ctx, name)
        except FormError as exc:
            errors.update(exc.errors)
    if errors:
        raise FormError(errors)
    return values


def _audit(session: Session, r: Resident, actor: str, action: str, before: dict[str, Any],
           after: dict[str, Any], now: dt.datetime) -> None:
    session.add(AuditEntry(at=now, actor=actor, action=action, entity="resident", entity_id=r.reference,
                           before=json.dumps(before, sort_keys=True), after=json.dumps(after, sort_keys=True)))


def _plain(c: ResidentContact) -> dict[str, Any]:
    v = contact_view(c)
    v.pop("id")
    return v


def add_contact(session: Session, resident_id: int, values: dict[str, Any], actor: str, now: dt.datetime) -> None:
    r = session.get(Resident, resident_id)
    if r is None:
        raise HTTPError(404, "No such resident")
    last = session.scalar(select(func.max(ResidentContact.position))
                          .where(ResidentContact.resident_id == resident_id)) or 0
    c = ResidentContact(resident_id=resident_id, position=last + 1, **values)
    session.add(c)
    session.flush()
    _audit(session, r, actor, "contact_add", {}, _plain(c), now)


def _renumber(contacts: list[ResidentContact]) -> None:
    for i, c in enumerate(contacts, 1):
        c.position = i


def change_contact(session: Session, resident_id: int, contact_id: int, action: str, values: dict[str, Any] | None,
                   actor: str, now: dt.datetime) -> None:
    """``save`` (with ``values``), ``remove``, ``up`` or ``down``; positions stay 1..n."""
    r = session.scalar(select(Resident).where(Resident.id == resident_id).options(selectinload(Resident.contacts)))
    if r is None:
        raise HTTPError(404, "No such resident")
    contacts = sorted(r.contacts, key=lambda c: (c.position, c.id))
    c = next((c for c in contacts if c.id == contact_id), None)
    if c is None:
        raise HTTPError(404, "No such contact")
    before = _plain(c)
    if action == "save" and values is not None:
        for k, v in values.items():
            setattr(c, k, v)
    elif action == "remove":
        contacts.remove(c)
        r.contacts.remove(c)
    elif action in ("up", "down"):
        i = contacts.index(c)
        j = i - 1 if action == "up" else i + 1
        if 0 <= j < len(contacts):
            contacts[i], contacts[j] = contacts[j], contacts[i]
    else:
        raise FormError({"action": "choose save, remove, up or down"})
    _renumber(contacts)
    session.flush()
    after = {} if action == "remove" else _plain(c)
    _audit(session, r, actor, f"contact_{'edit' if action == 'save' else action}", before, after, now)


# --- handlers ------------------------------------------------------------------------------


def _sealer(ctx: Ctx) -> Sealer:
    sealer: Sealer = ctx.app.sealer
    return sealer


async def _back_to_resident(ctx: Ctx, id: str, errors: dict[str, str]) -> Response:
    # The resident page with the form's errors: the generic edit handler renders it.
    from web.admin import resident_page_with_errors

    return await resident_page_with_errors(ctx, id, errors)


async def contact_add(ctx: Ctx, id: str) -> Response:
    try:
        values = contact_fields(ctx)
    except FormError as exc:
        return await _back_to_resident(ctx, id, {f"contact {k}": v for k, v in exc.errors.items()})
    actor, now = ctx.user.username, ctx.now()
    await ctx.db(add_contact, int(id), values, actor, now)
    return redirect(f"/residents/{int(id)}?done=contact#contacts")


async def contact_change(ctx: Ctx, id: str, cid: str) -> Response:
    try:
        action = ctx.field("action", limit=10)
        values = contact_fields(ctx) if action == "save" else None
    except FormError as exc:
        return await _back_to_resident(ctx, id, {f"contact {k}": v for k, v in exc.errors.items()})
    actor, now = ctx.user.username, ctx.now()
    try:
        await ctx.db(change_contact, int(id), int(cid), action, values, actor, now)
    except FormError as exc:
        return await _back_to_resident(ctx, id, exc.errors)
    return redirect(f"/residents/{int(id)}?done=contact#contacts")


async def keysafe_set(ctx: Ctx, id: str) -> Response:
    resident_id, actor, now, sealer = int(id), ctx.user.username, ctx.now(), _sealer(ctx)
    try:
        code = ctx.field("code", limit=keysafe.MAX_CODE)
        remove = ctx.field("remove", limit=5) in ("on", "yes", "1")
        if not code and not remove:
            raise FormError({"key-safe code": "type the code, or tick remove"})
        if code:
            keysafe.check_code(code)
    except (FormError, keysafe.KeySafeError) as exc:
        errors = exc.errors if isinstance(exc, FormError) else {"key-safe code": str(exc)}
        return await _back_to_resident(ctx, id, errors)
    user_id = ctx.user.user_id

    def work(session: Session) -> None:
        if not can_reveal(session, user_id):
            raise HTTPError(403, "Only users with key-safe access may set key-safe codes")
        keysafe.set_code(session, sealer, resident_id, None if remove else code, actor=actor, now=now)

    try:
        await ctx.db(work)
    except keysafe.KeySafeError as exc:
        raise HTTPError(404, str(exc)) from None
    return redirect(f"/residents/{resident_id}?done=keysafe#keysafe")


async def keysafe_reveal(ctx: Ctx, id: str) -> Response:
    """POST only: the code is in this response's body and nowhere else (no URL, no log, no cache)."""
    resident_id, actor, now, sealer, user_id = int(id), ctx.user.username, ctx.now(), _sealer(ctx), ctx.user.user_id
    back = ctx.field("back", limit=40)
    back = back if BACK.match(back) else f"/residents/{resident_id}"
    note = ctx.field("note", limit=1000)

    def work(session: Session) -> tuple[str, dict[str, Any] | None]:
        if not can_reveal(session, user_id):
            raise HTTPError(403, "You do not have key-safe access; ask a manager")
        return keysafe.reveal(session, sealer, resident_id, actor=actor, now=now, note=note), \
            resident_card(session, resident_id)

    try:
        code, card = await ctx.db(work)
    except keysafe.KeySafeError as exc:
        raise HTTPError(404, str(exc)) from None
    resp = ctx.render("keysafe.html", code=code, res=card, back=back, at=now)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def register(app: WebApp) -> None:
    app.sealer = Sealer(load_or_create_key(app.runtime.settings.secret_path))
    app.env.filters["phone"] = format_uk
    app.add("POST", "/residents/{id:int}/contacts", contact_add, VISIT_EDITORS)
    app.add("POST", "/residents/{id:int}/contacts/{cid:int}", contact_change, VISIT_EDITORS)
    app.add("POST", "/residents/{id:int}/keysafe", keysafe_set, VISIT_EDITORS)
    app.add("POST", "/residents/{id:int}/keysafe/reveal", keysafe_reveal, ANYONE)
