"""JSON API for rostering systems: ``Authorization: Bearer <token>`` (``carecall user token``).

A token acts with its owner's role, so a finance token reads but cannot correct. Times
are ISO 8601 in UTC; days are local (Europe/London) dates, as on the board. Read-only
today: rosters come in through the CSV import formats (see docs/web.md).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ivr.clock import local_day_bounds
from ivr.models import Attendance
from privacy.viewlog import viewed_keys
from web.app import Ctx, Response, WebApp, json_response
from web.auth import ANYONE
from web.board import board_rows
from web.forms import day_arg, team_arg


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def _visit_json(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "visit_ref": r["visit_ref"], "resident_reference": r["resident_ref"], "team": r["team"],
        "planned_start": iso(r["planned_start"]), "planned_end": iso(r["planned_end"]),
        "time_critical": r["time_critical"], "state": r["state"],
        "workers": [{"worker_number": w["number"], "kind": w["kind"],
                     "arrival_at": iso(w["arrival_at"]), "arrival_method": w["arrival_method"],
                     "arrival_verified": w["arrival_verified"],
                     "departure_at": iso(w["departure_at"]), "departure_method": w["departure_method"],
                     "departure_verified": w["departure_verified"]} for w in r["workers"]],
    }


async def visits(ctx: Ctx) -> Response:
    settings = ctx.runtime.settings
    day, team, now = day_arg(ctx, settings.tz), team_arg(ctx), ctx.now()
    rows = await ctx.db(lambda s: board_rows(s, day, team, now, settings))
    await viewed_keys(ctx, "api visits", residents=[r["resident_ref"] for r in rows],
                      workers=[w["number"] for r in rows for w in r["workers"]])
    return json_response({"day": day.isoformat(), "team": team, "visits": [_visit_json(r) for r in rows]})


def _attendances(session: Session, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    q = (select(Attendance).where(Attendance.arrival_at >= start, Attendance.arrival_at < end)
         .options(selectinload(Attendance.worker), selectinload(Attendance.visit), selectinload(Attendance.resident))
         .order_by(Attendance.arrival_at, Attendance.id))
    return [{
        "id": a.id, "visit_ref": a.visit.visit_ref if a.visit else None, "resident_reference": a.resident.reference,
        "worker_number": a.worker.worker_number, "kind": a.kind,
        "arrival_at": iso(a.arrival_at), "arrival_method": a.arrival_method, "arrival_verified": a.arrival_verified,
        "departure_at": iso(a.departure_at), "departure_method": a.departure_method,
        "departure_verified": a.departure_verified,
        "arrival_entered_at": iso(a.arrival_entered_at), "departure_entered_at": iso(a.departure_entered_at),
    } for a in session.scalars(q)]


async def attendances(ctx: Ctx) -> Response:
    day = day_arg(ctx, ctx.runtime.settings.tz)
    start, end = local_day_bounds(day, ctx.runtime.settings.tz)
    rows = await ctx.db(_attendances, start, end)
    await viewed_keys(ctx, "api attendances", residents=[a["resident_reference"] for a in rows],
                      workers=[a["worker_number"] for a in rows])
    return json_response({"day": day.isoformat(), "attendances": rows})


def register(app: WebApp) -> None:
    app.add("GET", "/api/v1/visits", visits, ANYONE, api=True)
    app.add("GET", "/api/v1/attendances", attendances, ANYONE, api=True)
