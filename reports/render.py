"""The KPI report as HTML (one self-contained page), CSV (one row per figure and scope) or JSON.

The headline list is the one place that says which figures the return shows, in what
order, against which target; HTML and CSV both read it, the web page can too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ivr import csvsafe
from ivr.clock import format_local
from reports.kpi import Count, KpiReport, Ratio, Scoped, VisitRow

TEMPLATES = Path(__file__).with_name("templates")


@dataclasses.dataclass
class Headline:
    """One figure of the return: its value against its target, and the rows behind it."""

    key: str
    title: str
    spec: str
    value: str
    target: str
    met: bool | None
    fraction: float | None  # 0..1 for the bar chart
    target_fraction: float | None
    rows: list[VisitRow]


def _pct(r: Ratio) -> str:
    return "no data" if r.percent is None else f"{r.numerator} of {r.denominator} ({r.percent}%)"


def _ratio_headline(key: str, title: str, spec: str, r: Ratio, rows: list[VisitRow], target: str) -> Headline:
    frac = None if r.denominator == 0 else r.numerator / r.denominator
    return Headline(key, title, spec, _pct(r), target, r.met, frac, r.target_percent / 100, rows)


def _count_headline(key: str, title: str, spec: str, c: Count, out_of: int) -> Headline:
    target = "no target (reported)" if c.target_max is None else f"at most {c.target_max}"
    frac = None if out_of == 0 else c.count / out_of
    return Headline(key, title, spec, f"{c.count} of {out_of}", target, c.met, frac,
                    None if c.target_max is None or out_of == 0 else c.target_max / out_of, c.rows)


def headlines(report: KpiReport) -> list[Headline]:
    cfg = report.config
    p = report.punctuality
    tc_rows = [r for r in p.rows if r.detail.startswith("time-critical")]
    other_rows = [r for r in p.rows if r.detail.startswith("other")]
    below = report.compliance.workers_below_floor
    n_workers = len(report.compliance.workers)
    out = [
        _ratio_headline("compliance", "E-monitoring compliance (arrival and departure by phone)", "§10.5",
                        report.compliance.share.overall, report.compliance.rows,
                        f"at least {cfg.compliance_target_percent}%"),
        Headline("workers_below_floor", f"Workers below {cfg.worker_floor_percent}% compliance", "§10.2",
                 f"{len(below)} of {n_workers}", "0", not below,
                 None if n_workers == 0 else len(below) / n_workers, 0.0,
                 [r for r in report.compliance.rows if r.worker_number in {w.worker_number for w in below}]),
        _ratio_headline("punctuality_time_critical",
                        f"Time-critical visits arriving within ±{p.time_critical_window_minutes} min", "§8.13",
                        p.time_critical.overall, tc_rows, f"at least {cfg.punctuality_target_percent}%"),
        _ratio_headline("punctuality_other", f"Other visits arriving within ±{p.other_window_minutes} min",
                        "agreed window", p.other.overall, other_rows, f"at least {cfg.punctuality_target_percent}%"),
        _count_headline("missed", "Missed visits", "§8.14", report.missed, report.visits_due),
        _count_headline("late", "Late visits", "§8.14", report.late, report.visits_due),
        _count_headline("short_delivered", f"Visits delivered in {cfg.short_visit_minutes} minutes or less", "§3.27",
                        report.short_delivered, report.visits_due),
        _count_headline("short_planned", f"Visits planned for {cfg.short_visit_minutes} minutes or less", "§3.27",
                        report.short_planned, report.visits_due),
        _count_headline("double_up_apart", f"Double-up arrivals more than {cfg.double_up_apart_minutes} min apart",
                        "§8.14", report.double_up_apart, report.double_up_visits),
        _count_headline("double_up_single", "Double-up visits attended by one worker", "§8.14",
                        report.double_up_single, report.visits_due),
    ]
    hours = report.hours
    n_pk = len(hours.packages)
    over = hours.over_commissioned
    out.append(Headline(
        "hours", "Packages delivered over commissioned hours", "§5.25, §8.2, §8.14",
        f"{len(over)} of {n_pk} (delivered {hours.overall.delivered} h, planned {hours.overall.planned} h, "
        f"commissioned {hours.overall.commissioned} h)", "0", hours.met,
        None if n_pk == 0 else len(over) / n_pk, 0.0,
        [VisitRow(None, None, p.resident_ref, None, detail=f"{p.purchase_order}: delivered {p.delivered_hours} h "
                  f"> commissioned {p.commissioned_hours} h") for p in over]))
    cons = report.consistency
    measured = len(cons.packages)
    out.append(Headline(
        "consistency", "Carer consistency (packages within the 95% requirement of their band)", "§5.27",
        f"{measured - len(cons.outside)} of {measured}", "every band: 95% and 100% requirements", cons.met,
        None if measured == 0 else (measured - len(cons.outside)) / measured, 0.95,
        [VisitRow(None, None, p.resident_ref, None, detail=f"{p.purchase_order} ({p.band}): {p.workers} workers")
         for p in cons.outside]))
    return out


# --------------------------------------------------------------------------- JSON


def jsonable(obj: Any) -> Any:
    """Dataclasses (with their properties), dates, Decimals, as JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        for name in dir(type(obj)):
            if isinstance(getattr(type(obj), name, None), property):
                out[name] = jsonable(getattr(obj, name))
        return out
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, dt.datetime):
        return obj.astimezone(dt.UTC).isoformat()
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj


