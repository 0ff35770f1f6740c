"""The office's side of outreach: a resident's notice preferences and family access, the feedback
queue, and (managers) the council's commissioner accounts.

Reads for any office role; changes for coordinators and managers (commissioner accounts
for managers). Invitation e-mails are sent from a thread (blocking SMTP, never on the
reactor) and their outcome kept on the invitation, with a "send again" when it failed.
"""

from __future__ import annotations

import secrets
from email.message import EmailMessage
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from twisted.internet.threads import deferToThread

from ivr.models import Resident, ResidentContact
from outreach import council, family, preferences
from outreach.family import OutreachError
from outreach.models import FeedbackStatus, NoticeChannel, NoticePreference, OutsideScope
from scheduler.delivery import DeliveryConfig, send_message
from web import auth
from web.app import Ctx, FormError, HTTPError, Response, WebApp, redirect
from web.auth import ANYONE, MANAGERS, VISIT_EDITORS
from web.models import User


def _delivery(ctx: Ctx) -> DeliveryConfig:
    return DeliveryConfig.from_settings(ctx.runtime.settings)


async def outreach_list(ctx: Ctx) -> Response:
    def work(session: Session) -> list[dict[str, Any]]:
        fam = dict(session.execute(select(OutsideScope.resident_id, func.count()).where(
            OutsideScope.resident_id.is_not(None)).group_by(OutsideScope.resident_id)).all())
        prefs = {p.resident_id: p for p in session.scalars(select(NoticePreference))}
        return [dict(id=r.id, reference=r.reference, name=r.name, restricted=r.processing_restricted,
                     lateness=bool(prefs.get(r.id) and prefs[r.id].lateness_consent),
                     survey=bool(prefs.get(r.id) and prefs[r.id].survey_consent),
                     dnc=bool(prefs.get(r.id) and prefs[r.id].do_not_call), family=fam.get(r.id, 0))
                for r in session.scalars(select(Resident).where(Resident.active.is_(True))
                                         .order_by(Resident.reference))]

    return ctx.render("outreach_list.html", rows=await ctx.db(work))


async def resident_outreach(ctx: Ctx, id: str, *, error: str = "", status: int = 200) -> Response:
    rid = int(id)

    def work(session: Session) -> dict[str, Any] | None:
        r = session.get(Resident, rid)
        if r is None:
            return None
        contacts = session.scalars(select(ResidentContact).where(ResidentContact.resident_id == rid)
                                   .order_by(ResidentContact.position)).all()
        return dict(id=r.id, reference=r.reference, name=r.name, restricted=r.processing_restricted,
                    prefs=preferences.effective(session, rid),
                    contacts=[dict(id=c.id, name=c.name, relation=c.relation_note or c.relation, email=c.email,
                                   phone=bool(c.phone_e164 or c.phone2_e164), notify=c.notify_missed)
                              for c in contacts],
                    users=family.family_users(session, rid), invites=family.invites(session, rid))

    r = await ctx.db(work)
    if r is None:
        raise HTTPError(404, "No such resident")
    return ctx.render("outreach_resident.html", status=status, r=r, error=error, hhmm=preferences.hhmm,
                      channels=NoticeChannel.LABELS, can_edit=ctx.user.role in VISIT_EDITORS,
                      done=ctx.arg("done", limit=20))


async def save_preferences(ctx: Ctx, id: str) -> Response:
    rid = int(id)
    try:
        names = ("lateness_consent", "lateness_channel", "contact_id", "lateness_minutes", "quiet_start",
                 "quiet_end", "do_not_call", "survey_consent")
        values = {n: ctx.field(n, limit=20) for n in names}
        prefs = preferences.parse_form(values)
        actor, now = ctx.user.username, ctx.now()

        def work(session: Session) -> None:
            if session.get(Resident, rid) is None:
                raise HTTPError(404, "No such resident")
            preferences.save(session, rid, prefs, actor, now)

        await ctx.db(work)
    except (FormError, OutreachError) as exc:
        return await resident_outreach(ctx, id, error=str(exc), status=400)
    return redirect(f"/residents/{rid}/outreach?done=saved")


def invite_message(token: str, email: str, cfg: DeliveryConfig) -> EmailMessage:
    """The invitation: the provider's name and the link, nobody's name (the subject carries nothing personal)."""
    notices = cfg.notices
    msg = EmailMessage()
    msg["Subject"] = f"Your invitation to the {notices.provider_name} family page"
    msg["From"] = cfg.email_from
    msg["To"] = email
    link = f"{cfg.base_url.rstrip('/')}/family/join?token={token}"
    phone = f" on {notices.office_phone}" if notices.office_phone else ""
    msg.set_content(
        f"This is {notices.provider_name}.\n\n"
        "You have been invited to see the care visits of the person you support, and to send us your\n"
        "feedback. Open this link to choose a user name and password (it works once, for\n"
        f"{notices.invite_hours} hours):\n\n{link}\n\n"
        f"If you did not expect this e-mail, please ignore it or call our office{phone}.\n")
    return msg


async def _send_invite(ctx: Ctx, invite_id: int, token: str, email: str) -> None:
    cfg = _delivery(ctx)
    try:
        await deferToThread(send_message, invite_message(token, email, cfg), cfg)
        error = ""
    except Exception as exc:  # recorded on the invitation; the office may send again
        error = f"{type(exc).__name__}: {exc}"
    await ctx.db(family.record_invite_email, invite_id, error)


