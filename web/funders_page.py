"""Finance's reference pages: the funders list (who invoices go to) and credit notes.

Rules stay in ``billing/``: a funder is checked by ``billing.funders.FunderFields.parse``
(the same check as ``carecall import funders``), a credit note is issued by
``billing.credit_notes``. Finance and managers only (``INVOICING``).
"""

from __future__ import annotations

from typing import Any

from billing import funders
from billing.credit_notes import issue_credit_note, load_credit_note
from billing.invoices import BillingError, load
from billing.rules import BillingConfig
from web.app import Ctx, FormError, HTTPError, Response, WebApp, redirect
from web.auth import INVOICING
from web.invoicing import _document, _download

FIELDS = ("name", "invoice_address", "email", "po_required", "private", "payment_days", "brokerage_email")


def _rows(session: Any) -> list[dict[str, Any]]:
    return [{"name": f.name, "invoice_address": f.invoice_address, "email": f.email, "po_required": f.po_required,
             "private": f.private, "payment_days": f.payment_days, "brokerage_email": f.brokerage_email}
            for f in funders.all_funders(session)]


async def funders_page(ctx: Ctx, *, error: str = "", form: dict[str, str] | None = None,
                       status: int = 200) -> Response:
    rows = await ctx.db(_rows)
    edit = ctx.arg("edit", limit=80)
    if form is None:
        current = next((r for r in rows if r["name"] == edit), None)
        form = ({k: ("yes" if v is True else "no" if v is False else str(v)) for k, v in current.items()}
                if current else {"po_required": "yes", "private": "no", "payment_days": "28"})
    missing = BillingConfig.from_settings(ctx.runtime.settings).provider.missing
    return ctx.render("funders.html", status=status, rows=rows, form=form, error=error,
                      done=ctx.arg("done", limit=10), provider_missing=missing)


async def save_funder(ctx: Ctx) -> Response:
    form: dict[str, str] = {}
    try:
        for name in FIELDS:
            form[name] = ctx.field(name, limit=500, multiline=name == "invoice_address")
        for flag in ("po_required", "private"):
            form[flag] = "yes" if form[flag] == "yes" else "no"
        fields = funders.FunderFields.parse(form)
    except (FormError, funders.FunderError) as exc:
        return await funders_page(ctx, error=str(exc), form=form, status=400)
    await ctx.db(lambda s: funders.save(s, fields))
    return redirect("/funders?done=saved")


async def credit_page(ctx: Ctx, number: int | str, *, error: str = "", status: int = 200) -> Response:
    """The credit form for an issued invoice; once credited, its credit note (``?format=html|pdf``)."""
    settings, factory, number = ctx.runtime.settings, ctx.runtime.factory, int(number)
    fmt = ctx.arg("format", limit=4)
    if fmt not in ("", "html", "pdf"):
        raise HTTPError(400, "format must be html or pdf")
    try:
        doc = await ctx.runtime.run_db(lambda: load(factory, settings, number))
    except BillingError as exc:
        raise HTTPError(404, str(exc)) from None
    if fmt:
        if not doc.credited_by:
            raise HTTPError(404, f"{doc.number} has no credit note")
        config = BillingConfig.from_settings(settings)
        credit_number = int(doc.credited_by.removeprefix(config.credit_note_prefix))

        def work() -> tuple[bytes, str]:
            note = load_credit_note(factory, settings, credit_number)
            return _document(note, config, fmt, "credit_note.html", note.number, None)

        body, ctype = await ctx.runtime.run_db(work)
        return _download(body, ctype, f"{doc.credited_by}.{fmt}", inline=fmt == "html")
    return ctx.render("credit_note_form.html", status=status, doc=doc, number=number, error=error)


async def credit(ctx: Ctx, number: int | str) -> Response:
    settings, factory, actor, now = ctx.runtime.settings, ctx.runtime.factory, ctx.user.username, ctx.now()
    number = int(number)  # the router hands path parts over as text
    try:
        reason = ctx.field("reason", limit=500)
        if ctx.field("confirm", limit=5) != "yes":
            raise FormError({"confirm": "tick the box: a credit note cannot be withdrawn"})
        await ctx.runtime.run_db(lambda: issue_credit_note(factory, settings, number, reason, actor, now=now))
    except (FormError, BillingError) as exc:
        return await credit_page(ctx, number, error=str(exc), status=400)
    return redirect(f"/invoices/{number}/credit")


def register(app: WebApp) -> None:
    app.add("GET", "/funders", funders_page, INVOICING)
    app.add("POST", "/funders", save_funder, INVOICING)
    app.add("GET", "/invoices/{number:int}/credit", credit_page, INVOICING)
    app.add("POST", "/invoices/{number:int}/credit", credit, INVOICING)
