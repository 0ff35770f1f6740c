"""The alerts page: a placeholder until the scheduler's alert tables land on main."""

from __future__ import annotations

from web.app import Ctx, Response, WebApp
from web.auth import ANYONE


async def alerts(ctx: Ctx) -> Response:
    return ctx.render("pending.html", title="Alerts", what="the alert rules (scheduler)")


def register(app: WebApp) -> None:
    app.add("GET", "/alerts", alerts, ANYONE)
