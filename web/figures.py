"""The contract-monitoring figures page: each figure against its target, a chart, the visits behind it.

The figures are ``reports.kpi.compute`` and their order, targets and "rows behind" are
``reports.render.headlines`` — one place for each; this module only lays them out. A big
month can put thousands of rows behind one figure (the CLI's HTML page reaches 10 MB), so
the page shows the first few of each and links to a paged list (``/reports/figure/<key>``)
where every row links to its visit page.

A computed report is kept for ``CACHE_SECONDS`` per (range, funder, team), so paging
through a figure does not recompute the month; figures are at most that much behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.models import Resident
from reports.kpi import KpiRangeError, KpiReport, compute
from reports.render import Headline, bar_svg, headlines
from web.app import Ctx, HTTPError, Response, WebApp
from web.auth import REPORT_READERS
from web.forms import TEAM

CACHE_SECONDS = 120.0
CACHE_SIZE = 8
INLINE_ROWS = 4
PAGE_ROWS = 100


def last_full_month(today: dt.date) -> tuple[dt.date, dt.date]:
    first_this = today.replace(day=1)
    last_prev = first_this - dt.timedelta(days=1)
    return last_prev.replace(day=1), last_prev


@dataclasses.dataclass(frozen=True)
class Query:
    date_from: dt.date
    date_to: dt.date
    funder: str
    team: str

    def qs(self) -> str:
        from urllib.parse import urlencode

        return urlencode({"from": self.date_from.isoformat(), "to": self.date_to.isoformat(), "funder": self.funder,
                          "team": self.team})


def _date(ctx: Ctx, name: str, default: dt.date) -> dt.date:
    text = ctx.arg(name, limit=10)
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise HTTPError(400, f"{name} must be a date YYYY-MM-DD") from exc


def _query(ctx: Ctx) -> Query:
    today = ctx.now().astimezone(ctx.runtime.settings.tz).date()
    d_from, d_to = last_full_month(today)
    funder, team = ctx.arg("funder", limit=80), ctx.arg("team", limit=80)
    for name, value in (("funder", funder), ("team", team)):
        if not TEAM.match(value):
            raise HTTPError(400, f"{name} must be letters, digits and spaces")
    return Query(_date(ctx, "from", d_from), _date(ctx, "to", d_to), funder, team)


class ReportCache:
    """Recently computed reports, a few minutes old at most (small: a report holds its rows)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.entries: dict[Query, tuple[float, KpiReport, list[Headline]]] = {}

    def get(self, q: Query) -> tuple[KpiReport, list[Headline]] | None:
        hit = self.entries.get(q)
        if hit is None or self.clock() - hit[0] > CACHE_SECONDS:
            return None
        return hit[1], hit[2]

    def put(self, q: Query, report: KpiReport, heads: list[Headline]) -> None:
        if len(self.entries) >= CACHE_SIZE:
            del self.entries[min(self.entries, key=lambda k: self.entries[k][0])]
        self.entries[q] = (self.clock(), report, heads)


async def _report(ctx: Ctx, q: Query) -> tuple[KpiReport, list[Headline]]:
    cache: ReportCache = ctx.app.report_cache
    hit = cache.get(q)
    if hit is not None:
        return hit
    settings, factory, now = ctx.runtime.settings, ctx.runtime.factory, ctx.now()

    def work() -> tuple[KpiReport, list[Headline]]:
        report = compute(factory, settings, q.date_from, q.date_to, q.funder or None, q.team or None, now=now)
        return report, headlines(report)

    try:
        report, heads = await ctx.runtime.run_db(work)
    except KpiRangeError as exc:
        raise HTTPError(400, str(exc).replace("--to", "to").replace("--from", "from")) from None
    cache.put(q, report, heads)
    return report, heads


def _choices(session: Session) -> dict[str, list[str]]:
    return {"funders": [f for f in session.scalars(select(Resident.funder).distinct().order_by(Resident.funder)) if f],
            "teams": [t for t in session.scalars(select(Resident.team).distinct().order_by(Resident.team)) if t]}


