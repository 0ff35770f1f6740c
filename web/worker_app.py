"""The worker's phone as the provider's tag reader: a mobile web app, no app store.

Routes under ``/w`` are for care workers, not office users: they authenticate by an
enrolled phone's cookie (:mod:`web.worker_models`), enrolled once with worker number, PIN
and a one-time code from the office. A check-in by tag is a :class:`ivr.dialog.CheckIn`
run by the same :class:`ivr.callstore.CallStore` as a phone call (method ``tag``, the
worker already authenticated by the phone), so arrival/departure, visit matching,
substitutes, alerts, billing and KPI rules are the ones a call gets.

A scan made with no signal is queued on the phone with its time and sent when back: the
server logs it at the scan's time, flags it (``entered_at``), and refuses one older than
``[worker_app] offline_max_hours``. The office pages here issue tags (QR + NFC URL),
enrolment codes, revoke phones, and read and answer the workers' messages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import secrets
import uuid
from typing import Any

import segno
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carecall.config import ConfigError, register_table
from ivr.callstore import CallStore
from ivr.devices import VerificationDevice
from ivr.dialog import CallInfo, CheckedIn, CheckIn
from ivr.importer import ImportContext, import_csv
from ivr.models import Attendance, AuditEntry, Method, Resident, Visit, VisitStatus, VisitWorker, Worker
from ivr.pins import valid_pin
from scheduler.models import AlertKind
from web import auth, tags
from web.app import (
    LOGIN_CSRF_COOKIE,
    Ctx,
    FormError,
    HTTPError,
    Response,
    WebApp,
    json_response,
    redirect,
)
from web.auth import ANYONE, VISIT_EDITORS
from web.worker_models import HomeTag, TagScan, WorkerDevice, WorkerEnrolment, WorkerMessage

WORKER_COOKIE = b"carecall_worker"
# The worker pages use the camera (QR scan) on this origin only.
WORKER_PERMISSIONS = "camera=(self), microphone=(), geolocation=()"


@register_table("worker_app")
@dataclasses.dataclass(frozen=True)
class WorkerAppConfig:
    session_days: int = 180  # an enrolled phone stays logged in this long (revocable at once)
    enrolment_hours: int = 24  # a one-time enrolment code is valid this long
    offline_max_hours: int = 12  # a scan queued offline older than this is refused
    scans_per_tag_per_10_minutes: int = 6  # a check-in and out need two

    def __post_init__(self) -> None:
        for name in ("session_days", "enrolment_hours", "offline_max_hours", "scans_per_tag_per_10_minutes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[worker_app] {name} must be at least 1, got {getattr(self, name)}")


def _config(ctx: Ctx) -> WorkerAppConfig:
    return ctx.runtime.settings.table("worker_app")  # type: ignore[no-any-return]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class WorkerPrincipal:
    device_id: int
    worker_id: int
    worker_number: str
    first_name: str
    csrf_token: str


# --- the worker's session ------------------------------------------------------------------


async def _worker(ctx: Ctx) -> WorkerPrincipal | None:
    token = (ctx.request.getCookie(WORKER_COOKIE) or b"").decode("latin-1")
    if not token or len(token) > 100:
        return None
    now, days = ctx.now(), _config(ctx).session_days

    def work(session: Session) -> WorkerPrincipal | None:
        row = session.execute(
            select(WorkerDevice, Worker).join(Worker, Worker.id == WorkerDevice.worker_id)
            .where(WorkerDevice.token_hash == _digest(token))).first()
        if row is None:
            return None
        device, worker = row
        if device.revoked_at is not None or not worker.active or device.enrolled_at < now - dt.timedelta(days=days):
            return None
        device.last_seen_at = now
        return WorkerPrincipal(device.id, worker.id, worker.worker_number, worker.name.split()[0], device.csrf_token)

    return await ctx.db(work)  # type: ignore[no-any-return]


async def _required(ctx: Ctx, *, post: bool = False) -> WorkerPrincipal:
    who = await _worker(ctx)
    if who is None:
        raise HTTPError(401, "Please log in on this phone again")
    if post:
        given = (ctx.request.getHeader(b"x-csrf-token") or b"").decode("latin-1") or ctx.field("csrf_token", limit=100)
        if not auth.csrf_ok(who.csrf_token, given):
            raise HTTPError(403, "The page was out of date; reload it and try again")
    return who


def _page(ctx: Ctx, template: str, status: int = 200, **values: Any) -> Response:
    resp = ctx.render(template, status=status, **values)
    resp.headers["Permissions-Policy"] = WORKER_PERMISSIONS
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _json_body(ctx: Ctx) -> dict[str, Any]:
    content = ctx.request.content
    if content is not None:
        content.seek(0)  # the router has read the body already (to look for form fields)
    raw = content.read(64 * 1024) if content is not None else b""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HTTPError(400, "The phone sent something that is not JSON") from None
    if not isinstance(data, dict):
        raise HTTPError(400, "The phone sent something that is not a JSON object")
    return data


async def login_form(ctx: Ctx) -> Response:
    """The enrolment form, with the office login's CSRF scheme (a nonce cookie and its HMAC)."""
    nonce = (ctx.request.getCookie(LOGIN_CSRF_COOKIE) or b"").decode("latin-1")
    fresh = auth.login_nonce_fresh(nonce, ctx.now())
    if not fresh:
        nonce = auth.new_login_nonce(ctx.now())
    resp = _page(ctx, "w_login.html", login_csrf=auth.login_csrf_token(ctx.app.login_key, nonce), error="",
                 number="")
    if not fresh:
        resp.cookies.append((LOGIN_CSRF_COOKIE, nonce.encode(), {}))
    return resp


