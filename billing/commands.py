"""``carecall invoice``, ``carecall timesheet`` and ``carecall approve-hours``.

``invoice`` previews: it prints a summary (invoices, totals, exceptions, minutes over
the commissioned hours) and, with ``--out``, writes drafts. Only ``--issue`` numbers and
freezes, after a confirmation on a terminal (``--yes`` without one). Running it again for
an issued period writes the very same documents again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from concurrent.futures.process import BrokenProcessPool
from decimal import Decimal
from pathlib import Path
from typing import Any

from billing import invoices, stored_csv, timesheets
from billing.render import render_html, render_pdf, write_csv
from billing.rules import BillingConfig, period_containing
from carecall.config import Settings
from ivr.db import make_engine, session_factory, upgrade


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from exc


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "all"


def _write_docs(docs: list[invoices.InvoiceDoc], fmt: str, out: Path, config: BillingConfig) -> list[Path]:
    paths = []
    for doc in docs:
        stem = doc.number if doc.issued else f"DRAFT-{_safe(doc.funder)}-{_safe(doc.purchase_order)}"
        if doc.resident_reference and not doc.issued:
            stem += f"-{_safe(doc.resident_reference)}"
        path = out / f"{stem}.{fmt}"
        if fmt == "html":
            path.write_text(render_html(doc, config), encoding="utf-8")
        else:
            path.write_bytes(render_pdf(doc, config))
        paths.append(path)
    return paths


def resolve_period(text: str, config: BillingConfig, funder: str | None, today: dt.date) -> dt.date:
    """``YYYY-MM-DD`` (the first day of a period), or ``last`` (the last complete period) / ``current``.

    Periods run ``period_days`` local days from ``[billing] anchor`` (a Monday): with the
    default anchor 2026-01-05 they start 2026-01-05, 2026-02-02, 2026-03-02 … A date that
    starts no period is refused naming the period it falls in, so nothing is billed for a
    period nobody meant.
    """
    rules = config.for_funder(funder) if funder else config.default
    current = period_containing(today, rules, config.tz)
    if text == "current":
        return current.start
    if text == "last":
        return current.start - dt.timedelta(days=rules.period_days)
    day = _date(text)
    period = period_containing(day, rules, config.tz)
    if period.start != day:
        raise invoices.BillingError(
            f"{day} is not the start of a billing period: it falls in the period {period.start} to "
            f"{period.last_day} (periods run {rules.period_days} days from the anchor {rules.anchor}; "
            f"use --period {period.start}, or --period last for the last complete period)")
    return day


def _summary(docs: list[invoices.InvoiceDoc], issued: bool, nil_returns: bool) -> list[str]:
    """The lines finance reads before (and after) issuing: one per invoice, then the totals."""
    shown = [d for d in docs if nil_returns or d.issued or not d.is_nil]
    nil = [d for d in docs if d.is_nil and not d.issued and not nil_returns]
    out = [f"{'number':<12} {'funder':<16} {'bill to / PO':<18} {'visits':>6} {'hours':>8} {'over cap':>9} "
           f"{'exceptions':>10} {'total':>12}"]
    for d in shown:
        who = d.resident_reference or d.purchase_order or "-"
        h, m = divmod(d.billed_minutes, 60)
        oh, om = divmod(d.over_cap_minutes, 60)
        out.append(f"{d.number:<12} {d.funder[:16]:<16} {who[:18]:<18} {d.visits:>6} {f'{h}:{m:02d}':>8} "
                   f"{f'{oh}:{om:02d}':>9} {d.exceptions_total:>10} {f'£{d.total:,.2f}':>12}")
    total = sum((d.total for d in shown), Decimal("0.00"))
    exceptions = sum(d.exceptions_total for d in docs)
    over = sum(d.over_cap_minutes for d in docs)
    verb = "issued" if issued else "to issue"
    out.append(f"{len(shown)} invoice(s) {verb}, total £{total:,.2f}; {exceptions} exception(s) not charged; "
               f"{over} minute(s) over commissioned hours not charged")
    if nil:
        out.append(f"{len(nil)} purchase order(s) with nothing to bill get no invoice "
                   "(--nil-returns issues nil returns): " + ", ".join(d.resident_reference or d.purchase_order
                                                                    for d in nil[:10]))
    return out


def _confirm(args: argparse.Namespace, stdin: Any = None) -> str | None:
    """None if issuing may go ahead, else why not. No terminal: ``--yes`` is the confirmation."""
    stdin = stdin or sys.stdin
    if args.yes:
        return None
    if not stdin.isatty():
        return "--issue without a terminal needs --yes (issued invoices are numbered and frozen for good)"
    answer = input("Issue these invoices? They are numbered and frozen for good. Type 'issue' to go ahead: ")
    return None if answer.strip().lower() == "issue" else "not confirmed: nothing was issued"


def cmd_invoice(args: argparse.Namespace, settings: Settings) -> int:
    """Preview by default; ``--issue`` (confirmed) numbers and freezes."""
    config = BillingConfig.from_settings(settings)
    out = Path(args.out) if args.out else None
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    factory = session_factory(engine)
    unassigned = 0
    if config.provider.missing:
        print("note: the invoices lack " + ", ".join(config.provider.missing)
              + " (set them in [provider] in carecall.toml)", file=sys.stderr)
    try:
        period = resolve_period(args.period, config, args.funder, dt.datetime.now(config.tz).date())
        if not args.issue or not args.yes:
            docs = invoices.preview(factory, settings, period, args.funder)
            frozen = bool(docs) and all(d.issued for d in docs)
            head = ("issued invoices (frozen)" if frozen
                    else "preview: nothing is issued" + ("" if args.issue else "; add --issue to issue"))
            print(f"period {period}: {head}")
            for line in _summary(docs, frozen, args.nil_returns):
                print(line)
        if args.issue:
            if not (args.yes or (docs and all(d.issued for d in docs))):
                refusal = _confirm(args)
                if refusal:
                    print(f"carecall invoice: {refusal}", file=sys.stderr)
                    return 2
            result = invoices.issue(factory, settings, period, args.funder, actor="cli",
                                    with_lines=args.format != "csv", nil_returns=args.nil_returns)
            docs, unassigned = result.invoices, result.unassigned_attendances
            if result.newly_issued:
                print(f"period {period}: issued")
                for line in _summary(docs, True, args.nil_returns):
                    print(line)
            else:
                print(f"period {period} was already issued: nothing new issued")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            wanted = [d for d in docs if d.issued or args.nil_returns or not d.is_nil]
            if args.format == "csv":
                issued = bool(wanted) and all(d.issued for d in wanted)
                path = out / f"invoices-{period}{'-' + _safe(args.funder) if args.funder else ''}" \
                             f"{'' if issued else '-draft'}.csv"
                with path.open("w", encoding="utf-8", newline="") as fh:
                    if issued:  # from the frozen lines, in worker processes when big (billing.stored_csv)
                        n = stored_csv.write(factory, settings, period, fh, args.funder)
                    else:
                        n = write_csv(invoices.CSV_COLUMNS, invoices.csv_rows(wanted, config), fh)
                print(f"{path}: {n} rows")
            else:
                for path in _write_docs(wanted, args.format, out, config):
                    print(path)
    except invoices.BillingError as exc:
        print(f"carecall invoice: {exc}", file=sys.stderr)
        return 2
    except BrokenProcessPool:
        # The CSV's worker processes (billing.stored_csv); the invoices themselves are issued.
        print("carecall invoice: a worker process writing the CSV stopped; the file is incomplete: "
              "run the same command again (the issued invoices are unchanged)", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if unassigned:
        print(f"{unassigned} attendance(s) fall outside every care package and were not billed", file=sys.stderr)
    return 0


def cmd_timesheet(args: argparse.Namespace, settings: Settings) -> int:
    config = BillingConfig.from_settings(settings)
    engine = make_engine(settings.db_url)
    try:
        period = resolve_period(args.period, config, None, dt.datetime.now(config.tz).date())
        sheet = timesheets.build(session_factory(engine), settings, args.resident, period)
    except (timesheets.TimesheetError, invoices.BillingError) as exc:
        print(f"carecall timesheet: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    name = f"timesheet-{_safe(sheet.resident_reference)}-{period}.{args.format}"
    if args.format == "csv":
        if args.out is None:
            write_csv(timesheets.CSV_COLUMNS, timesheets.csv_rows(sheet, config), sys.stdout)
            return 0
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with (Path(args.out) / name).open("w", encoding="utf-8", newline="") as fh:
            write_csv(timesheets.CSV_COLUMNS, timesheets.csv_rows(sheet, config), fh)
    elif args.format == "html":
        html = render_html(sheet, config, "timesheet.html")
        if args.out is None:
            sys.stdout.write(html)
            return 0
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / name).write_text(html, encoding="utf-8")
    else:
        if args.out is None:
            print("carecall timesheet: --out DIR is needed for PDF", file=sys.stderr)
            return 2
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / name).write_bytes(render_pdf(sheet, config, "timesheet.html"))
    print(Path(args.out) / name)
    return 0


def cmd_approve(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.db_url)
    try:
        approval = invoices.approve_extra_minutes(session_factory(engine), settings, args.resident, args.period,
                                                  args.minutes, args.reason, args.by,
                                                  purchase_order=args.purchase_order)
    except invoices.BillingError as exc:
        print(f"carecall approve-hours: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"approval {approval} recorded: {args.minutes} extra minutes for {args.resident}, period {args.period}")
    return 0


def cmd_pay(args: argparse.Namespace, settings: Settings) -> int:
    """Workers' pay for a pay period: one CSV row per worker (payroll import), or a PDF report."""
    from billing import payroll
    from billing.pay import PayConfig, pay_period_containing, pay_period_starting

    config = PayConfig.from_settings(settings)
    tz = settings.tz
    today = dt.datetime.now(tz).date()
    try:
        if args.period in ("last", "current"):
            period = pay_period_containing(today, config, tz)
            if args.period == "last":
                period = pay_period_containing(period.start - dt.timedelta(days=1), config, tz)
        else:
            period = pay_period_starting(_date(args.period), config, tz)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"carecall pay: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(settings.db_url)
    factory = session_factory(engine)
    suffix = f"-{_safe(args.worker)}" if args.worker else ""
    name = f"pay-{period.start}{suffix}.{args.format}"
    try:
        if args.format == "csv":
            if args.worker:
                wp = payroll.worker_detail(factory, settings, period, args.worker).pay
                rows: Any = iter([payroll.csv_row(wp, period, config)])
            else:
                rows = payroll.csv_rows(factory, settings, period)
            if args.out is None:
                write_csv(payroll.CSV_COLUMNS, rows, sys.stdout)
                return 0
            Path(args.out).mkdir(parents=True, exist_ok=True)
            with (Path(args.out) / name).open("w", encoding="utf-8", newline="") as fh:
                n = write_csv(payroll.CSV_COLUMNS, rows, fh)
            print(f"{Path(args.out) / name}: {n} worker(s)")
            return 0
        if args.out is None:
            print("carecall pay: --out DIR is needed for PDF", file=sys.stderr)
            return 2
        detail = payroll.worker_detail(factory, settings, period, args.worker) if args.worker else None
        workers = [detail.pay] if detail else list(payroll.workers_pay(factory, settings, period))
        report = payroll.PayReport(period, config, workers, detail)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / name).write_bytes(render_pdf(report, BillingConfig.from_settings(settings), "pay.html"))
        print(Path(args.out) / name)
        for w in report.below:
            print(f"worker {w.worker_number} is below the minimum hourly rate: {w.effective_rate(config)} < "
                  f"{config.minimum_hourly_rate} (short £{w.shortfall(config)})")
        return 0
    except payroll.PayrollError as exc:
        print(f"carecall pay: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()


def cmd_credit_note(args: argparse.Namespace, settings: Settings) -> int:
    """Credit an issued invoice in full, with a reason; writes its PDF/HTML with ``--out``."""
    from billing.credit_notes import issue_credit_note, parse_invoice_number

    config = BillingConfig.from_settings(settings)
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        number = parse_invoice_number(args.invoice, config)
        note = issue_credit_note(session_factory(engine), settings, number, args.reason, "cli")
    except invoices.BillingError as exc:
        print(f"carecall credit-note: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"{note.number} credits {note.invoice.number}: £{note.total:,.2f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{note.number}.{args.format}"
        if args.format == "html":
            path.write_text(render_html(note, config, "credit_note.html"), encoding="utf-8")
        else:
            path.write_bytes(render_pdf(note, config, "credit_note.html"))
        print(path)
    return 0


def register(sub: Any) -> None:
    c = sub.add_parser("credit-note", help="credit an issued invoice in full (its own numbering: CN-000001)")
    c.add_argument("invoice", metavar="INVOICE_NO", help="the invoice to credit, e.g. INV-000002")
    c.add_argument("--reason", required=True, help="why (printed on the credit note)")
    c.add_argument("--format", choices=("pdf", "html"), default="pdf")
    c.add_argument("--out", metavar="DIR", help="write the credit note here")
    c.set_defaults(func=cmd_credit_note)

    y = sub.add_parser("pay", help="workers' pay for a pay period (contact, travel, waiting; minimum-rate check)")
    y.add_argument("--period", required=True, metavar="YYYY-MM-DD|last|current",
                   help="first day of the pay period ([pay] period and anchor), or 'last'")
    y.add_argument("--format", choices=("csv", "pdf"), default="csv")
    y.add_argument("--worker", metavar="NUMBER", help="one worker, with every line (PDF: a pay statement)")
    y.add_argument("--out", metavar="DIR", help="directory to write to (CSV default: standard output)")
    y.set_defaults(func=cmd_pay)

    p = sub.add_parser("invoice", help="preview (default) or --issue the 4-weekly invoices for a period")
    p.add_argument("--period", required=True, metavar="YYYY-MM-DD|last|current",
                   help="first day of the period, or 'last' (the last complete period)")
    p.add_argument("--funder", help="only this funder (default: every funder)")
    p.add_argument("--format", choices=("csv", "html", "pdf"), default="pdf")
    p.add_argument("--out", metavar="DIR", help="write the invoices (drafts when previewing) here")
    p.add_argument("--issue", action="store_true", help="number and freeze the invoices (asks to confirm)")
    p.add_argument("--yes", action="store_true", help="with --issue: no question (needed without a terminal)")
    p.add_argument("--nil-returns", action="store_true",
                   help="also issue invoices for purchase orders with nothing to bill")
    p.add_argument("--draft", action="store_true", help=argparse.SUPPRESS)  # the old spelling: preview is default
    p.set_defaults(func=cmd_invoice)

    t = sub.add_parser("timesheet", help="a resident's timesheet for a period, for signature")
    t.add_argument("--resident", required=True, metavar="REF")
    t.add_argument("--period", required=True, metavar="YYYY-MM-DD|last", help="first day of the period, or 'last'")
    t.add_argument("--format", choices=("csv", "html", "pdf"), default="html")
    t.add_argument("--out", metavar="DIR", help="directory to write to (default: standard output)")
    t.set_defaults(func=cmd_timesheet)

    a = sub.add_parser("approve-hours", help="record extra minutes agreed with the funder for a period")
    a.add_argument("--resident", required=True, metavar="REF")
    a.add_argument("--period", type=_date, required=True, metavar="YYYY-MM-DD")
    a.add_argument("--minutes", type=int, required=True)
    a.add_argument("--reason", required=True)
    a.add_argument("--by", required=True, help="who agreed it")
    a.add_argument("--purchase-order", help="when the resident has more than one package")
    a.set_defaults(func=cmd_approve)
