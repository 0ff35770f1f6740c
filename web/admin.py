"""Residents, workers and packages: lists with search, edit forms, CSV upload; and users.

Search terms travel in a POST body, never in the URL, so names stay out of browser
history and access logs. Every edit is checked field by field on the server and writes
an audit entry with the values before and after (PINs never appear, only "changed").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, selectinload
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from ivr.importer import KINDS, ImportContext, import_csv
from ivr.models import AuditEntry, CarePackage, Resident, ResidentLine, Worker
from ivr.phone import PhoneNumberError, format_uk, normalise
from ivr.pins import valid_pin
from ivr.sensitive import set_ni, site_sealer
from privacy.sensitive import ni_held, ni_value
from privacy.viewlog import viewed
from web import auth
from web.app import Ctx, FormError, HTTPError, Response, WebApp, redirect
from web.auth import ANYONE, MANAGERS, MONEY_EDITORS, VISIT_EDITORS
from web.models import Role, User, WebSession
from web.people import resident_extra

POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$")


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text | textarea | digits | phone | phones | postcode | decimal | date | bool | pin
    limit: int = 200
    required: bool = False
    lo: int = 0  # digits: minimum length
    new_only: bool = False  # set when creating, shown read-only afterwards
    money: bool = False  # rates and hours: set only by finance or a manager (auth.MONEY_EDITORS)
    checked_new: bool = True  # bool: ticked on a new record's form


def clean(ctx: Ctx, fields: list[Field], region: str, creating: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Every field converted or an error message for it; all fields are checked."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        if f.new_only and not creating:
            continue
        try:
            if f.kind == "bool":
                values[f.name] = ctx.field(f.name, limit=5) in ("on", "yes", "1")
                continue
            text = ctx.field(f.name, limit=f.limit, multiline=f.kind == "textarea")
            if not text:
                if f.required:
                    raise FormError({f.name: "is required"})
                values[f.name] = None if f.kind in ("phone", "date", "pin", "digits", "ni") else ""
                continue
            if f.kind == "digits":
                if not (text.isdigit() and text.isascii() and f.lo <= len(text) <= f.limit):
                    raise FormError({f.name: f"must be {f.lo} to {f.limit} digits"})
                values[f.name] = text
            elif f.kind == "pin":
                if not valid_pin(text):
                    raise FormError({f.name: "must be exactly 4 digits"})
                values[f.name] = text
            elif f.kind == "ni":
                values[f.name] = ni_value(text)
            elif f.kind == "phone":
                values[f.name] = normalise(text, region)
            elif f.kind == "phones":
                values[f.name] = list(dict.fromkeys(normalise(p, region) for p in text.split(";") if p.strip()))
            elif f.kind == "postcode":
                pc = " ".join(text.upper().split())
                if not POSTCODE.match(pc):
                    raise FormError({f.name: "is not a UK postcode"})
                values[f.name] = pc
            elif f.kind == "decimal":
                try:
                    d = Decimal(text.lstrip("£"))
                except InvalidOperation:
                    raise FormError({f.name: "must be a number"}) from None
                if not d.is_finite() or d < 0 or d >= 10**6 or d.as_tuple().exponent < -2:  # type: ignore[operator]
                    raise FormError({f.name: "must be a positive amount with at most 2 decimals"})
                values[f.name] = d
            elif f.kind == "date":
                try:
                    values[f.name] = dt.date.fromisoformat(text)
                except ValueError:
                    raise FormError({f.name: "must be a date YYYY-MM-DD"}) from None
            else:
                values[f.name] = text
        except FormError as exc:
            errors.update(exc.errors)
        except PhoneNumberError as exc:
            errors[f.name] = str(exc)
    return values, errors


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal | dt.date):
        return str(v)
    return v


@dataclasses.dataclass(frozen=True)
class Entity:
    """One editable kind of record: its fields, how to list, load and save it."""

    kind: str
    title: str
    fields: list[Field]
    columns: list[tuple[str, str]]
    search: Callable[[Session, str], list[dict[str, Any]]]
    load: Callable[[Session, int], dict[str, Any] | None]
    save: Callable[[Session, int | None, dict[str, Any], Any], int]
    # More of the record page below the form (a resident's contacts and key safe): (session, id, user id).
    extra: Callable[[Session, int, int], dict[str, Any]] | None = None
    editors: frozenset[str] = VISIT_EDITORS  # who may save at all; money fields need MONEY_EDITORS too


# --- residents -----------------------------------------------------------------------

RESIDENT_FIELDS = [
    Field("reference", "Reference", limit=40, required=True, new_only=True),
    Field("name", "Name", required=True),
    Field("address", "Address", limit=500),
    Field("postcode", "Postcode", kind="postcode", limit=12),
    Field("funder", "Funder", limit=80),
    Field("team", "Team", limit=80),
    Field("phone_code", "Phone code (keyed in when caller ID is missing)", kind="digits", limit=8, lo=3),
    Field("lines", "Landlines (separate with ;)", kind="phones", limit=200),
    Field("access_notes", "Access notes (how to get in; never a key-safe code)", kind="textarea", limit=1000),
    Field("keysafe_reference", "Key-safe reference (which and where; the code is kept apart)", limit=80),
    Field("active", "Active", kind="bool"),
    Field("processing_restricted", "Processing restricted (no notices or surveys)", kind="bool", checked_new=False),
]


def _resident_row(r: Resident) -> dict[str, Any]:
    return {"id": r.id, "reference": r.reference, "name": r.name, "address": r.address, "postcode": r.postcode,
            "funder": r.funder, "team": r.team, "phone_code": r.phone_code or "",
            "lines": "; ".join(format_uk(ln.e164) for ln in r.lines), "access_notes": r.access_notes,
            "keysafe_reference": r.keysafe_reference, "active": r.active,
            "processing_restricted": r.processing_restricted}


def _search_residents(session: Session, q: str) -> list[dict[str, Any]]:
    stmt = select(Resident).options(selectinload(Resident.lines)).order_by(Resident.reference).limit(500)
    if q:
        like = f"%{q}%"
        stmt = stmt.where(or_(Resident.name.ilike(like), Resident.reference.ilike(like),
                              Resident.postcode.ilike(like), Resident.team.ilike(like)))
    return [_resident_row(r) for r in session.scalars(stmt)]


def _load_resident(session: Session, id: int) -> dict[str, Any] | None:
    r = session.get(Resident, id)
    return _resident_row(r) if r else None


def _save_resident(session: Session, id: int | None, values: dict[str, Any], actor: Any) -> int:
    lines = values.pop("lines") or []
    # Checked before the new row is added: with it in the session, autoflush would write it
    # first and the query would find the new resident itself ("already belongs to" itself).
    if values.get("phone_code"):
        owner = session.scalar(select(Resident.reference).where(Resident.phone_code == values["phone_code"],
                                                                Resident.id != (id or 0)))
        if owner:
            raise FormError({"phone_code": f"already belongs to resident {owner}"})
    if id is None:
        if not re.match(r"^\S{1,40}$", values["reference"]):
            raise FormError({"reference": "must be 1 to 40 characters without spaces"})
        if session.scalar(select(Resident.id).where(Resident.reference == values["reference"])):
            raise FormError({"reference": "is already used by another resident"})
        r = Resident(**values)
        session.add(r)
        before: dict[str, Any] = {}
    else:
        r = session.get(Resident, id)
        if r is None:
            raise HTTPError(404, "No such resident")
        before = _resident_row(r)
        for k, v in values.items():
            setattr(r, k, v)
    # Keep the rows of lines that stay: replacing the whole collection would insert the new
    # rows before deleting the old and trip the (resident, e164) unique constraint.
    kept = [ln for ln in r.lines if ln.e164 in lines]
    r.lines = kept + [ResidentLine(e164=e) for e in lines if e not in {k.e164 for k in kept}]
    session.flush()
    after = _resident_row(r)
    before.pop("id", None)
    after.pop("id", None)
    session.add(AuditEntry(actor=actor, action="edit" if id else "create", entity="resident",
                           entity_id=r.reference, before=json.dumps(before), after=json.dumps(after)))
    return r.id


# --- workers -------------------------------------------------------------------------

WORKER_FIELDS = [
    Field("worker_number", "Worker number", kind="digits", limit=8, lo=1, required=True, new_only=True),
    Field("name", "Name", required=True),
    Field("mobile_e164", "Mobile", kind="phone", limit=30),
    Field("team", "Team", limit=80),
    Field("pin", "New PIN (4 digits; leave empty to keep)", kind="pin", limit=4),
    Field("ni_number", "National Insurance number (kept sealed; leave empty to keep)", kind="ni", limit=16),
    Field("active", "Active", kind="bool"),
    # The unanswered (free) check-in, docs/telephony.md: the number identifies the worker, no PIN.
    Field("unanswered_ddi", "Own number for the unanswered check-in", kind="phone", limit=30),
    Field("unanswered_enabled", "Unanswered check-in on (no PIN: weaker proof)", kind="bool"),
]


def _worker_row(w: Worker) -> dict[str, Any]:
    return {"id": w.id, "worker_number": w.worker_number, "name": w.name,
            "mobile_e164": format_uk(w.mobile_e164), "team": w.team, "active": w.active, "pin": "",
            "ni_number": "", "ni_held": ni_held(w), "unanswered_ddi": format_uk(w.unanswered_ddi),
            "unanswered_enabled": w.unanswered_enabled}


def _search_workers(session: Session, q: str) -> list[dict[str, Any]]:
    stmt = select(Worker).order_by(Worker.worker_number).limit(500)
    if q:
        like = f"%{q}%"
        stmt = stmt.where(or_(Worker.name.ilike(like), Worker.worker_number.ilike(like), Worker.team.ilike(like)))
    return [_worker_row(w) for w in session.scalars(stmt)]


def _load_worker(session: Session, id: int) -> dict[str, Any] | None:
    w = session.get(Worker, id)
    return _worker_row(w) if w else None


def _worker_saver(hasher: Any, sealer: Any) -> Callable[[Session, int | None, dict[str, Any], Any], int]:
    def save(session: Session, id: int | None, values: dict[str, Any], actor: Any) -> int:
        pin = values.pop("pin")
        if values.get("unanswered_enabled") and not values.get("unanswered_ddi"):
            raise FormError({"unanswered_ddi": "is required for the unanswered check-in"})
        if values.get("unanswered_ddi") and session.scalar(select(Worker.id).where(
                Worker.unanswered_ddi == values["unanswered_ddi"], Worker.id != (id or 0))):
            raise FormError({"unanswered_ddi": "is already another worker's number"})
        ni = values.pop("ni_number", None)
        if id is None:
            if pin is None:
                raise FormError({"pin": "is required for a new worker"})
            if session.scalar(select(Worker.id).where(Worker.worker_number == values["worker_number"])):
                raise FormError({"worker_number": "is already used"})
            w = Worker(pin_hash="", **values)
            session.add(w)
            before: dict[str, Any] = {}
        else:
            w = session.get(Worker, id)
            if w is None:
                raise HTTPError(404, "No such worker")
            before = _worker_row(w)
            for k, v in values.items():
                setattr(w, k, v)
        if pin is not None:
            w.pin_hash = hasher.hash(w.worker_number, pin)
        session.flush()
        if ni is not None:
            set_ni(session, sealer, w.id, ni)
        after = _worker_row(w)
        after["pin"] = "changed" if pin is not None else ""
        after["ni_number"] = "changed" if ni is not None else ""
        before.pop("id", None)
        after.pop("id", None)
        session.add(AuditEntry(actor=actor, action="edit" if id else "create", entity="worker",
                               entity_id=w.worker_number, before=json.dumps(before), after=json.dumps(after)))
        return w.id

    return save


# --- packages ------------------------------------------------------------------------

PACKAGE_FIELDS = [
    Field("resident_reference", "Resident reference", limit=40, required=True, new_only=True),
    Field("purchase_order", "Purchase order", limit=60, required=True),
    Field("funder", "Funder", limit=80, required=True),
    Field("weekly_hours", "Hours a week", kind="decimal", limit=10, required=True, money=True),
    Field("hourly_rate", "Hourly rate £", kind="decimal", limit=12, required=True, money=True),
    Field("weekend_rate", "Weekend rate £", kind="decimal", limit=12, required=True, money=True),
    Field("bank_holiday_rate", "Bank holiday rate £", kind="decimal", limit=12, required=True, money=True),
    Field("start_date", "Start date", kind="date", limit=10, required=True),
    Field("end_date", "End date", kind="date", limit=10),
]


def _package_row(p: CarePackage) -> dict[str, Any]:
    return {"id": p.id, "resident_reference": p.resident.reference, "resident_name": p.resident.name,
            "purchase_order": p.purchase_order, "funder": p.funder, "weekly_hours": str(p.weekly_hours),
            "hourly_rate": str(p.hourly_rate), "weekend_rate": str(p.weekend_rate),
            "bank_holiday_rate": str(p.bank_holiday_rate), "start_date": str(p.start_date),
            "end_date": str(p.end_date) if p.end_date else ""}


def _search_packages(session: Session, q: str) -> list[dict[str, Any]]:
    stmt = (select(CarePackage).join(Resident).options(selectinload(CarePackage.resident))
            .order_by(Resident.reference, CarePackage.start_date).limit(500))
    if q:
        like = f"%{q}%"
        stmt = stmt.where(or_(CarePackage.purchase_order.ilike(like), CarePackage.funder.ilike(like),
                              Resident.reference.ilike(like), Resident.name.ilike(like)))
    return [_package_row(p) for p in session.scalars(stmt)]


def _load_package(session: Session, id: int) -> dict[str, Any] | None:
    p = session.get(CarePackage, id)
    return _package_row(p) if p else None


def _save_package(session: Session, id: int | None, values: dict[str, Any], actor: Any) -> int:
    if values.get("weekly_hours") is not None and values["weekly_hours"] > 168:
        raise FormError({"weekly_hours": "cannot exceed 168"})
    if values.get("end_date") and values["end_date"] < values["start_date"]:
        raise FormError({"end_date": "is before the start date"})
    if id is None:
        ref = values.pop("resident_reference")
        rid = session.scalar(select(Resident.id).where(Resident.reference == ref))
        if rid is None:
            raise FormError({"resident_reference": "is not a known resident"})
        p = CarePackage(resident_id=rid, **values)
        session.add(p)
        before: dict[str, Any] = {}
    else:
        p = session.get(CarePackage, id)
        if p is None:
            raise HTTPError(404, "No such package")
        before = _package_row(p)
        for k, v in values.items():
            setattr(p, k, v)
    clash = session.scalar(select(CarePackage.id).where(
        CarePackage.resident_id == p.resident_id, CarePackage.purchase_order == values["purchase_order"],
        CarePackage.start_date == values["start_date"], CarePackage.id != (id or 0)))
    if clash:
        raise FormError({"purchase_order": "this resident already has that purchase order from that date"})
    session.flush()
    after = _package_row(p)
    before.pop("resident_name", None)  # the audit needs the reference, not the name
    after.pop("resident_name", None)
    session.add(AuditEntry(actor=actor, action="edit" if id else "create", entity="package",
                           entity_id=str(p.id), before=json.dumps({k: _plain(v) for k, v in before.items()}),
                           after=json.dumps(after)))
    return p.id


def entities(hasher: Any, sealer: Any = None) -> dict[str, Entity]:
    return {
        "residents": Entity("residents", "Residents", RESIDENT_FIELDS,
                            [("reference", "Ref"), ("name", "Name"), ("postcode", "Postcode"), ("lines", "Landline"),
                             ("team", "Team"),
                             ("funder", "Funder"), ("phone_code", "Code"), ("active", "Active")],
                            _search_residents, _load_resident, _save_resident, extra=resident_extra),
        "workers": Entity("workers", "Workers", WORKER_FIELDS,
                          [("worker_number", "Number"), ("name", "Name"), ("mobile_e164", "Mobile"), ("team", "Team"),
                           ("active", "Active")],
                          _search_workers, _load_worker, _worker_saver(hasher, sealer)),
        "packages": Entity("packages", "Packages", PACKAGE_FIELDS,
                           [("resident_reference", "Resident"), ("resident_name", "Name"),
                            ("purchase_order", "Purchase order"), ("funder", "Funder"),
                            ("weekly_hours", "Hours/week"), ("start_date", "From"), ("end_date", "To")],
                           _search_packages, _load_package, _save_package, editors=VISIT_EDITORS | MONEY_EDITORS),
    }


# --- handlers ------------------------------------------------------------------------


def _register_entity(app: WebApp, e: Entity) -> None:
    base = f"/{e.kind}"

    async def listing(ctx: Ctx, q: str = "", status: int = 200) -> Response:
        rows = await ctx.db(e.search, q)
        return ctx.render("entity_list.html", status=status, e=e, rows=rows, q=q,
                          can_edit=ctx.user.role in e.editors, done=ctx.arg("done", limit=20))

    async def search(ctx: Ctx) -> Response:
        try:
            q = ctx.field("q", limit=80)
        except FormError as exc:
            raise HTTPError(400, str(exc)) from None
        return await listing(ctx, q)

    async def edit_form(ctx: Ctx, id: str | None = None, values: dict[str, Any] | None = None,
                        errors: dict[str, str] | None = None, status: int = 200) -> Response:
        creating = id is None
        if values is None:
            values = {} if creating else await ctx.db(e.load, int(id))  # type: ignore[arg-type]
            if values is None:
                raise HTTPError(404, "Not found")
            await viewed(ctx, e.kind, id)
        extra = {} if creating or e.extra is None else await ctx.db(e.extra, int(id), ctx.user.user_id)
        return ctx.render("entity_edit.html", status=status, e=e, values=values, errors=errors or {},
                          creating=creating, id=id, can_edit=ctx.user.role in e.editors,
                          can_edit_money=ctx.user.role in MONEY_EDITORS, extra=extra,
                          done=ctx.arg("done", limit=20))

    async def save(ctx: Ctx, id: str | None = None) -> Response:
        creating = id is None
        fields = e.fields
        if ctx.user.role not in MONEY_EDITORS and any(f.money for f in fields):
            fields = await _without_money(ctx, e, id)
        values, errors = clean(ctx, fields, ctx.runtime.settings.phone_region, creating)
        raw = {f.name: (values.get(f.name) if f.kind == "bool" else _raw(ctx, f)) for f in e.fields}
        if errors:
            return await edit_form(ctx, id, raw, errors, 400)
        actor = ctx.user.username
        try:
            new_id = await ctx.db(e.save, None if creating else int(id), dict(values), actor)  # type: ignore[arg-type]
        except FormError as exc:
            return await edit_form(ctx, id, raw, exc.errors, 400)
        return redirect(f"{base}/{new_id}?done=saved")

    async def new_form(ctx: Ctx) -> Response:
        return await edit_form(ctx, None)

    async def create(ctx: Ctx) -> Response:
        return await save(ctx, None)

    app.add("GET", base, listing, ANYONE)
    app.add("POST", f"{base}/search", search, ANYONE)
    app.add("GET", f"{base}/new", new_form, e.editors)
    app.add("POST", f"{base}/new", create, e.editors)
    app.add("GET", f"{base}/{{id:int}}", edit_form, ANYONE)
    app.add("POST", f"{base}/{{id:int}}", save, e.editors)
    _edit_forms[e.kind] = edit_form


MONEY_REFUSED = ("Rates and weekly hours are set by finance or a manager; "
                 "ask them to make this change (the other details you may edit)")


async def _without_money(ctx: Ctx, e: Entity, id: str | None) -> list[Field]:
    """The fields a non-finance user may save: refuses (403) a new record — it needs rates — and
    any money field sent with a value other than the stored one; the rest are saved as usual."""
    if id is None:
        raise HTTPError(403, MONEY_REFUSED)
    stored = await ctx.db(e.load, int(id))
    if stored is None:
        raise HTTPError(404, "Not found")
    for f in e.fields:
        if not f.money:
            continue
        sent = _raw(ctx, f).lstrip("£")
        if not sent:
            continue  # not sent (the field is read-only for this role): keep the stored value
        try:
            same = Decimal(sent) == Decimal(str(stored[f.name]))
        except InvalidOperation:
            same = False
        if not same:
            raise HTTPError(403, MONEY_REFUSED)
    return [f for f in e.fields if not f.money]


_edit_forms: dict[str, Callable[..., Any]] = {}


async def resident_page_with_errors(ctx: Ctx, id: str, errors: dict[str, str]) -> Response:
    """The resident page again, status 400, with a contacts or key-safe form's errors on top."""
    return await _edit_forms["residents"](ctx, id, None, errors, 400)  # type: ignore[no-any-return]