def to_json(report: KpiReport) -> str:
    return json.dumps(jsonable(report), indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------- CSV

CSV_HEADER = ("figure", "scope", "numerator", "denominator", "value", "target", "met")


def _met(m: bool | None) -> str:
    return "" if m is None else ("yes" if m else "no")


def _scoped_rows(figure: str, s: Scoped) -> list[tuple[Any, ...]]:
    def one(scope: str, r: Ratio) -> tuple[Any, ...]:
        return (figure, scope, r.numerator, r.denominator, "" if r.percent is None else f"{r.percent}%",
                f">={r.target_percent}%", _met(r.met))

    rows = [one("overall", s.overall)]
    rows += [one(f"funder:{k}", v) for k, v in sorted(s.by_funder.items())]
    rows += [one(f"team:{k}", v) for k, v in sorted(s.by_team.items())]
    return rows


def _count_rows(figure: str, c: Count, out_of: int) -> list[tuple[Any, ...]]:
    target = "" if c.target_max is None else f"<={c.target_max}"
    rows: list[tuple[Any, ...]] = [(figure, "overall", c.count, out_of, c.count, target, _met(c.met))]
    rows += [(figure, f"funder:{k}", v, "", v, "", "") for k, v in sorted(c.by_funder.items())]
    rows += [(figure, f"team:{k}", v, "", v, "", "") for k, v in sorted(c.by_team.items())]
    return rows


def to_csv(report: KpiReport) -> str:
    buf = io.StringIO()
    w = csvsafe.writer(buf)  # every cell neutralised (ivr/csvsafe.py)
    w.writerow(CSV_HEADER)
    w.writerows(_scoped_rows("compliance", report.compliance.share))
    for wk in report.compliance.workers:
        w.writerow(("worker_compliance", f"worker:{wk.worker_number}", wk.phone, wk.delivered, f"{wk.percent}%",
                    f">={wk.floor_percent}%", _met(not wk.below_floor)))
    w.writerows(_scoped_rows("punctuality_time_critical", report.punctuality.time_critical))
    w.writerows(_scoped_rows("punctuality_other", report.punctuality.other))
    for name in ("missed", "late", "short_delivered", "short_planned", "double_up_single"):
        w.writerows(_count_rows(name, getattr(report, name), report.visits_due))
    w.writerows(_count_rows("double_up_apart", report.double_up_apart, report.double_up_visits))
    for p in report.hours.packages:
        w.writerow(("hours", f"package:{p.purchase_order}:{p.resident_ref}", p.delivered_hours, p.commissioned_hours,
                    f"planned {p.planned_hours}", f"<={p.commissioned_hours}", _met(not p.over_commissioned)))
    h = report.hours.overall
    w.writerow(("hours", "overall", h.delivered, h.commissioned, f"planned {h.planned}", "", _met(report.hours.met)))
    for scope, bands in [("overall", report.consistency.bands)] + [
            (f"funder:{k}", v) for k, v in sorted(report.consistency.by_funder.items())] + [
            (f"team:{k}", v) for k, v in sorted(report.consistency.by_team.items())]:
        for b in bands:
            for label, r, limit in (("95", b.primary, b.band.primary_max), ("100", b.secondary, b.band.secondary_max)):
                w.writerow((f"consistency_{label}", f"{scope}:band:{b.band.label}:max {limit} workers", r.numerator,
                            r.denominator, "" if r.percent is None else f"{r.percent}%", f">={r.target_percent}%",
                            _met(r.met)))
    a = report.alerts
    if a.available:
        for k in a.by_kind:
            w.writerow(("alerts", f"kind:{k.kind}", k.acknowledged, k.raised,
                        f"median {_dur(k.ack_median_seconds)}, p90 {_dur(k.ack_p90_seconds)}", "", ""))
        w.writerow(("alerts", "overall", a.acknowledged, a.raised,
                    f"median {_dur(a.ack_median_seconds)}, p90 {_dur(a.ack_p90_seconds)}", "", ""))
        for status, n in sorted(a.no_reply_by_status.items()):
            w.writerow(("no_reply_outcome", f"status:{status}", n, "", n, "", ""))
    else:
        w.writerow(("alerts", "overall", "", "", a.reason, "", ""))
    return buf.getvalue()


def _dur(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(seconds, 60)
    return f"{m}m{s:02d}s"


# --------------------------------------------------------------------------- HTML


def bar_svg(fraction: float | None, target: float | None, met: bool | None) -> Markup:
    """A 160x14 bar: the value filled, the target as a vertical line. Pure markup, no script."""
    width = 160
    fill = "#999" if met is None else ("#2e7d32" if met else "#c62828")
    value_w = 0 if fraction is None else round(max(0.0, min(1.0, fraction)) * width)
    parts = [f'<svg class="bar" width="{width}" height="14" viewBox="0 0 {width} 14" role="img" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="0" y="2" width="{width}" height="10" fill="#eee"/>',
             f'<rect x="0" y="2" width="{value_w}" height="10" fill="{fill}"/>']
    if target is not None:
        tx = round(max(0.0, min(1.0, target)) * width)
        parts.append(f'<line x1="{tx}" y1="0" x2="{tx}" y2="14" stroke="#000" stroke-width="2"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # built only from numbers and fixed strings


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    from outreach.survey import satisfaction_table

    env.globals["satisfaction_table"] = satisfaction_table
    env.filters["dur"] = _dur
    return env


def to_html(report: KpiReport) -> str:
    tz = report.timezone
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    env = _env()
    env.filters["local"] = lambda v: format_local(v, zone) if v else ""
    env.globals["bar_svg"] = bar_svg
    env.filters["met"] = lambda m: "no data" if m is None else ("met" if m else "not met")
    return env.get_template("kpi.html").render(report=report, headlines=headlines(report))


def render(report: KpiReport, fmt: str) -> str:
    if fmt == "html":
        return to_html(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "json":
        return to_json(report)
    raise ValueError(f"unknown format {fmt!r}")