async def login(ctx: Ctx) -> Response:
    cookie = (ctx.request.getCookie(LOGIN_CSRF_COOKIE) or b"").decode("latin-1")
    try:
        given = ctx.field("login_csrf", limit=64)
        number = ctx.field("worker_number", limit=8)
        pin = ctx.field("pin", limit=4)
        code = ctx.field("enrolment_code", limit=12).replace(" ", "")
        label = ctx.field("label", limit=80)
    except FormError:
        raise HTTPError(400, "The form was not filled in correctly") from None
    if not auth.login_csrf_ok(ctx.app.login_key, cookie, given, ctx.now()):
        raise HTTPError(403, "The form was out of date; reload the page and try again")
    token_for_form = auth.login_csrf_token(ctx.app.login_key, cookie)
    throttle = ctx.app.throttle
    keys = throttle.keys(f"worker:{number}", getattr(ctx.request.getClientAddress(), "host", "unknown"))
    wait = throttle.wait(keys)

    def again(message: str, status: int = 200) -> Response:
        resp = _page(ctx, "w_login.html", status=status, login_csrf=token_for_form, error=message, number=number)
        return resp

    if wait > 0:
        return again(f"Too many tries. Try again in {math.ceil(wait)} seconds.", 429)
    now, cfg = ctx.now(), _config(ctx)
    hasher = ctx.runtime.hasher
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)

    def work(session: Session) -> bool:
        worker = session.scalar(select(Worker).where(Worker.worker_number == number, Worker.active.is_(True)))
        if worker is None or not valid_pin(pin) or not hasher.verify(number, pin, worker.pin_hash):
            return False
        enrolment = session.scalar(select(WorkerEnrolment).where(
            WorkerEnrolment.code_hash == _digest(code), WorkerEnrolment.worker_id == worker.id,
            WorkerEnrolment.used_at.is_(None), WorkerEnrolment.expires_at > now).with_for_update())
        if enrolment is None:
            return False
        enrolment.used_at = now
        session.add(WorkerDevice(worker_id=worker.id, label=label or "phone", token_hash=_digest(token),
                                 csrf_token=csrf, enrolled_at=now, revoked_by=""))
        session.add(AuditEntry(actor=f"worker {number}", action="enrol_phone", entity="worker",
                               entity_id=worker.worker_number, after=json.dumps({"label": label or "phone"})))
        return True

    if not await ctx.db(work):
        throttle.failed(keys)
        return again("That worker number, PIN or enrolment code is not right. Ask the office for a new code "
                     "if yours is more than a day old.")
    throttle.succeeded(keys[0])
    resp = redirect("/w")
    resp.cookies.append((WORKER_COOKIE, token.encode(), {"max_age": str(cfg.session_days * 86400)}))
    return resp


# --- the roster ----------------------------------------------------------------------------