def _raw(ctx: Ctx, f: Field) -> str:
    try:
        return ctx.field(f.name, limit=f.limit, multiline=f.kind == "textarea")
    except FormError:
        return ""


# What each role may import: a packages file sets rates and weekly hours (money), so it is
# finance's and the manager's; visits, residents and workers are the coordinators' day.
MONEY_KINDS = frozenset({"packages"})


def import_kinds(role: str) -> tuple[str, ...]:
    return tuple(k for k in KINDS if (role in MONEY_EDITORS if k in MONEY_KINDS else role in VISIT_EDITORS))


async def import_page(ctx: Ctx, *, report: Any = None, kind: str = "", status: int = 200) -> Response:
    return ctx.render("import.html", status=status, kinds=import_kinds(ctx.user.role), report=report, kind=kind)


def _import_pool(app: WebApp) -> ThreadPool:
    """One thread for CSV imports, beside (not in) the database pool: a file of tens of thousands
    of visits takes seconds to check and write, and on SQLite the database pool has one thread,
    which the board's queries and the FastAGI calls' lookups need meanwhile. Imports queue here."""
    pool: ThreadPool | None = getattr(app, "import_pool", None)
    if pool is None:
        pool = app.import_pool = ThreadPool(minthreads=0, maxthreads=1, name="carecall-import")
        pool.start()
        app.runtime.reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    return pool