async def invite(ctx: Ctx, id: str) -> Response:
    rid = int(id)
    hours = _delivery(ctx).notices.invite_hours
    try:
        contact_id = int(ctx.field("contact_id", limit=9) or "0")
        actor, now = ctx.user.username, ctx.now()
        invite_id, token, email = await ctx.db(lambda s: family.invite(
            s, contact_id=contact_id, resident_id=rid, actor=actor, now=now, hours=hours))
    except (FormError, OutreachError, ValueError) as exc:
        return await resident_outreach(ctx, id, error=str(exc), status=400)
    await _send_invite(ctx, invite_id, token, email)
    return redirect(f"/residents/{rid}/outreach?done=invited")


async def family_user_active(ctx: Ctx, id: str, uid: str) -> Response:
    rid = int(id)
    active = ctx.field("active", limit=5) == "1"
    try:
        await ctx.db(family.set_family_active, rid, int(uid), active)
    except OutreachError as exc:
        return await resident_outreach(ctx, id, error=str(exc), status=400)
    return redirect(f"/residents/{rid}/outreach?done=saved")


# --- feedback queue -------------------------------------------------------------------------


async def feedback_queue(ctx: Ctx) -> Response:
    status = ctx.arg("status", limit=12)
    if status and status not in FeedbackStatus.ALL:
        raise HTTPError(400, "unknown status")

    def work(session: Session) -> tuple[list[dict[str, Any]], dict[str, int]]:
        counts = dict(session.execute(select(family.Feedback.status, func.count())
                                      .group_by(family.Feedback.status)).all())
        return family.office_queue(session, status), counts

    rows, counts = await ctx.db(work)
    return ctx.render("feedback_queue.html", rows=rows, current=status, counts=counts, labels=FeedbackStatus.LABELS)


async def feedback_page(ctx: Ctx, id: str, *, error: str = "", status: int = 200) -> Response:
    def work(session: Session) -> dict[str, Any] | None:
        f = family.feedback_item(session, int(id))
        if f is None:
            return None
        r = session.get(Resident, f.resident_id)
        u = session.get(User, f.user_id) if f.user_id else None
        return dict(id=f.id, kind=f.kind, message=f.message, status=f.status, reply=f.reply, replied_by=f.replied_by,
                    replied_at=f.replied_at, created_at=f.created_at, resident_id=f.resident_id,
                    resident_ref=r.reference if r else "", username=u.username if u else "")

    item = await ctx.db(work)
    if item is None:
        raise HTTPError(404, "No such feedback")
    return ctx.render("feedback_item.html", status=status, f=item, error=error, labels=FeedbackStatus.LABELS,
                      can_edit=ctx.user.role in VISIT_EDITORS, done=ctx.arg("done", limit=20))


async def feedback_reply(ctx: Ctx, id: str) -> Response:
    try:
        status, text = ctx.field("status", limit=12), ctx.field("reply", limit=family.MAX_FEEDBACK, multiline=True)
        actor, now = ctx.user.username, ctx.now()
        await ctx.db(lambda s: family.reply(s, feedback_id=int(id), status=status, text=text, actor=actor, now=now))
    except (FormError, OutreachError) as exc:
        return await feedback_page(ctx, id, error=str(exc), status=400)
    return redirect(f"/feedback/{int(id)}?done=saved")


# --- commissioner accounts (managers) ---------------------------------------------------------


async def council_users(ctx: Ctx, *, error: str = "", status: int = 200, created: str = "") -> Response:
    rows, funders = await ctx.db(lambda s: (council.commissioners(s), council.funders(s)))
    return ctx.render("council_users.html", status=status, rows=rows, funders=funders, error=error, created=created)


async def council_user_add(ctx: Ctx) -> Response:
    try:
        username, funder = ctx.field("username", limit=40), ctx.field("funder", limit=80)
        password = ctx.field("password", limit=auth.MAX_PASSWORD) or secrets.token_urlsafe(12)
        actor, now = ctx.user.username, ctx.now()
        await ctx.db(lambda s: council.add_commissioner(s, username=username, funder=funder, password=password,
                                                        actor=actor, now=now))
    except (FormError, OutreachError, auth.AuthError) as exc:
        return await council_users(ctx, error=str(exc), status=400)
    return redirect("/council-users")


def register(app: WebApp) -> None:
    app.add("GET", "/outreach", outreach_list, ANYONE)
    app.add("GET", "/residents/{id:int}/outreach", resident_outreach, ANYONE)
    app.add("POST", "/residents/{id:int}/outreach/preferences", save_preferences, VISIT_EDITORS)
    app.add("POST", "/residents/{id:int}/outreach/invite", invite, VISIT_EDITORS)
    app.add("POST", "/residents/{id:int}/outreach/family/{uid:int}", family_user_active, VISIT_EDITORS)
    app.add("GET", "/feedback", feedback_queue, ANYONE)
    app.add("GET", "/feedback/{id:int}", feedback_page, ANYONE)
    app.add("POST", "/feedback/{id:int}", feedback_reply, VISIT_EDITORS)
    app.add("GET", "/council-users", council_users, MANAGERS)
    app.add("POST", "/council-users", council_user_add, MANAGERS)