def _roster(session: Session, worker_id: int, now: dt.datetime, tz: Any) -> dict[str, Any]:
    start = dt.datetime.combine(now.astimezone(tz).date(), dt.time(), tz).astimezone(dt.UTC)
    end = start + dt.timedelta(days=2)
    rows = session.execute(
        select(Visit, Resident).join(VisitWorker, VisitWorker.visit_id == Visit.id)
        .join(Resident, Resident.id == Visit.resident_id)
        .where(VisitWorker.worker_id == worker_id, Visit.status == VisitStatus.SCHEDULED,
               Visit.planned_start >= start, Visit.planned_start < end)
        .order_by(Visit.planned_start)).all()
    att = {a.visit_id: a for a in session.scalars(select(Attendance).where(
        Attendance.worker_id == worker_id, Attendance.visit_id.in_([v.id for v, _ in rows])))}
    visits = []
    for v, r in rows:
        a = att.get(v.id)
        state = "to do"
        if a is not None and a.arrival_at and not a.departure_at:
            state = "on site"
        elif a is not None and a.departure_at:
            state = "done"
        visits.append({"id": v.id, "start": v.planned_start, "end": v.planned_end, "resident": r.name,
                       "address": r.address, "postcode": r.postcode, "access": r.access_notes,
                       "notes": v.worker_notes, "state": state,
                       "day": "Today" if v.planned_start < start + dt.timedelta(days=1) else "Tomorrow"})
    messages = [{"from_office": m.from_office, "author": m.author, "body": m.body, "at": m.sent_at}
                for m in session.scalars(select(WorkerMessage).where(WorkerMessage.worker_id == worker_id)
                                         .order_by(WorkerMessage.sent_at.desc(), WorkerMessage.id.desc()).limit(20))]
    return {"visits": visits, "messages": messages}


async def home(ctx: Ctx) -> Response:
    who = await _worker(ctx)
    if who is None:
        return redirect("/w/login")
    data = await ctx.db(_roster, who.worker_id, ctx.now(), ctx.runtime.settings.tz)
    return _page(ctx, "w_home.html", who=who, **data)


async def tag_link(ctx: Ctx, payload: str) -> Response:
    """A tag's URL opened by the phone itself (Android opens NFC URLs): hand it to the app."""
    return redirect(f"/w#tag={payload}")


# --- check-in by tag --------------------------------------------------------------------


def _scan_time(data: dict[str, Any], now: dt.datetime, cfg: WorkerAppConfig) -> tuple[dt.datetime, bool, str | None]:
    """(when, queued, refusal): live scans take the server's time; queued ones their own, bounded."""
    queued = data.get("queued") is True
    if not queued:
        return now, False, None
    try:
        at = dt.datetime.fromisoformat(str(data.get("scanned_at", "")).replace("Z", "+00:00"))
    except ValueError:
        return now, True, "the scan's time is not readable"
    if at.tzinfo is None:
        return now, True, "the scan's time has no time zone"
    at = at.astimezone(dt.UTC)
    if at > now + dt.timedelta(minutes=2):
        return now, True, "the scan's time is in the future (check the phone's clock)"
    if now - at > dt.timedelta(hours=cfg.offline_max_hours):
        return at, True, f"the scan was saved more than {cfg.offline_max_hours} hours ago; tell the office"
    return at, True, None


