"""Invoices and timesheets: pick a period and funder, preview, issue (freeze), download.

Everything billing decides (periods, rates, caps, numbering, freezing) stays in
``billing/``; this module only calls its public functions through ``runtime.run_db``
and shows the result. PDF rendering (WeasyPrint, ~100 ms a page) runs in the same
thread pool, never on the reactor thread.

Addresses carry nothing personal: an issued invoice is ``/invoices/<number>``, a draft is
named by period, funder, purchase order and resident reference (references are not
personal), a timesheet by resident reference and period. Looking a resident up by name
is a POST (``/timesheets/search``) so names stay out of URLs and logs.

The billing templates carry their own ``<style>`` block (the same HTML becomes the PDF),
so a document shown in the browser gets its own, stricter CSP: no script at all, inline
style only.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from billing import invoices, stored_csv, timesheets
from billing.invoices import BillingError, InvoiceDoc
from billing.queries import funders as billing_funders
from billing.render import csv_text, render_html, render_pdf
from billing.rules import BillingConfig, period_containing, period_starting
from billing.timesheets import TimesheetError
from ivr.models import Resident
from web.app import Ctx, FormError, HTTPError, Response, WebApp, redirect
from web.auth import INVOICING

# A billing document is a self-contained page with an inline <style>: no script may run in it.
DOC_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
           "base-uri 'none'; form-action 'none'")
FUNDER = re.compile(r"^[\w .&'()/-]{1,80}$")
REFERENCE = re.compile(r"^[A-Za-z0-9._/-]{1,40}$")
FORMATS = ("html", "pdf", "csv")
PERIODS_SHOWN = 26  # two years of 28-day periods


def period_choices(settings: Any, today: dt.date) -> list[dt.date]:
    """Starts of the current and earlier periods (the site default rules), newest first."""
    config = BillingConfig.from_settings(settings)
    rules = config.default
    current = period_containing(today, rules, config.tz).start
    step = dt.timedelta(days=rules.period_days)
    out = []
    start = current
    while len(out) < PERIODS_SHOWN and start >= rules.anchor - step * PERIODS_SHOWN:
        out.append(start)
        start -= step
    return out


def _period_arg(ctx: Ctx, choices: list[dt.date], *, required: bool) -> dt.date | None:
    text = ctx.arg("period", limit=10)
    if not text:
        if required:
            raise HTTPError(400, "choose a period")
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise HTTPError(400, "period must be a date YYYY-MM-DD") from exc
    return day


def _funder_arg(ctx: Ctx, name: str = "funder") -> str | None:
    text = ctx.arg(name, limit=80)
    if not text:
        return None
    if not FUNDER.match(text):
        raise HTTPError(400, f"{name} must be letters, digits and spaces")
    return text


def _reference_arg(ctx: Ctx, name: str, *, required: bool = True) -> str:
    text = ctx.arg(name, limit=40)
    if not text and not required:
        return ""
    if not REFERENCE.match(text):
        raise HTTPError(400, f"{name} must be a reference such as R001")
    return text


def _format_arg(ctx: Ctx) -> str:
    fmt = ctx.arg("format", limit=4) or "html"
    if fmt not in FORMATS:
        raise HTTPError(400, "format must be html, pdf or csv")
    return fmt


def _summary(doc: InvoiceDoc, config: BillingConfig) -> dict[str, Any]:
    digits = doc.number.removeprefix(config.invoice_prefix) if doc.issued else ""
    return {"number": doc.number, "number_id": int(digits) if digits.isdigit() else None, "funder": doc.funder,
            "purchase_order": doc.purchase_order,
            "resident_reference": doc.resident_reference, "visits": doc.visits, "minutes": doc.billed_minutes,
            "over_cap": doc.over_cap_minutes, "total": doc.total, "issued": doc.issued,
            "exceptions": len(doc.exceptions), "corrections": len(doc.corrections),
            "lines": sum(1 for ln in doc.lines if ln.counts_in_total),
            "issue_date": doc.issue_date, "due_date": doc.due_date, "nil": doc.is_nil}


def _hours(minutes: int) -> str:
    h, m = divmod(abs(minutes), 60)
    return f"{'−' if minutes < 0 else ''}{h}:{m:02d}"


def _download(body: bytes, content_type: str, filename: str, *, inline: bool = False) -> Response:
    disposition = "inline" if inline else "attachment"
    return Response(body=body, content_type=content_type,
                    headers={"Content-Disposition": f'{disposition}; filename="{filename}"',
                             "Content-Security-Policy": DOC_CSP})


def _document(doc: Any, config: BillingConfig, fmt: str, template: str, filename: str,
              csv: tuple[Any, Any] | None) -> Any:
    """Runs in the thread pool: HTML, PDF (WeasyPrint) or CSV bytes of one document."""
    if fmt == "pdf":
        return render_pdf(doc, config, template), "application/pdf"
    if fmt == "csv":
        assert csv is not None
        header, rows = csv
        return csv_text(header, rows).encode(), "text/csv; charset=utf-8"
    return render_html(doc, config, template).encode(), "text/html; charset=utf-8"


# --- the invoices page ---------------------------------------------------------------


async def invoices_page(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    settings = ctx.runtime.settings
    factory = ctx.runtime.factory
    today = ctx.now().astimezone(settings.tz).date()
    choices = period_choices(settings, today)
    period = _period_arg(ctx, choices, required=False)
    funder = _funder_arg(ctx)
    now = ctx.now()

    def work() -> dict[str, Any]:
        # Billing opens its own sessions; never nest them inside ours (SQLite would wait on its own lock).
        with factory() as session:
            out: dict[str, Any] = {"funders": billing_funders(session), "docs": None, "issued": False}
        if period is not None:
            docs = invoices.preview(factory, settings, period, funder, now=now)
            config = BillingConfig.from_settings(settings)
            out["docs"] = [_summary(d, config) for d in docs]
            out["issued"] = bool(docs) and all(d.issued for d in docs)
        return out

    try:
        data = await ctx.runtime.run_db(work)
    except BillingError as exc:
        data = await ctx.db(lambda s: {"funders": billing_funders(s), "docs": None, "issued": False})
        error, status = str(exc), 400
    if funder is not None and funder not in data["funders"]:
        error, status = f"no packages are funded by {funder!r}", 400
        data["docs"] = None
    totals = None
    if data["docs"]:
        totals = {"total": sum(d["total"] for d in data["docs"]), "minutes": sum(d["minutes"] for d in data["docs"]),
                  "count": len(data["docs"])}
    last = dt.timedelta(days=BillingConfig.from_settings(settings).default.period_days - 1)
    return ctx.render("invoices.html", status=status, periods=[(p, p + last) for p in choices],
                      period=period, funder=funder or "",
                      funders=data["funders"], docs=data["docs"], all_issued=data["issued"], totals=totals,
                      hours=_hours, error=error, done=ctx.arg("done", limit=20))


async def issue(ctx: Ctx) -> Response:
    settings, factory = ctx.runtime.settings, ctx.runtime.factory
    actor, now = ctx.user.username, ctx.now()
    try:
        text = ctx.field("period", limit=10)
        funder = ctx.field("funder", limit=80) or None
        confirmed = ctx.field("confirm", limit=5) == "yes"
        try:
            period = dt.date.fromisoformat(text)
        except ValueError:
            raise FormError({"period": "must be a date YYYY-MM-DD"}) from None
        if funder is not None and not FUNDER.match(funder):
            raise FormError({"funder": "must be letters, digits and spaces"})
        if not confirmed:
            raise FormError({"confirm": "tick the box to confirm: issued invoices are frozen for good"})
        config = BillingConfig.from_settings(settings)
        try:
            # Refuses a day that starts no period; billing refuses a period still running.
            period_starting(period, config.for_funder(funder) if funder else config.default, config.tz)
        except ValueError as exc:
            raise FormError({"period": str(exc)}) from None
        result = await ctx.runtime.run_db(
            lambda: invoices.issue(factory, settings, period, funder, now=now, actor=actor, with_lines=False))
    except (FormError, BillingError) as exc:
        ctx.query = {name: _safe_field(ctx, name) for name in ("period", "funder")}
        return await invoices_page(ctx, error=str(exc), status=400)
    query = f"period={period.isoformat()}" + (f"&funder={_q(funder)}" if funder else "")
    return redirect(f"/invoices?{query}&done={'issued' if result.newly_issued else 'unchanged'}")


def _safe_field(ctx: Ctx, name: str) -> str:
    """A posted value to show the form again with; whatever is wrong with it was reported already."""
    try:
        value = ctx.field(name, limit=80)
    except FormError:
        return ""
    return value if FUNDER.match(value) else ""


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# --- documents -------------------------------------------------------------------------


async def issued_document(ctx: Ctx, number: str) -> Response:
    settings, factory = ctx.runtime.settings, ctx.runtime.factory
    fmt = _format_arg(ctx)
    config = BillingConfig.from_settings(settings)

    def work() -> tuple[bytes, str, str]:
        doc = invoices.load(factory, settings, int(number))
        body, ctype = _document(doc, config, fmt, "invoice.html", doc.number,
                                (invoices.CSV_COLUMNS, invoices.csv_rows([doc], config)))
        return body, ctype, doc.number

    try:
        body, ctype, name = await ctx.runtime.run_db(work)
    except BillingError as exc:
        raise HTTPError(404, str(exc)) from None
    return _download(body, ctype, f"{name}.{fmt}", inline=fmt == "html")


async def draft_document(ctx: Ctx) -> Response:
    settings, factory, now = ctx.runtime.settings, ctx.runtime.factory, ctx.now()
    fmt = _format_arg(ctx)
    period = _period_arg(ctx, [], required=True)
    assert period is not None
    funder = _funder_arg(ctx)
    if funder is None:
        raise HTTPError(400, "choose a funder")
    po = ctx.arg("po", limit=80)
    ref = _reference_arg(ctx, "ref", required=False)
    config = BillingConfig.from_settings(settings)

    def work() -> tuple[bytes, str] | None:
        docs = [d for d in invoices.preview(factory, settings, period, funder, now=now)
                if d.purchase_order == po and d.resident_reference == ref]
        if not docs:
            return None
        return _document(docs[0], config, fmt, "invoice.html", "draft",
                         (invoices.CSV_COLUMNS, invoices.csv_rows(docs[:1], config)))

    try:
        out = await ctx.runtime.run_db(work)
    except BillingError as exc:
        raise HTTPError(400, str(exc)) from None
    if out is None:
        raise HTTPError(404, "No such invoice in this period")
    body, ctype = out
    slug = re.sub(r"[^A-Za-z0-9-]+", "_", f"draft-{period}-{funder}-{po or ref}")[:80]
    return _download(body, ctype, f"{slug}.{fmt}", inline=fmt == "html")


async def period_csv(ctx: Ctx) -> Response:
    """Every billed line of the period (issued: the frozen ledger, streamed; else the draft)."""
    settings, factory, now = ctx.runtime.settings, ctx.runtime.factory, ctx.now()
    period = _period_arg(ctx, [], required=True)
    assert period is not None
    funder = _funder_arg(ctx)
    config = BillingConfig.from_settings(settings)

    def work() -> str:
        docs = invoices.preview(factory, settings, period, funder, now=now)
        if docs and all(d.issued for d in docs):
            out = io.StringIO()  # from the frozen lines, in this thread (billing.stored_csv)
            stored_csv.write(factory, settings, period, out, funder, workers=0)
            return out.getvalue()
        return csv_text(invoices.CSV_COLUMNS, invoices.csv_rows(docs, config))

    try:
        text = await ctx.runtime.run_db(work)
    except BillingError as exc:
        raise HTTPError(400, str(exc)) from None
    slug = re.sub(r"[^A-Za-z0-9-]+", "_", f"invoices-{period}-{funder or 'all'}")
    return _download(text.encode(), "text/csv; charset=utf-8", f"{slug}.csv")


# --- timesheets ------------------------------------------------------------------------


async def timesheets_page(ctx: Ctx, *, found: list[dict[str, str]] | None = None, q: str = "", error: str = "",
                          status: int = 200) -> Response:
    settings = ctx.runtime.settings
    today = ctx.now().astimezone(settings.tz).date()
    return ctx.render("timesheets.html", status=status, periods=period_choices(settings, today), found=found,
                      q=q, error=error, period=None, resident="")


def _search(session: Session, q: str) -> list[dict[str, str]]:
    like = f"%{q.lower()}%"
    rows = session.scalars(select(Resident).where(or_(Resident.name.ilike(like), Resident.reference.ilike(like)))
                           .order_by(Resident.reference).limit(50))
    return [{"reference": r.reference, "name": r.name, "funder": r.funder or ""} for r in rows]


async def timesheet_search(ctx: Ctx) -> Response:
    try:
        q = ctx.field("q", limit=80)
    except FormError as exc:
        return await timesheets_page(ctx, error=str(exc), status=400)
    if not q:
        return await timesheets_page(ctx, error="type part of a name or reference", status=400)
    return await timesheets_page(ctx, found=await ctx.db(_search, q), q=q)


async def timesheet(ctx: Ctx) -> Response:
    settings, factory = ctx.runtime.settings, ctx.runtime.factory
    fmt = _format_arg(ctx)
    period = _period_arg(ctx, [], required=True)
    assert period is not None
    ref = _reference_arg(ctx, "resident")
    config = BillingConfig.from_settings(settings)

    def work() -> tuple[bytes, str]:
        sheet = timesheets.build(factory, settings, ref, period)
        return _document(sheet, config, fmt, "timesheet.html", ref,
                         (timesheets.CSV_COLUMNS, timesheets.csv_rows(sheet, config)))

    try:
        body, ctype = await ctx.runtime.run_db(work)
    except TimesheetError as exc:
        raise HTTPError(400 if "period" in str(exc) else 404, str(exc)) from None
    return _download(body, ctype, f"timesheet-{ref}-{period}.{fmt}", inline=fmt == "html")


def register(app: WebApp) -> None:
    app.add("GET", "/invoices", invoices_page, INVOICING)
    app.add("POST", "/invoices/issue", issue, INVOICING)
    app.add("GET", "/invoices/{number:int}", issued_document, INVOICING)
    app.add("GET", "/invoices/draft", draft_document, INVOICING)
    app.add("GET", "/invoices/csv", period_csv, INVOICING)
    app.add("GET", "/timesheets", timesheets_page, INVOICING)
    app.add("POST", "/timesheets/search", timesheet_search, INVOICING)
    app.add("GET", "/timesheets/view", timesheet, INVOICING)
