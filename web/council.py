"""The council's read-only view (spec §5.19) for the ``commissioner`` role, scoped to one funder.

The funder comes from the user's scope, never from the request: a resident id of another
funder answers 404, and every office page answers 403 (``web.auth.ANYONE`` is office
roles only). Nothing here changes anything, so there is no POST route but log-out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ivr.pins import load_or_create_key
from outreach import council
from outreach.config import CouncilConfig
from outreach.survey import satisfaction_table
from reports.kpi import KpiRangeError, compute
from reports.render import headlines
from web.app import Ctx, HTTPError, Response, WebApp
from web.figures import _date, last_full_month
from web.models import Role

COMMISSIONER = frozenset({Role.COMMISSIONER})


async def _funder(ctx: Ctx) -> str:
    funder = await ctx.db(council.funder_of, ctx.user.user_id)
    if funder is None:
        raise HTTPError(404, "Not found")
    return str(funder)


def _shown(ctx: Ctx, funder: str) -> council.Shown:
    settings = ctx.runtime.settings
    cfg: CouncilConfig = settings.table("council")
    return council.Shown(load_or_create_key(settings.secret_path) if funder in cfg.pseudonymise else None)


async def overview(ctx: Ctx) -> Response:
    funder = await _funder(ctx)
    shown, now = _shown(ctx, funder), ctx.now()

    def work(session: Session) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return council.live_alerts(session, funder, now, shown), council.week_ahead(session, funder, now, shown)

    live, visits = await ctx.db(work)
    return ctx.render("council.html", funder=funder, live=live, visits=visits, pseudonymised=shown.key is not None)


async def resident(ctx: Ctx, id: str) -> Response:
    funder = await _funder(ctx)
    shown, now = _shown(ctx, funder), ctx.now()
    found = await ctx.db(lambda s: council.resident_visits(s, funder, int(id), now, shown))
    if found is None:
        raise HTTPError(404, "Not found")
    who, visits = found
    return ctx.render("council_resident.html", funder=funder, who=who, visits=visits, now=now)


async def figures(ctx: Ctx) -> Response:
    funder = await _funder(ctx)
    settings, factory, now = ctx.runtime.settings, ctx.runtime.factory, ctx.now()
    d_from, d_to = last_full_month(now.astimezone(settings.tz).date())
    d_from, d_to = _date(ctx, "from", d_from), _date(ctx, "to", d_to)

    def work() -> Any:
        report = compute(factory, settings, d_from, d_to, funder, None, now=now)
        return report, headlines(report)

    try:
        report, heads = await ctx.runtime.run_db(work)
    except KpiRangeError as exc:
        raise HTTPError(400, str(exc).replace("--to", "to").replace("--from", "from")) from None
    return ctx.render("council_figures.html", funder=funder, report=report, heads=heads, date_from=d_from,
                      date_to=d_to)


def register(app: WebApp) -> None:
    app.env.globals["satisfaction_table"] = satisfaction_table
    app.add("GET", "/council", overview, COMMISSIONER)
    app.add("GET", "/council/residents/{id:int}", resident, COMMISSIONER)
    app.add("GET", "/council/figures", figures, COMMISSIONER)