async def scan(ctx: Ctx) -> Response:
    who = await _required(ctx, post=True)
    data = _json_body(ctx)
    now, cfg = ctx.now(), _config(ctx)
    parsed = tags.parse(str(data.get("payload", "")))
    client_id = str(data.get("client_id", "")) or str(uuid.uuid4())
    try:
        client_id = str(uuid.UUID(client_id))
    except ValueError:
        raise HTTPError(400, "client_id must be a UUID") from None
    at, queued, refusal = _scan_time(data, now, cfg)
    site_key = ctx.runtime.hasher.site_key

    def look(session: Session) -> tuple[str, Any]:
        tag = None
        if parsed is not None:
            tag = session.scalar(select(HomeTag).where(HomeTag.tag_id == parsed[0], HomeTag.active.is_(True)))
        if tag is None or parsed is None or not tags.verify(site_key, parsed[0], parsed[1], tag.resident_id):
            session.add(TagScan(tag_id=tag.id if tag else None, worker_id=who.worker_id, scanned_at=at,
                                received_at=now, outcome="forged", queued=queued))
            return "forged", None
        recent = session.scalar(select(func.count()).select_from(TagScan).where(
            TagScan.tag_id == tag.id, TagScan.received_at > now - dt.timedelta(minutes=10)))
        if int(recent or 0) >= cfg.scans_per_tag_per_10_minutes:
            return "limited", None
        if refusal is not None:
            session.add(TagScan(tag_id=tag.id, worker_id=who.worker_id, scanned_at=at, received_at=now,
                                outcome="too_old", queued=queued))
            return "too_old", None
        return "ok", (tag.id, tag.resident_id)

    verdict, found = await ctx.db(look)
    if verdict == "forged":
        return json_response({"ok": False, "error": "This tag is not one of ours. Ring the office."}, 400)
    if verdict == "limited":
        return json_response({"ok": False, "error": "This tag was scanned too often; wait a few minutes."}, 429)
    if verdict == "too_old":
        return json_response({"ok": False, "error": f"Not logged: {refusal}."}, 422)
    tag_pk, resident_id = found
    call = CallInfo(f"tag-{client_id}", "tag", at, None)
    effect = CheckIn(call, who.worker_number, "", (resident_id,), True, at, 0, True, method=Method.TAG,
                     preauthenticated=True, entered_at=now if queued else None)
    store = CallStore.from_runtime(ctx.runtime)
    result = await ctx.runtime.run_db(store.run, effect)

    def note(session: Session) -> None:
        outcome = "refused" if not isinstance(result, CheckedIn) else (
            "duplicate" if result.duplicate else result.direction)
        session.add(TagScan(tag_id=tag_pk, worker_id=who.worker_id, scanned_at=at, received_at=now,
                            outcome=outcome, queued=queued))

    await ctx.db(note)
    if not isinstance(result, CheckedIn):
        return json_response({"ok": False, "error": "Not logged. Ring the office."}, 409)
    payload = {"call_record_id": result.call_record_id, "attendance_id": result.attendance_id,
               "visit_id": result.visit_id, "outcome": result.direction, "uniqueid": call.uniqueid}
    ctx.runtime.events.publish("call", payload)
    ctx.runtime.events.publish("recorded", {"call_record_id": result.call_record_id})  # the alert pass, now
    local = at.astimezone(ctx.runtime.settings.tz).strftime("%H:%M")
    word = "Arrival" if result.direction == "arrival" else "Departure"
    return json_response({"ok": True, "direction": result.direction, "at": at.isoformat(), "visit_id": result.visit_id,
                          "queued": queued, "duplicate": result.duplicate,
                          "message": f"{word} logged at {local}" + (" (sent late from this phone)" if queued else "")})


# --- alarm and messages ------------------------------------------------------------------


async def alarm(ctx: Ctx) -> Response:
    """The lone-worker alarm: a critical alert naming the worker's current visit, escalated like a no-reply."""
    who = await _required(ctx, post=True)
    now = ctx.now()
    from scheduler.store import raise_alert

    def work(session: Session) -> int | None:
        current = session.scalar(select(Attendance).where(
            Attendance.worker_id == who.worker_id, Attendance.arrival_at.is_not(None),
            Attendance.departure_at.is_(None), Attendance.arrival_at > now - dt.timedelta(hours=12))
            .order_by(Attendance.arrival_at.desc()).limit(1))
        where = "not logged in at any home" if current is None else "on site (arrival logged)"
        return raise_alert(session, kind=AlertKind.ALARM, worker_id=who.worker_id,
                           visit_id=current.visit_id if current else None,
                           resident_id=current.resident_id if current else None,
                           attendance_id=current.id if current else None, at=now,
                           key=f"alarm:{who.worker_id}:{now:%Y%m%d%H%M}",
                           detail=f"worker {who.worker_number} pressed the alarm on their phone; {where}")

    alert_id = await ctx.db(work)
    ctx.runtime.events.publish("alert", {"id": alert_id, "kind": AlertKind.ALARM})
    ctx.runtime.events.publish("recorded", {"alert_id": alert_id})  # its chain starts in the next pass, now
    return json_response({"ok": True, "message": "The office has been alerted. Stay safe; ring 999 if in danger."})


async def worker_message(ctx: Ctx) -> Response:
    who = await _required(ctx, post=True)
    body = ctx.field("body", limit=1000, multiline=True)
    if not body:
        return redirect("/w")
    now = ctx.now()

    def work(session: Session) -> None:
        session.add(WorkerMessage(worker_id=who.worker_id, visit_id=_visit_now(session, who.worker_id, now),
                                  from_office=False, author=f"worker {who.worker_number}", body=body, sent_at=now))

    await ctx.db(work)
    ctx.runtime.events.publish("message", {"worker_id": who.worker_id})
    return redirect("/w")


