"""Login, the live board, visit detail with corrections, and the unmatched-calls queue."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from ivr import corrections
from ivr.corrections import REASONS, CorrectionError
from ivr.models import (
    Attendance,
    AuditEntry,
    CallRecord,
    Resident,
    ReviewStatus,
    Visit,
    Worker,
)
from ivr.phone import mask
from outreach import lateness
from privacy.viewlog import viewed
from scheduler.models import Alert
from web import auth, worker_app
from web.app import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    STREAMING,
    Ctx,
    FormError,
    HTTPError,
    Response,
    WebApp,
    redirect,
)
from web.auth import ANYONE, EVERYONE, VISIT_EDITORS
from web.board import (
    State,
    alert_kinds_by_visit,
    alert_rules,
    board_rows,
    count_states,
    css_class,
    state_of,
    teams,
)
from web.forms import day_arg, int_field, local_time_field, team_arg
from web.oncall import oncall_banner
from web.people import people_for

# --- login ---------------------------------------------------------------------------


async def login_form(ctx: Ctx) -> Response:
    nonce = (ctx.request.getCookie(LOGIN_CSRF_COOKIE) or b"").decode("latin-1")
    fresh = auth.login_nonce_fresh(nonce, ctx.now())
    if not fresh:
        nonce = auth.new_login_nonce(ctx.now())
    resp = ctx.render("login.html", login_csrf=auth.login_csrf_token(ctx.app.login_key, nonce), error="",
                      username="")
    if not fresh:
        resp.cookies.append((LOGIN_CSRF_COOKIE, nonce.encode(), {}))
    return resp


async def login(ctx: Ctx) -> Response:
    cookie = (ctx.request.getCookie(LOGIN_CSRF_COOKIE) or b"").decode("latin-1")
    try:
        given = ctx.field("login_csrf", limit=64)
        username = ctx.field("username", limit=80)
        password = ctx.field("password", limit=auth.MAX_PASSWORD)
    except FormError:
        raise HTTPError(400, "The login form was not filled in correctly") from None
    if not auth.login_csrf_ok(ctx.app.login_key, cookie, given, ctx.now()):
        raise HTTPError(403, "The login form was out of date; reload the page and try again")
    token = auth.login_csrf_token(ctx.app.login_key, cookie)
    throttle = ctx.app.throttle
    keys = throttle.keys(username, getattr(ctx.request.getClientAddress(), "host", "unknown"))
    wait = throttle.wait(keys)
    if wait > 0:  # refused before the password is looked at: guessing during the lock gains nothing
        resp = ctx.render("login.html", status=429, login_csrf=token, username=username,
                          error=f"Too many failed log-ins. Try again in {math.ceil(wait)} seconds.")
        resp.headers["Retry-After"] = str(math.ceil(wait))
        return resp
    now = ctx.now()
    policy = ctx.app.policy

    def work(session: Session) -> tuple[str, Any] | None:
        user = auth.authenticate(session, username, password)
        return None if user is None else auth.open_session(session, user, now, policy)

    opened = await ctx.db(work)
    if opened is None:
        throttle.failed(keys)
        return ctx.render("login.html", status=401, login_csrf=token, username=username,
                          error="Wrong user name or password.")
    value, principal = opened
    throttle.succeeded(keys[0])
    resp = redirect(auth.landing(principal.role))
    resp.cookies.append((SESSION_COOKIE, value.encode(), {}))
    resp.cookies.append((LOGIN_CSRF_COOKIE, b"", {"max_age": "0"}))
    return resp


async def logout(ctx: Ctx) -> Response:
    sid = ctx.user.session_id
    if sid:
        await ctx.db(auth.close_session, sid)
    resp = redirect("/login")
    resp.cookies.append((SESSION_COOKIE, b"", {"max_age": "0"}))
    return resp


async def home(ctx: Ctx) -> Response:
    return redirect(auth.landing(ctx.user.role))


# --- board ---------------------------------------------------------------------------


async def board(ctx: Ctx) -> Response:
    settings = ctx.runtime.settings
    day, team = day_arg(ctx, settings.tz), team_arg(ctx)
    now = ctx.now()

    def work(session: Session) -> tuple[list[dict[str, Any]], list[str]]:
        return board_rows(session, day, team, now, settings), teams(session)

    rows, team_list = await ctx.db(work)
    journal = await ctx.runtime.run_journal(ctx.runtime.journal_status)
    oldest = dt.datetime.fromisoformat(journal["oldest_at"]) if journal.get("oldest_at") else None
    counts = count_states(rows)
    oncall_warning = await oncall_banner(ctx)
    return ctx.render("board.html", rows=rows, day=day, team=team, teams=team_list, counts=counts,
                      journal=journal, oldest=oldest, oncall_warning=oncall_warning,
                      states=[(s, css_class(s)) for s in State.ALL],
                      prev_day=day - dt.timedelta(days=1), next_day=day + dt.timedelta(days=1))


async def board_events(ctx: Ctx) -> Response:
    settings = ctx.runtime.settings
    day, team = day_arg(ctx, settings.tz), team_arg(ctx)
    ctx.app.hub.open(ctx.request, (day, team))
    return STREAMING


# --- visit detail and corrections ----------------------------------------------------


def _visit_alerts(session: Session, visit_id: int) -> list[dict[str, Any]]:
    return [{"id": a.id, "label": a.kind.replace("_", " "), "status": a.status, "raised_at": a.raised_at,
             "severity": a.severity} for a in session.scalars(select(Alert).where(Alert.visit_id == visit_id)
                                                              .order_by(Alert.raised_at, Alert.id))]


def _visit_detail(session: Session, visit_id: int, now: dt.datetime | None = None, rules: Any = None,
                  user_id: int | None = None) -> dict[str, Any] | None:
    v = session.scalar(select(Visit).where(Visit.id == visit_id)
                       .options(selectinload(Visit.resident), selectinload(Visit.assignments)))
    if v is None:
        return None
    atts = session.scalars(select(Attendance).where(Attendance.visit_id == v.id)
                           .options(selectinload(Attendance.worker)).order_by(Attendance.id)).all()
    att_ids = [a.id for a in atts]
    calls = session.scalars(select(CallRecord).where(or_(
        CallRecord.visit_id == v.id, CallRecord.attendance_id.in_(att_ids) if att_ids else False))
        .order_by(CallRecord.started_at)).all()
    workers = {w.id: w for w in session.scalars(select(Worker))}
    timeline: list[dict[str, Any]] = []
    for c in calls:
        w = workers.get(c.worker_id) if c.worker_id else None
        timeline.append({"at": c.started_at, "what": f"call: {c.outcome.replace('_', ' ')}",
                         "who": w.worker_number if w else (c.worker_number_entered or ""),
                         "detail": f"from {mask(c.caller_e164)}" + (" (home line)" if c.location_verified else ""),
                         "kind": "call"})
    for a in atts:
        for end in ("arrival", "departure"):
            at = getattr(a, f"{end}_at")
            if at is not None:
                method = getattr(a, f"{end}_method")
                verified = getattr(a, f"{end}_verified")
                entered = getattr(a, f"{end}_entered_at")
                detail = method or ""
                if verified:
                    detail += ", location verified"
                if entered is not None:
                    detail += ", entered by the office"
                timeline.append({"at": at, "what": end, "who": a.worker.worker_number, "detail": detail,
                                 "kind": end})
    timeline.sort(key=lambda e: e["at"])
    state, note = state_of(v, list(atts), alert_kinds_by_visit(session, [v.id]).get(v.id, frozenset()),
                           now, rules) if now is not None and rules is not None else (v.status, "")
    people = people_for(session, v.resident_id, [vw.worker_id for vw in v.assignments]
                        + [a.worker_id for a in atts], now, user_id) if now is not None and user_id else {}
    audit = session.scalars(select(AuditEntry).where(AuditEntry.entity == "visit",
                                                     AuditEntry.entity_id == v.visit_ref)
                            .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())).all()
    return {
        "id": v.id, "visit_ref": v.visit_ref, "status": v.status, "cancel_reason": v.cancel_reason,
        "state": state, "state_note": note, "css": css_class(state), "alerts": _visit_alerts(session, v.id),
        "people": people,
        "planned_start": v.planned_start, "planned_end": v.planned_end, "time_critical": v.time_critical,
        "resident_name": v.resident.name, "resident_ref": v.resident.reference, "resident_id": v.resident_id,
        "assigned": [{"id": vw.worker_id, "number": workers[vw.worker_id].worker_number,
                      "name": workers[vw.worker_id].name} for vw in v.assignments],
        "attendances": [{"worker": a.worker.worker_number, "kind": a.kind, "arrival_at": a.arrival_at,
                         "arrival_method": a.arrival_method, "departure_at": a.departure_at,
                         "departure_method": a.departure_method} for a in atts],
        "timeline": timeline,
        "audit": [{"at": e.at, "actor": e.actor, "action": e.action.replace("_", " "), "before": e.before,
                   "after": e.after, "reason": REASONS.get(e.reason_code, e.reason_code), "note": e.note}
                  for e in audit],
        "workers": sorted(({"id": w.id, "number": w.worker_number, "name": w.name}
                           for w in workers.values() if w.active), key=lambda w: w["number"]),
    }


async def visit_page(ctx: Ctx, id: str, *, error: str = "", status: int = 200, form: dict[str, str] | None = None
                     ) -> Response:
    rules = alert_rules(ctx.runtime.settings)
    detail = await ctx.db(_visit_detail, int(id), ctx.now(), rules, ctx.user.user_id)
    if detail is None:
        raise HTTPError(404, "No such visit")
    notice = await ctx.db(lateness.history, int(id))
    messages = await ctx.db(worker_app.visit_messages, int(id))
    await viewed(ctx, "visit", id)
    return ctx.render("visit.html", status=status, v=detail, reasons=REASONS, error=error, form=form or {},
                      notice=notice, messages=messages,
                      can_edit=ctx.user.role in VISIT_EDITORS, done=ctx.arg("done", limit=20),
                      back=f"/visits/{int(id)}", **detail["people"])


async def visit_correct(ctx: Ctx, id: str) -> Response:
    visit_id = int(id)
    tz = ctx.runtime.settings.tz
    actor, now = ctx.user.username, ctx.now()
    form: dict[str, str] = {}
    try:
        action = ctx.field("action", limit=20)
        form = {"action": action, "reason": ctx.field("reason", limit=40),
                "note": ctx.field("note", limit=1000, multiline=True)}
        reason, note = form["reason"], form["note"]
        if action in ("arrival", "departure"):
            worker_id = int_field(ctx, "worker_id")
            at = local_time_field(ctx, "at", tz)

            def work(session: Session) -> Any:
                return corrections.manual_time(session, visit_id=visit_id, worker_id=worker_id, end=action, at=at,
                                               reason=reason, note=note, actor=actor, now=now, tz=tz)
        elif action == "cancel":
            def work(session: Session) -> Any:
                return corrections.cancel_visit(session, visit_id=visit_id, reason=reason, note=note, actor=actor,
                                                now=now)
        elif action == "substitute":
            old_id, new_id = int_field(ctx, "worker_id"), int_field(ctx, "new_worker_id")

            def work(session: Session) -> Any:
                return corrections.substitute_worker(session, visit_id=visit_id, old_worker_id=old_id,
                                                     new_worker_id=new_id, reason=reason, note=note,
                                                     actor=actor, now=now)
        else:
            raise FormError({"action": "choose what to correct"})
        await ctx.db(work)
        ctx.runtime.events.publish("visits", {"visit_id": visit_id})  # the alert pass re-reads it now
    except (FormError, CorrectionError) as exc:
        return await visit_page(ctx, id, error=str(exc), status=400, form=form)
    return redirect(f"/visits/{visit_id}?done={action}")


# --- unmatched calls -----------------------------------------------------------------


def _queue(session: Session) -> dict[str, Any]:
    calls = session.scalars(select(CallRecord).where(CallRecord.review_status == ReviewStatus.OPEN)
                            .order_by(CallRecord.started_at.desc()).limit(200)).all()
    residents = {r.id: r for r in session.scalars(select(Resident))}
    workers = {w.id: w for w in session.scalars(select(Worker))}
    out = []
    for c in calls:
        window = (c.started_at - dt.timedelta(hours=12), c.started_at + dt.timedelta(hours=12))
        q = select(Visit).where(Visit.planned_start.between(*window), Visit.status == "scheduled")
        if c.resident_id is not None:
            q = q.where(Visit.resident_id == c.resident_id)
        candidates = session.scalars(q.order_by(Visit.planned_start).limit(50)).all()
        res = residents.get(c.resident_id) if c.resident_id else None
        w = workers.get(c.worker_id) if c.worker_id else None
        out.append({
            "id": c.id, "started_at": c.started_at, "script": c.script, "outcome": c.outcome.replace("_", " "),
            "caller": mask(c.caller_e164), "location_verified": c.location_verified,
            "resident": f"{res.reference} {res.name}" if res else "unknown",
            "worker_id": c.worker_id, "worker": w.worker_number if w else (c.worker_number_entered or ""),
            "detail": c.detail, "stage": c.stage,
            "candidates": [{"id": v.id, "label": f"{v.visit_ref} · {residents[v.resident_id].name}",
                            "planned_start": v.planned_start} for v in candidates],
        })
    return {"calls": out, "workers": sorted(({"id": w.id, "number": w.worker_number, "name": w.name}
                                             for w in workers.values() if w.active), key=lambda w: w["number"])}


async def unmatched(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    data = await ctx.db(_queue)
    return ctx.render("unmatched.html", status=status, error=error, reasons=REASONS,
                      can_edit=ctx.user.role in VISIT_EDITORS, done=ctx.arg("done", limit=20), **data)


async def call_link(ctx: Ctx, id: str) -> Response:
    tz, actor, now = ctx.runtime.settings.tz, ctx.user.username, ctx.now()
    try:
        visit_id = int_field(ctx, "visit_id")
        worker_id = int_field(ctx, "worker_id", required=False)
        note = ctx.field("note", limit=1000, multiline=True)

        def work(session: Session) -> Any:
            return corrections.link_call(session, call_id=int(id), visit_id=visit_id, worker_id=worker_id,
                                         actor=actor, note=note, now=now, tz=tz)

        await ctx.db(work)
    except (FormError, CorrectionError) as exc:
        return await unmatched(ctx, error=str(exc), status=400)
    return redirect("/calls/unmatched?done=linked")


async def call_reject(ctx: Ctx, id: str) -> Response:
    actor, now = ctx.user.username, ctx.now()
    try:
        reason, note = ctx.field("reason", limit=40), ctx.field("note", limit=1000, multiline=True)

        def work(session: Session) -> Any:
            return corrections.reject_call(session, call_id=int(id), reason=reason, note=note, actor=actor, now=now)

        await ctx.db(work)
    except (FormError, CorrectionError) as exc:
        return await unmatched(ctx, error=str(exc), status=400)
    return redirect("/calls/unmatched?done=rejected")


def register(app: WebApp) -> None:
    app.add("GET", "/login", login_form, None)
    app.add("POST", "/login", login, None)
    app.add("POST", "/logout", logout, EVERYONE)
    app.add("GET", "/", home, EVERYONE)
    app.add("GET", "/board", board, ANYONE)
    app.add("GET", "/board/events", board_events, ANYONE)
    app.add("GET", "/visits/{id:int}", visit_page, ANYONE)
    app.add("POST", "/visits/{id:int}/correct", visit_correct, VISIT_EDITORS)
    app.add("GET", "/calls/unmatched", unmatched, ANYONE)
    app.add("POST", "/calls/{id:int}/link", call_link, VISIT_EDITORS)
    app.add("POST", "/calls/{id:int}/reject", call_reject, VISIT_EDITORS)
