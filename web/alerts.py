"""Alerts for the office: the live list, one alert's page (acknowledge, resolve, no-reply checklist,
history) and ``/api/v1/alerts``.

The alert rules, the tables and every state change are the scheduler's
(``scheduler.rules``, ``scheduler.models``, ``scheduler.actions``): this module shows them
and calls ``acknowledge`` / ``resolve`` / ``record_check`` with the logged-in user as the
actor, inside one transaction off the reactor thread. A refusal (already resolved, a
note missing) comes back as ``AlertActionError`` and is shown as it is.

The list is live like the board: a stream per status shown, refreshed when this process
publishes an "alert" event (raised by a call or the scheduler) and on the poll, which
catches alerts raised or handled by another server on the same database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ivr.models import Resident, Visit, Worker
from privacy.viewlog import viewed
from scheduler.actions import AlertActionError, AlertNotFound, acknowledge, record_check, resolve
from scheduler.models import Alert, AlertAction, AlertCheck, AlertKind, AlertStatus, CheckStep
from web.api import iso
from web.app import STREAMING, Ctx, FormError, HTTPError, Response, WebApp, json_response, redirect
from web.auth import ANYONE, VISIT_EDITORS
from web.live import LiveHub
from web.people import people_for, visit_worker_ids

LIST_LIMIT = 200
API_LIMIT = 500
STATUSES = AlertStatus.ALL


def severity_label(severity: int) -> str:
    return "high" if severity >= 4 else ("medium" if severity == 3 else "low")


def _status_arg(ctx: Ctx, *, allow_all: bool = False) -> str:
    status = ctx.arg("status", limit=20) or AlertStatus.OPEN
    if status not in STATUSES and not (allow_all and status == "all"):
        raise HTTPError(400, "status must be open, acknowledged or resolved" + (" or all" if allow_all else ""))
    return status


def _names(session: Session, alerts: list[Alert]
           ) -> tuple[dict[int, Visit], dict[int, str], dict[int, tuple[str, str]]]:
    visit_ids = {a.visit_id for a in alerts if a.visit_id}
    visits = {v.id: v for v in session.scalars(select(Visit).where(Visit.id.in_(visit_ids)))} if visit_ids else {}
    resident_ids = {a.resident_id for a in alerts if a.resident_id} | {v.resident_id for v in visits.values()}
    residents = dict(session.execute(select(Resident.id, Resident.reference)
                                     .where(Resident.id.in_(resident_ids))).tuples().all()) if resident_ids else {}
    worker_ids = {a.worker_id for a in alerts if a.worker_id}
    workers = {wid: (number, name) for wid, number, name in session.execute(
        select(Worker.id, Worker.worker_number, Worker.name).where(Worker.id.in_(worker_ids)))} if worker_ids else {}
    return visits, residents, workers


def _row(a: Alert, visits: dict[int, Visit], residents: dict[int, str],
         workers: dict[int, tuple[str, str]]) -> dict[str, Any]:
    v = visits.get(a.visit_id or 0)
    resident_id = a.resident_id or (v.resident_id if v else None)
    return {
        "id": a.id, "kind": a.kind, "label": a.kind.replace("_", " "), "severity": a.severity,
        "severity_label": severity_label(a.severity), "status": a.status, "raised_at": a.raised_at,
        "due_at": a.due_at, "detail": a.detail, "visit_id": a.visit_id, "visit_ref": v.visit_ref if v else None,
        "planned_start": v.planned_start if v else None,
        "resident_ref": residents.get(resident_id or 0, ""),
        "worker_number": workers.get(a.worker_id or 0, ("", ""))[0],
        # For the office pages only: the JSON API (_json) never carries a name.
        "worker_name": workers.get(a.worker_id or 0, ("", ""))[1],
        "acknowledged_by": a.acknowledged_by, "acknowledged_at": a.acknowledged_at,
        "resolved_by": a.resolved_by, "resolved_at": a.resolved_at, "resolution_note": a.resolution_note,
        "resolved_by_system": a.resolved_by_system, "escalated_at": a.escalated_at,
        "out_of_hours_at": a.out_of_hours_at,
        # Nobody has taken it and phones are being rung (scheduler/chain.py): shown red.
        "unaccepted_escalated": a.unaccepted_escalated, "chain_step": a.chain_step, "chain_next_at": a.chain_next_at,
    }


def alert_rows(session: Session, status: str, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """Most severe first, then newest: what needs doing now is at the top."""
    q = select(Alert).order_by(Alert.severity.desc(), Alert.raised_at.desc(), Alert.id.desc()).limit(limit)
    if status != "all":
        q = q.where(Alert.status == status)
    alerts = list(session.scalars(q))
    names = _names(session, alerts)
    return [_row(a, *names) for a in alerts]


def counts(session: Session) -> dict[str, int]:
    found = dict(session.execute(select(Alert.status, func.count(Alert.id)).group_by(Alert.status)).tuples().all())
    return {s: int(found.get(s, 0)) for s in STATUSES}


def change_token(session: Session) -> tuple[Any, ...]:
    """Every raise, acknowledgement, check and resolution appends an action row."""
    return session.scalar(select(func.max(Alert.id))), session.scalar(select(func.max(AlertAction.id)))


def alert_detail(session: Session, alert_id: int) -> dict[str, Any] | None:
    a = session.get(Alert, alert_id)
    if a is None:
        return None
    row = _row(a, *_names(session, [a]))
    row["actions"] = [{"at": x.at, "actor": x.actor, "action": x.action, "note": x.note}
                      for x in session.scalars(select(AlertAction).where(AlertAction.alert_id == a.id)
                                               .order_by(AlertAction.at, AlertAction.id))]
    checks = list(session.scalars(select(AlertCheck).where(AlertCheck.alert_id == a.id).order_by(AlertCheck.id)))
    row["checklist"] = [{"step": step, "label": CheckStep.LABELS[step],
                         "done": [{"by": c.done_by, "at": c.done_at, "note": c.note} for c in checks if c.step == step]}
                        for step in CheckStep.ALL] if a.kind in AlertKind.SAFEGUARDING else []
    return row


# --- pages -----------------------------------------------------------------------------


async def alerts_page(ctx: Ctx) -> Response:
    status = _status_arg(ctx)

    def work(session: Session) -> tuple[list[dict[str, Any]], dict[str, int]]:
        return alert_rows(session, status), counts(session)

    rows, totals = await ctx.db(work)
    return ctx.render("alerts.html", rows=rows, current=status, counts=totals, statuses=STATUSES,
                      limit=LIST_LIMIT, can_edit=ctx.user.role in VISIT_EDITORS)


async def alerts_events(ctx: Ctx) -> Response:
    ctx.app.alerts_hub.open(ctx.request, _status_arg(ctx))
    return STREAMING


def alert_with_people(session: Session, alert_id: int, now: Any, user_id: int) -> dict[str, Any] | None:
    """The alert and the people it is about: resident, contacts, the worker(s) and where last logged."""
    detail = alert_detail(session, alert_id)
    if detail is None:
        return None
    a = session.get(Alert, alert_id)
    assert a is not None
    v = session.get(Visit, a.visit_id) if a.visit_id else None
    resident_id = a.resident_id or (v.resident_id if v else None)
    workers = [a.worker_id] if a.worker_id else visit_worker_ids(session, a.visit_id)
    detail["people"] = people_for(session, resident_id, workers, now, user_id)
    return detail


async def alert_page(ctx: Ctx, id: str, *, error: str = "", status: int = 200) -> Response:
    detail = await ctx.db(alert_with_people, int(id), ctx.now(), ctx.user.user_id)
    if detail is None:
        raise HTTPError(404, "No such alert")
    await viewed(ctx, "alert", id)
    return ctx.render("alert.html", status=status, a=detail, error=error, done=ctx.arg("done", limit=20),
                      can_edit=ctx.user.role in VISIT_EDITORS, back=f"/alerts/{int(id)}", **detail["people"])


async def _act(ctx: Ctx, id: str, what: str) -> Response:
    alert_id, actor, now = int(id), ctx.user.username, ctx.now()
    try:
        note = ctx.field("note", limit=1000, multiline=True)
        if what == "acknowledge":
            def work(session: Session) -> None:
                acknowledge(session, alert_id, actor, note, now)
        elif what == "resolve":
            def work(session: Session) -> None:
                resolve(session, alert_id, actor, note, now)
        else:
            step = ctx.field("step", limit=30)
            if step not in CheckStep.ALL:
                raise FormError({"step": "choose a step of the checklist"})

            def work(session: Session) -> None:
                record_check(session, alert_id, step, actor, now, note)
        await ctx.db(work)
    except AlertNotFound:
        raise HTTPError(404, "No such alert") from None
    except (FormError, AlertActionError) as exc:
        return await alert_page(ctx, id, error=str(exc), status=400)
    ctx.runtime.events.publish("alert", {"event": what, "id": alert_id})
    return redirect(f"/alerts/{alert_id}?done={what}")


async def alert_acknowledge(ctx: Ctx, id: str) -> Response:
    return await _act(ctx, id, "acknowledge")


async def alert_resolve(ctx: Ctx, id: str) -> Response:
    return await _act(ctx, id, "resolve")


async def alert_check(ctx: Ctx, id: str) -> Response:
    return await _act(ctx, id, "check")


# --- API ---------------------------------------------------------------------------------


def _json(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "kind": r["kind"], "severity": r["severity"], "status": r["status"],
        "raised_at": iso(r["raised_at"]), "due_at": iso(r["due_at"]), "detail": r["detail"],
        "visit_ref": r["visit_ref"], "resident_reference": r["resident_ref"] or None,
        "worker_number": r["worker_number"] or None,
        "acknowledged_by": r["acknowledged_by"], "acknowledged_at": iso(r["acknowledged_at"]),
        "resolved_by": r["resolved_by"], "resolved_at": iso(r["resolved_at"]),
        "resolution_note": r["resolution_note"], "resolved_by_system": r["resolved_by_system"],
    }


async def api_alerts(ctx: Ctx) -> Response:
    status = _status_arg(ctx, allow_all=True) if ctx.arg("status", limit=20) else "all"
    rows = await ctx.db(alert_rows, status, API_LIMIT)
    return json_response({"status": status, "limit": API_LIMIT, "alerts": [_json(r) for r in rows]})


def register(app: WebApp) -> None:
    live = app.live
    app.alerts_hub = LiveHub(
        app.runtime, lambda rows, status: app.render_template("_alert_rows.html", rows=rows, current=status),
        token=change_token, fetch=lambda session, status, now: alert_rows(session, status), event="alerts",
        topics=("alert", "call"), now=live["now"], clock=live["clock"], interval=live["interval"])
    app.hubs.append(app.alerts_hub)
    app.add("GET", "/alerts", alerts_page, ANYONE)
    app.add("GET", "/alerts/events", alerts_events, ANYONE)
    app.add("GET", "/alerts/{id:int}", alert_page, ANYONE)
    app.add("POST", "/alerts/{id:int}/acknowledge", alert_acknowledge, VISIT_EDITORS)
    app.add("POST", "/alerts/{id:int}/resolve", alert_resolve, VISIT_EDITORS)
    app.add("POST", "/alerts/{id:int}/check", alert_check, VISIT_EDITORS)
    app.add("GET", "/api/v1/alerts", api_alerts, ANYONE, api=True)