def _visit_now(session: Session, worker_id: int, now: dt.datetime) -> int | None:
    """The visit a worker's message is about: where they are logged in, else their nearest
    visit within three hours (so the office sees it beside that visit)."""
    open_visit = session.scalar(select(Attendance.visit_id).where(
        Attendance.worker_id == worker_id, Attendance.departure_at.is_(None), Attendance.visit_id.is_not(None),
        Attendance.arrival_at > now - dt.timedelta(hours=12)).order_by(Attendance.arrival_at.desc()).limit(1))
    if open_visit is not None:
        return int(open_visit)
    window = dt.timedelta(hours=3)
    rows = session.execute(select(Visit.id, Visit.planned_start).join(VisitWorker, VisitWorker.visit_id == Visit.id)
                           .where(VisitWorker.worker_id == worker_id, Visit.status == VisitStatus.SCHEDULED,
                                  Visit.planned_start > now - window, Visit.planned_start < now + window)).all()
    return min(rows, key=lambda r: abs(r.planned_start - now)).id if rows else None


def visit_messages(session: Session, visit_id: int) -> list[dict[str, Any]]:
    """The messages about one visit, oldest first, for the visit page."""
    rows = session.execute(select(WorkerMessage, Worker.worker_number)
                           .join(Worker, Worker.id == WorkerMessage.worker_id)
                           .where(WorkerMessage.visit_id == visit_id)
                           .order_by(WorkerMessage.sent_at, WorkerMessage.id)).all()
    return [{"at": m.sent_at, "from_office": m.from_office, "author": m.author, "body": m.body, "number": n,
             "worker_id": m.worker_id} for m, n in rows]


# --- the office side -----------------------------------------------------------------------


async def resident_tags(ctx: Ctx, id: int, *, device_errors: list[str] | None = None, status: int = 200) -> Response:
    base, key = ctx.runtime.settings.base_url, ctx.runtime.hasher.site_key
    id = int(id)  # the router hands path parameters over as text; PostgreSQL will not compare integer = text

    def work(session: Session) -> dict[str, Any] | None:
        r = session.get(Resident, id)
        if r is None:
            return None
        rows = session.scalars(select(HomeTag).where(HomeTag.resident_id == id).order_by(HomeTag.id)).all()
        out = []
        for t in rows:
            url = tags.payload(base, key, t.tag_id, t.resident_id)
            out.append({"id": t.id, "active": t.active, "issued_at": t.issued_at, "issued_by": t.issued_by,
                        "url": url, "qr": segno.make(url, error="m").svg_inline(scale=4) if t.active else ""})
        devices = [{"id": d.id, "serial": d.serial, "digits": d.digits, "step": d.step_seconds, "active": d.active,
                    "registered_at": d.registered_at, "registered_by": d.registered_by}
                   for d in session.scalars(select(VerificationDevice).where(VerificationDevice.resident_id == id)
                                            .order_by(VerificationDevice.id))]
        return {"resident": {"id": r.id, "reference": r.reference, "name": r.name}, "tags": out, "devices": devices}

    data = await ctx.db(work)
    if data is None:
        raise HTTPError(404, "No such resident")
    return ctx.render("tags.html", status=status, device_errors=device_errors, **data)


async def register_device(ctx: Ctx, id: int) -> Response:
    """A visit-verification device typed in (serial and seed): the same checks and sealing as
    ``carecall import devices``, through the importer, all or nothing; the seed is never shown."""
    id = int(id)
    serial = ctx.field("serial", limit=64)
    secret = ctx.field("secret", limit=200)
    digits, step = ctx.field("digits", limit=1) or "6", ctx.field("step_seconds", limit=2) or "60"
    ref = await ctx.db(lambda s: s.scalar(select(Resident.reference).where(Resident.id == id)))
    if ref is None:
        raise HTTPError(404, "No such resident")
    if any(c in v for v in (serial, secret, digits, step) for c in ',"'):
        return await resident_tags(ctx, id, device_errors=["serial and secret may not hold commas or quotes"],
                                   status=400)
    runtime = ctx.runtime
    ictx = ImportContext(runtime.settings.tz, runtime.settings.phone_region, runtime.hasher, ctx.user.username)
    row = f"serial,resident_reference,secret,digits,step_seconds\n{serial},{ref},{secret},{digits},{step}\n"
    report = await runtime.run_db(import_csv, runtime.factory, "devices", row, ictx)
    if not report.ok:
        errors = [e.message for e in report.errors]
        return await resident_tags(ctx, id, device_errors=errors, status=400)
    return redirect(f"/residents/{id}/tags")


