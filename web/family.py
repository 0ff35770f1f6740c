"""The family view (spec §5.24, §3.46): one resident's week and a feedback form, nothing else.

Every family route names the resident in its path and answers 404 unless it is the one
resident in the user's scope (``outreach.family.resident_of``), so trying another id
learns nothing, not even whether it exists. Office pages refuse the family role (403)
because ``web.auth.ANYONE`` holds office roles only.

The invitation page is public: it takes the one-time token from the query string (the
access log leaves query strings out), and its form carries the login CSRF cookie.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from outreach import family
from outreach.family import OutreachError
from outreach.models import FeedbackKind, FeedbackStatus
from web import auth
from web.app import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Ctx,
    FormError,
    HTTPError,
    Response,
    WebApp,
    redirect,
)
from web.models import Role

FAMILY = frozenset({Role.FAMILY})


async def _my_resident(ctx: Ctx, id: str | None = None) -> int:
    rid = await ctx.db(family.resident_of, ctx.user.user_id)
    if rid is None or (id is not None and int(id) != rid):
        raise HTTPError(404, "Not found")
    return int(rid)


async def family_home(ctx: Ctx) -> Response:
    return redirect(f"/family/residents/{await _my_resident(ctx)}")


async def family_feedback_home(ctx: Ctx) -> Response:
    return redirect(f"/family/residents/{await _my_resident(ctx)}/feedback")


def _week_arg(ctx: Ctx) -> dt.date:
    text = ctx.arg("week", limit=10)
    today = ctx.now().astimezone(ctx.runtime.settings.tz).date()
    if not text:
        return family.week_start(today)
    try:
        return family.week_start(dt.date.fromisoformat(text))
    except ValueError:
        raise HTTPError(400, "week must be a date YYYY-MM-DD") from None


async def family_week(ctx: Ctx, id: str) -> Response:
    rid = await _my_resident(ctx, id)
    monday = _week_arg(ctx)
    tz, now = ctx.runtime.settings.tz, ctx.now()

    def work(session: Session) -> tuple[str, list[dict[str, Any]]]:
        return family.resident_label(session, rid), family.week(session, rid, monday, tz, now)

    name, rows = await ctx.db(work)
    days = [monday + dt.timedelta(days=i) for i in range(7)]
    by_day = {d: [r for r in rows if r["planned_start"].astimezone(tz).date() == d] for d in days}
    return ctx.render("family_week.html", rid=rid, first=name, monday=monday, days=days, by_day=by_day,
                      prev=monday - dt.timedelta(days=7), next=monday + dt.timedelta(days=7))


async def family_feedback(ctx: Ctx, id: str, *, error: str = "", status: int = 200,
                          form: dict[str, str] | None = None) -> Response:
    rid = await _my_resident(ctx, id)

    def work(session: Session) -> tuple[str, list[dict[str, Any]]]:
        items = [dict(id=f.id, kind=f.kind, message=f.message, status=f.status, reply=f.reply,
                      created_at=f.created_at, replied_at=f.replied_at) for f in family.feedback_for(session, rid)]
        return family.resident_label(session, rid), items

    name, items = await ctx.db(work)
    return ctx.render("family_feedback.html", status=status, rid=rid, first=name, items=items, error=error,
                      form=form or {}, kinds=FeedbackKind.ALL, labels=FeedbackStatus.LABELS,
                      sent=ctx.arg("sent", limit=5))


async def family_feedback_send(ctx: Ctx, id: str) -> Response:
    rid = await _my_resident(ctx, id)
    form: dict[str, str] = {}
    try:
        form = {"kind": ctx.field("kind", limit=12),
                "message": ctx.field("message", limit=family.MAX_FEEDBACK, multiline=True)}
        user_id, now = ctx.user.user_id, ctx.now()
        await ctx.db(lambda s: family.add_feedback(s, resident_id=rid, user_id=user_id, kind=form["kind"],
                                                   message=form["message"], now=now))
    except (FormError, OutreachError) as exc:
        return await family_feedback(ctx, id, error=str(exc), status=400, form=form)
    return redirect(f"/family/residents/{rid}/feedback?sent=1")


async def family_feedback_item(ctx: Ctx, id: str, fid: str) -> Response:
    rid = await _my_resident(ctx, id)

    def work(session: Session) -> dict[str, Any] | None:
        f = family.feedback_item(session, int(fid), rid)
        return None if f is None else dict(id=f.id, kind=f.kind, message=f.message, status=f.status, reply=f.reply,
                                           created_at=f.created_at, replied_at=f.replied_at)

    item = await ctx.db(work)
    if item is None:
        raise HTTPError(404, "Not found")
    return ctx.render("family_feedback_item.html", rid=rid, f=item, labels=FeedbackStatus.LABELS)


# --- invitation ---------------------------------------------------------------------------


async def join_form(ctx: Ctx, *, error: str = "", status: int = 200, username: str = "") -> Response:
    token = ctx.arg("token", limit=100) or ctx.field("token", limit=100)
    now = ctx.now()
    valid = await ctx.db(lambda s: family.pending_invite(s, token, now) is not None)
    # The same signed, time-limited form token as the login page (web.auth.login_csrf_*).
    nonce = (ctx.request.getCookie(LOGIN_CSRF_COOKIE) or b"").decode("latin-1")
    fresh = auth.login_nonce_fresh(nonce, now)
    if not fresh:
        nonce = auth.new_login_nonce(now)
    resp = ctx.render("family_join.html", status=status if valid else 410, token=token if valid else "",
                      valid=valid, login_csrf=auth.login_csrf_token(ctx.app.login_key, nonce), error=error,
                      username=username)
    if not fresh:
        resp.cookies.append((LOGIN_CSRF_COOKIE, nonce.encode(), {}))
    return resp


async def join(ctx: Ctx) -> Response:
    cookie = (ctx.request.getCookie(LOGIN_CSRF_COOKIE) or b"").decode("latin-1")
    try:
        given = ctx.field("login_csrf", limit=64)
        token = ctx.field("token", limit=100)
        username = ctx.field("username", limit=80)
        password = ctx.field("password", limit=auth.MAX_PASSWORD)
        again = ctx.field("password2", limit=auth.MAX_PASSWORD)
    except FormError:
        raise HTTPError(400, "The form was not filled in correctly") from None
    if not auth.login_csrf_ok(ctx.app.login_key, cookie, given, ctx.now()):
        raise HTTPError(403, "The form was out of date; reload the page and try again")
    if password != again:
        return await join_form(ctx, error="The two passwords differ.", status=400, username=username)
    now, policy = ctx.now(), ctx.app.policy

    def work(session: Session) -> str:
        user = family.accept(session, token=token, username=username, password=password, now=now)
        cookie_value, _ = auth.open_session(session, user, now, policy)
        return cookie_value

    try:
        value = await ctx.db(work)
    except (OutreachError, auth.AuthError) as exc:
        return await join_form(ctx, error=str(exc), status=400, username=username)
    resp = redirect("/family")
    resp.cookies.append((SESSION_COOKIE, value.encode(), {}))
    resp.cookies.append((LOGIN_CSRF_COOKIE, b"", {"max_age": "0"}))
    return resp


def register(app: WebApp) -> None:
    app.add("GET", "/family/join", join_form, None)
    app.add("POST", "/family/join", join, None)
    app.add("GET", "/family", family_home, FAMILY)
    app.add("GET", "/family/feedback", family_feedback_home, FAMILY)
    app.add("GET", "/family/residents/{id:int}", family_week, FAMILY)
    app.add("GET", "/family/residents/{id:int}/feedback", family_feedback, FAMILY)
    app.add("POST", "/family/residents/{id:int}/feedback", family_feedback_send, FAMILY)
    app.add("GET", "/family/residents/{id:int}/feedback/{fid:int}", family_feedback_item, FAMILY)