def bars_svg(items: list[tuple[str, float | None, bool | None]], target: float | None) -> Markup:
    """A horizontal bar per scope (label, share 0..1, met); the target as a dashed line. Numbers only."""
    width, label_w, row_h = 360, 110, 18
    height = row_h * max(1, len(items)) + 4
    out = [f'<svg class="chart" width="{width + label_w}" height="{height}" viewBox="0 0 {width + label_w} {height}" '
           'role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, frac, met) in enumerate(items):
        y = 2 + i * row_h
        fill = "#999" if met is None else ("#2e7d32" if met else "#c62828")
        w = 0 if frac is None else round(max(0.0, min(1.0, frac)) * width)
        text = Markup.escape(label[:18])
        out.append(f'<text x="0" y="{y + 12}" font-size="11">{text}</text>'
                   f'<rect x="{label_w}" y="{y}" width="{width}" height="{row_h - 4}" fill="#eee"/>'
                   f'<rect x="{label_w}" y="{y}" width="{w}" height="{row_h - 4}" fill="{fill}"/>')
    if target is not None:
        tx = label_w + round(target * width)
        out.append(f'<line x1="{tx}" y1="0" x2="{tx}" y2="{height}" stroke="#000" stroke-dasharray="3,2"/>')
    out.append("</svg>")
    return Markup("".join(out))


def hours_svg(commissioned: float, planned: float, delivered: float) -> Markup:
    top = max(commissioned, planned, delivered, 1.0)
    out = ['<svg class="chart" width="470" height="64" viewBox="0 0 470 64" role="img" '
           'xmlns="http://www.w3.org/2000/svg">']
    for i, (label, value, fill) in enumerate((("commissioned", commissioned, "#607d8b"),
                                              ("planned", planned, "#1f5fae"), ("delivered", delivered, "#2e7d32"))):
        y = 2 + i * 20
        out.append(f'<text x="0" y="{y + 12}" font-size="11">{label}</text>'
                   f'<rect x="110" y="{y}" width="{round(value / top * 300)}" height="16" fill="{fill}"/>'
                   f'<text x="{115 + round(value / top * 300)}" y="{y + 12}" font-size="11">{value:.2f} h</text>')
    out.append("</svg>")
    return Markup("".join(out))


async def reports_page(ctx: Ctx) -> Response:
    q = _query(ctx)
    report, heads = await _report(ctx, q)
    choices = await ctx.db(_choices)
    share = report.compliance.share
    compliance_chart = bars_svg(
        [("overall", _frac(share.overall), share.overall.met)]
        + [(f"team {k}", _frac(r), r.met) for k, r in sorted(share.by_team.items())]
        + [(f"{k}", _frac(r), r.met) for k, r in sorted(share.by_funder.items())],
        report.config.compliance_target_percent / 100)
    h = report.hours.overall
    return ctx.render("reports.html", q=q, report=report, heads=heads, inline_rows=INLINE_ROWS, bar_svg=bar_svg,
                      compliance_chart=compliance_chart,
                      hours_chart=hours_svg(float(h.commissioned), float(h.planned), float(h.delivered)),
                      **choices)


def _frac(r: Any) -> float | None:
    return None if r.denominator == 0 else r.numerator / r.denominator


async def figure_page(ctx: Ctx, key: str) -> Response:
    q = _query(ctx)
    page_text = ctx.arg("page", limit=6) or "1"
    if not page_text.isdigit() or int(page_text) < 1:
        raise HTTPError(400, "page must be a positive number")
    page = int(page_text)
    heads = (await _report(ctx, q))[1]
    head = next((h for h in heads if h.key == key), None)
    if head is None:
        raise HTTPError(404, "No such figure")
    pages = max(1, -(-len(head.rows) // PAGE_ROWS))
    if page > pages:
        raise HTTPError(404, "No such page")
    rows = head.rows[(page - 1) * PAGE_ROWS: page * PAGE_ROWS]
    return ctx.render("report_figure.html", q=q, head=head, rows=rows, page=page, pages=pages, total=len(head.rows),
                      first=(page - 1) * PAGE_ROWS + 1)


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(seconds, 60)
    return f"{m} min {s:02d} s"


def register(app: WebApp) -> None:
    app.report_cache = ReportCache()
    app.env.filters["dur"] = duration
    app.add("GET", "/reports", reports_page, REPORT_READERS)
    app.add("GET", "/reports/figure/{key}", figure_page, REPORT_READERS)