async def retire_device(ctx: Ctx, id: int) -> Response:
    id = int(id)
    actor = ctx.user.username

    def work(session: Session) -> int | None:
        d = session.get(VerificationDevice, id)
        if d is None:
            return None
        d.active = False
        ref = session.scalar(select(Resident.reference).where(Resident.id == d.resident_id))
        session.add(AuditEntry(actor=actor, action="retire_device", entity="resident", entity_id=ref or "",
                               after=json.dumps({"serial": d.serial})))
        return d.resident_id

    rid = await ctx.db(work)
    if rid is None:
        raise HTTPError(404, "No such device")
    return redirect(f"/residents/{rid}/tags")


async def issue_tag(ctx: Ctx, id: int) -> Response:
    id = int(id)  # path parameters arrive as text (PostgreSQL: integer = text fails)
    actor = ctx.user.username

    def work(session: Session) -> bool:
        r = session.get(Resident, id)
        if r is None:
            return False
        session.add(HomeTag(tag_id=tags.new_tag_id(), resident_id=id, issued_by=actor))
        # Audit entries name residents by reference, workers by number (privacy.registry finds them so).
        session.add(AuditEntry(actor=actor, action="issue_tag", entity="resident", entity_id=r.reference, after="{}"))
        return True

    if not await ctx.db(work):
        raise HTTPError(404, "No such resident")
    return redirect(f"/residents/{id}/tags")


async def retire_tag(ctx: Ctx, id: int) -> Response:
    id = int(id)  # path parameters arrive as text (PostgreSQL: integer = text fails)
    actor = ctx.user.username

    def work(session: Session) -> int | None:
        t = session.get(HomeTag, id)
        if t is None:
            return None
        t.active = False
        ref = session.scalar(select(Resident.reference).where(Resident.id == t.resident_id))
        session.add(AuditEntry(actor=actor, action="retire_tag", entity="resident", entity_id=ref or "",
                               after="{}"))
        return t.resident_id

    rid = await ctx.db(work)
    if rid is None:
        raise HTTPError(404, "No such tag")
    return redirect(f"/residents/{rid}/tags")


async def worker_phone(ctx: Ctx, id: int, code: str = "") -> Response:
    id = int(id)  # path parameters arrive as text (PostgreSQL: integer = text fails)
    def work(session: Session) -> dict[str, Any] | None:
        w = session.get(Worker, id)
        if w is None:
            return None
        devices = [{"id": d.id, "label": d.label, "enrolled_at": d.enrolled_at, "last_seen_at": d.last_seen_at,
                    "revoked_at": d.revoked_at, "revoked_by": d.revoked_by}
                   for d in session.scalars(select(WorkerDevice).where(WorkerDevice.worker_id == id)
                                            .order_by(WorkerDevice.id))]
        return {"worker": {"id": w.id, "number": w.worker_number, "name": w.name}, "devices": devices}

    data = await ctx.db(work)
    if data is None:
        raise HTTPError(404, "No such worker")
    return ctx.render("worker_phone.html", code=code, **data)


