"""Office pages for data rights: a person's view log, their subject-access export, their
erasure (managers), and the logged reveal of a worker's NI number (managers, finance).

The person is named in the path by row id only (``/privacy/residents/3``), never by name
or reference, so access logs and browser history hold nothing personal.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from twisted.internet.threads import deferToThread

from ivr.models import Resident, Worker
from ivr.sensitive import site_sealer
from privacy import viewlog
from privacy.erase import erase, flush_journal, leftovers, plan
from privacy.export import build_export, render_pdf
from privacy.models import Channel
from privacy.registry import RESIDENT, WORKER
from privacy.sensitive import NI_READERS, reveal_ni
from web.app import Ctx, FormError, HTTPError, Response, WebApp, redirect
from web.auth import MANAGERS

KINDS = {"residents": RESIDENT, "workers": WORKER}
VIEW_LIMIT = 500


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise HTTPError(404, "Not found")
    return KINDS[kind]


def _summary(session: Session, kind: str, id: int) -> dict[str, Any] | None:
    if kind == RESIDENT:
        r = session.get(Resident, id)
        return None if r is None else {"key": r.reference, "name": r.name, "restricted": r.processing_restricted,
                                       "active": r.active}
    w = session.get(Worker, id)
    return None if w is None else {"key": w.worker_number, "name": w.name, "restricted": False, "active": w.active}


async def person_page(ctx: Ctx, kind: str, id: str, *, error: str = "", status: int = 200) -> Response:
    subject = _kind(kind)
    sid = int(id)
    sealer = site_sealer(ctx.runtime.settings.secret_path)
    actor, role, now = ctx.user.username, ctx.user.role, ctx.now()

    def work(session: Session) -> dict[str, Any] | None:
        person = _summary(session, subject, sid)
        if person is None:
            return None
        viewlog.record(session, actor=actor, role=role, channel=Channel.WEB, kind=subject, subject_id=sid,
                       what="data rights page", at=now)
        session.flush()
        the_plan = plan(session, subject, sid, sealer)
        return {"person": person, "views": viewlog.views_of(session, subject, sid, VIEW_LIMIT),
                "plan": [s for s in the_plan.steps if s.rows]}

    data = await ctx.db(work)
    if data is None:
        raise HTTPError(404, "Not found")
    return ctx.render("privacy_person.html", status=status, kind=kind, id=sid, error=error,
                      done=ctx.arg("done", limit=20), **data)


async def _export(ctx: Ctx, kind: str, id: str) -> Any:
    subject = _kind(kind)
    sealer = site_sealer(ctx.runtime.settings.secret_path)
    actor, role, now = ctx.user.username, ctx.user.role, ctx.now()

    def work(session: Session) -> Any:
        if _summary(session, subject, int(id)) is None:
            raise HTTPError(404, "Not found")
        return build_export(session, subject, int(id), actor=actor, role=role, channel=Channel.WEB, sealer=sealer,
                            now=now)

    return await ctx.db(work)


def _download(body: bytes, content_type: str, filename: str) -> Response:
    return Response(body=body, content_type=content_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


async def export_json(ctx: Ctx, kind: str, id: str) -> Response:
    x = await _export(ctx, kind, id)
    return _download(x.json_bytes(), "application/json", f"{x.filename_stem}.json")


async def export_pdf(ctx: Ctx, kind: str, id: str) -> Response:
    x = await _export(ctx, kind, id)
    # WeasyPrint takes a second or two: off the reactor, and off the database pool (one thread on SQLite).
    body = await deferToThread(render_pdf, x, ctx.runtime.settings.tz)
    return _download(body, "application/pdf", f"{x.filename_stem}.pdf")


async def erase_person(ctx: Ctx, kind: str, id: str) -> Response:
    subject = _kind(kind)
    sid = int(id)
    sealer = site_sealer(ctx.runtime.settings.secret_path)
    actor = ctx.user.username
    try:
        confirm = ctx.field("confirm", limit=60)
    except FormError as exc:
        return await person_page(ctx, kind, id, error=str(exc), status=400)

    def work(session: Session) -> str:
        person = _summary(session, subject, sid)
        if person is None:
            raise HTTPError(404, "Not found")
        if confirm != person["key"]:
            return "type the reference (or worker number) exactly to confirm; nothing was changed"
        the_plan = plan(session, subject, sid, sealer)
        erase(session, the_plan, actor=actor)
        left = leftovers(session, the_plan.person)
        return "" if not left else "erased; still found in " + ", ".join(f"{t}.{c}" for t, c, _ in left)

    problem = await ctx.db(work)
    await ctx.runtime.run_db(flush_journal, ctx.runtime.engine)
    if problem and problem.startswith("type"):
        return await person_page(ctx, kind, id, error=problem, status=400)
    return redirect(f"/privacy/{kind}/{sid}?done=erased")


async def ni_reveal(ctx: Ctx, id: str) -> Response:
    sealer = site_sealer(ctx.runtime.settings.secret_path)
    actor, role = ctx.user.username, ctx.user.role

    def work(session: Session) -> dict[str, Any] | None:
        w = session.get(Worker, int(id))
        if w is None:
            return None
        return {"number": w.worker_number, "name": w.name,
                "ni": reveal_ni(session, sealer, w.id, actor=actor, role=role)}

    data = await ctx.db(work)
    if data is None:
        raise HTTPError(404, "No such worker")
    return ctx.render("ni_reveal.html", w=data, id=int(id))


def register(app: WebApp) -> None:
    app.add("GET", "/privacy/{kind}/{id:int}", person_page, MANAGERS)
    app.add("GET", "/privacy/{kind}/{id:int}/export.json", export_json, MANAGERS)
    app.add("GET", "/privacy/{kind}/{id:int}/export.pdf", export_pdf, MANAGERS)
    app.add("POST", "/privacy/{kind}/{id:int}/erase", erase_person, MANAGERS)
    app.add("POST", "/workers/{id:int}/ni", ni_reveal, NI_READERS)
