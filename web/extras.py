"""Alerts, invoices and reports pages: placeholders until their packages land on main."""

from __future__ import annotations

from web.app import Ctx, Response, WebApp
from web.auth import ANYONE, INVOICING


async def alerts(ctx: Ctx) -> Response:
    return ctx.render("pending.html", title="Alerts", what="the alert rules (scheduler)")


async def invoices(ctx: Ctx) -> Response:
    return ctx.render("pending.html", title="Invoices and timesheets", what="billing")


async def reports(ctx: Ctx) -> Response:
    return ctx.render("pending.html", title="Reports", what="the contract-monitoring figures")


def register(app: WebApp) -> None:
    app.add("GET", "/alerts", alerts, ANYONE)
    app.add("GET", "/invoices", invoices, INVOICING)
    app.add("GET", "/reports", reports, ANYONE)