async def issue_enrolment(ctx: Ctx, id: int) -> Response:
    id = int(id)  # path parameters arrive as text (PostgreSQL: integer = text fails)
    actor, now, cfg = ctx.user.username, ctx.now(), _config(ctx)
    code = f"{secrets.randbelow(10**8):08d}"

    def work(session: Session) -> bool:
        w = session.get(Worker, id)
        if w is None:
            return False
        session.add(WorkerEnrolment(worker_id=id, code_hash=_digest(code), issued_by=actor, issued_at=now,
                                    expires_at=now + dt.timedelta(hours=cfg.enrolment_hours)))
        session.add(AuditEntry(actor=actor, action="issue_enrolment", entity="worker", entity_id=w.worker_number,
                               after="{}"))
        return True

    if not await ctx.db(work):
        raise HTTPError(404, "No such worker")
    resp = await worker_phone(ctx, id, code=f"{code[:4]} {code[4:]}")
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def revoke_device(ctx: Ctx, id: int) -> Response:
    id = int(id)  # path parameters arrive as text (PostgreSQL: integer = text fails)
    actor, now = ctx.user.username, ctx.now()

    def work(session: Session) -> int | None:
        d = session.get(WorkerDevice, id)
        if d is None:
            return None
        if d.revoked_at is None:
            d.revoked_at, d.revoked_by = now, actor
            number = session.scalar(select(Worker.worker_number).where(Worker.id == d.worker_id))
            session.add(AuditEntry(actor=actor, action="revoke_phone", entity="worker", entity_id=number or "",
                                   after=json.dumps({"device": d.id})))
        return d.worker_id

    wid = await ctx.db(work)
    if wid is None:
        raise HTTPError(404, "No such phone")
    return redirect(f"/workers/{wid}/phone")


async def messages_page(ctx: Ctx) -> Response:
    def work(session: Session) -> dict[str, Any]:
        rows = session.execute(select(WorkerMessage, Worker.worker_number, Worker.name)
                               .join(Worker, Worker.id == WorkerMessage.worker_id)
                               .order_by(WorkerMessage.sent_at.desc(), WorkerMessage.id.desc()).limit(200)).all()
        workers = session.execute(select(Worker.id, Worker.worker_number, Worker.name)
                                  .where(Worker.active.is_(True)).order_by(Worker.worker_number)).all()
        return {"messages": [{"id": m.id, "worker_id": m.worker_id, "number": n, "name": name, "body": m.body,
                              "from_office": m.from_office, "author": m.author, "at": m.sent_at,
                              "visit_id": m.visit_id} for m, n, name in rows],
                "workers": [{"id": i, "number": n, "name": name} for i, n, name in workers]}

    return ctx.render("messages.html", **await ctx.db(work))


async def office_message(ctx: Ctx) -> Response:
    try:
        worker_id = int(ctx.field("worker_id", limit=10))
    except ValueError:
        raise HTTPError(400, "Choose a worker") from None
    body = ctx.field("body", limit=1000, multiline=True)
    if not body:
        raise HTTPError(400, "The message is empty")
    visit_text = ctx.field("visit_id", limit=10)
    if visit_text and not visit_text.isdigit():
        raise HTTPError(400, "visit_id must be a visit's number")
    visit_id = int(visit_text) if visit_text else None
    actor, now = ctx.user.username, ctx.now()

    def work(session: Session) -> bool:
        if session.get(Worker, worker_id) is None or (visit_id is not None and session.get(Visit, visit_id) is None):
            return False
        session.add(WorkerMessage(worker_id=worker_id, visit_id=visit_id, from_office=True, author=actor, body=body,
                                  sent_at=now))
        return True

    if not await ctx.db(work):
        raise HTTPError(404, "No such worker or visit")
    return redirect(f"/visits/{visit_id}#messages" if visit_id is not None else "/messages")


def register(app: WebApp) -> None:
    app.add("GET", "/w/login", login_form, None)
    app.add("POST", "/w/login", login, None)
    app.add("GET", "/w", home, None)
    app.add("GET", "/t/{payload}", tag_link, None)
    app.add("POST", "/w/tag", scan, None)
    app.add("POST", "/w/alarm", alarm, None)
    app.add("POST", "/w/messages", worker_message, None)
    app.add("GET", "/residents/{id:int}/tags", resident_tags, ANYONE)
    app.add("POST", "/residents/{id:int}/tags", issue_tag, VISIT_EDITORS)
    app.add("POST", "/tags/{id:int}/retire", retire_tag, VISIT_EDITORS)
    app.add("POST", "/residents/{id:int}/devices", register_device, VISIT_EDITORS)
    app.add("POST", "/devices/{id:int}/retire", retire_device, VISIT_EDITORS)
    app.add("GET", "/workers/{id:int}/phone", worker_phone, ANYONE)
    app.add("POST", "/workers/{id:int}/phone", issue_enrolment, VISIT_EDITORS)
    app.add("POST", "/worker-phones/{id:int}/revoke", revoke_device, VISIT_EDITORS)
    app.add("GET", "/messages", messages_page, ANYONE)
    app.add("POST", "/messages", office_message, VISIT_EDITORS)