def _refused(message: str) -> dict[str, Any]:
    return {"ok": False, "errors": [("-", message)], "summary": "nothing imported"}


async def import_upload(ctx: Ctx) -> Response:
    kind = ctx.field("kind", limit=20)
    if kind not in KINDS:
        return await import_page(ctx, status=400, kind="",
                                 report=_refused(f"choose what the file holds ({', '.join(KINDS)})"))
    if kind not in import_kinds(ctx.user.role):
        message = ("a packages file sets rates and weekly hours: only finance or a manager may import it"
                   if kind in MONEY_KINDS else "your role may not import this kind of file")
        return await import_page(ctx, status=403, kind="", report=_refused(message))
    data = ctx.upload("file")
    if not data:
        return await import_page(ctx, status=400, kind=kind, report=_refused("choose a CSV file to upload"))
    runtime = ctx.runtime
    ictx = ImportContext(runtime.settings.tz, runtime.settings.phone_region, runtime.hasher, ctx.user.username,
                         sealer=site_sealer(runtime.settings.secret_path))
    report = await deferToThreadPool(runtime.reactor, _import_pool(ctx.app), import_csv, runtime.factory, kind,
                                     data, ictx)
    if report.ok:
        runtime.events.publish("visits", {"kind": kind})  # deadlines may have moved: the alert pass re-reads
    view = {"ok": report.ok, "summary": report.summary(), "errors": [(e.line, e.message) for e in report.errors]}
    return await import_page(ctx, report=view, kind=kind, status=200 if report.ok else 400)


# --- users (managers) ----------------------------------------------------------------


def _users(session: Session) -> list[dict[str, Any]]:
    return [{"id": u.id, "username": u.username, "role": u.role, "active": u.active,
             "keysafe_access": u.keysafe_access, "last_login_at": u.last_login_at}
            # Office users: family and council users are managed with their scope (web.outreach_office).
            for u in session.scalars(select(User).where(User.role.in_(Role.OFFICE)).order_by(User.username))]


async def users_page(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    return ctx.render("users.html", status=status, users=await ctx.db(_users), roles=Role.OFFICE, error=error,
                      done=ctx.arg("done", limit=20))


async def users_add(ctx: Ctx) -> Response:
    try:
        name, role = ctx.field("username", limit=80), ctx.field("role", limit=20)
        password = ctx.field("password", limit=auth.MAX_PASSWORD)
        actor = ctx.user.username

        def work(session: Session) -> None:
            auth.add_user(session, name, role, password)
            session.add(AuditEntry(actor=actor, action="create", entity="user", entity_id=name,
                                   after=json.dumps({"role": role})))

        await ctx.db(work)
    except (FormError, auth.AuthError) as exc:
        return await users_page(ctx, error=str(exc), status=400)
    return redirect("/users?done=added")


async def users_update(ctx: Ctx, id: str) -> Response:
    try:
        role = auth.check_role(ctx.field("role", limit=20))
        active = ctx.field("active", limit=5) in ("on", "yes", "1")
        keysafe_access = ctx.field("keysafe_access", limit=5) in ("on", "yes", "1")
        actor, me = ctx.user.username, ctx.user.user_id

        def work(session: Session) -> None:
            u = session.get(User, int(id))
            if u is None:
                raise HTTPError(404, "No such user")
            if u.role in Role.OUTSIDE:
                raise auth.AuthError("family and council users are managed on their own pages")
            if u.id == me and (role != Role.MANAGER or not active):
                raise auth.AuthError("you cannot demote or disable yourself")
            before = {"role": u.role, "active": u.active, "keysafe_access": u.keysafe_access}
            u.role, u.active, u.keysafe_access = role, active, keysafe_access
            if not active:
                session.execute(delete(WebSession).where(WebSession.user_id == u.id))
            session.add(AuditEntry(actor=actor, action="edit", entity="user", entity_id=u.username,
                                   before=json.dumps(before),
                                   after=json.dumps({"role": role, "active": active,
                                                     "keysafe_access": keysafe_access})))

        await ctx.db(work)
    except (FormError, auth.AuthError) as exc:
        return await users_page(ctx, error=str(exc), status=400)
    return redirect("/users?done=saved")


def register(app: WebApp) -> None:
    for e in entities(app.runtime.hasher, site_sealer(app.runtime.settings.secret_path)).values():
        _register_entity(app, e)
    app.add("GET", "/import", import_page, VISIT_EDITORS | MONEY_EDITORS)
    app.add("POST", "/import", import_upload, VISIT_EDITORS | MONEY_EDITORS)
    app.add("GET", "/users", users_page, MANAGERS)
    app.add("POST", "/users", users_add, MANAGERS)
    app.add("POST", "/users/{id:int}", users_update, MANAGERS)
