"""``carecall invoice``, ``carecall timesheet`` and ``carecall approve-hours``.

``invoice`` issues (freezes) the period unless ``--draft`` is given: running it again
for an issued period writes the very same documents again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any

from billing import invoices, timesheets
from billing.render import render_html, render_pdf, write_csv
from billing.rules import BillingConfig
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


def cmd_invoice(args: argparse.Namespace, settings: Settings) -> int:
    config = BillingConfig.from_settings(settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    factory = session_factory(engine)
    try:
        if args.draft:
            docs = invoices.preview(factory, settings, args.period, args.funder)
            unassigned = 0
        else:
            result = invoices.issue(factory, settings, args.period, args.funder, actor="cli",
                                    with_lines=args.format != "csv")
            docs, unassigned = result.invoices, result.unassigned_attendances
            if not result.newly_issued:
                print(f"period {args.period} was already issued: writing the issued invoices again")
        if args.format == "csv":
            path = out / f"invoices-{args.period}{'-' + _safe(args.funder) if args.funder else ''}" \
                         f"{'-draft' if args.draft else ''}.csv"
            with path.open("w", encoding="utf-8", newline="") as fh:
                rows = (invoices.csv_rows(docs, config) if args.draft
                        else invoices.stored_csv_rows(factory, settings, args.period, args.funder))
                n = write_csv(invoices.CSV_COLUMNS, rows, fh)
            print(f"{path}: {n} rows")
        else:
            for path in _write_docs(docs, args.format, out, config):
                print(path)
    except invoices.BillingError as exc:
        print(f"carecall invoice: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if not docs:
        print(f"no invoices for the period starting {args.period}: nothing was attended")
    for doc in docs:
        who = doc.resident_reference or doc.purchase_order
        print(f"{doc.number}\t{doc.funder}\t{who}\t{doc.total:.2f}")
    if unassigned:
        print(f"{unassigned} attendance(s) fall outside every care package and were not billed", file=sys.stderr)
    return 0


def cmd_timesheet(args: argparse.Namespace, settings: Settings) -> int:
    config = BillingConfig.from_settings(settings)
    engine = make_engine(settings.db_url)
    try:
        sheet = timesheets.build(session_factory(engine), settings, args.resident, args.period)
    except timesheets.TimesheetError as exc:
        print(f"carecall timesheet: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    name = f"timesheet-{_safe(sheet.resident_reference)}-{args.period}.{args.format}"
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


def register(sub: Any) -> None:
    p = sub.add_parser("invoice", help="issue (or --draft) the 4-weekly invoices for a period")
    p.add_argument("--period", type=_date, required=True, metavar="YYYY-MM-DD", help="first day of the period")
    p.add_argument("--funder", help="only this funder (default: every funder)")
    p.add_argument("--format", choices=("csv", "html", "pdf"), default="csv")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--draft", action="store_true", help="preview only: store nothing, number nothing")
    p.set_defaults(func=cmd_invoice)

    t = sub.add_parser("timesheet", help="a resident's timesheet for a period, for signature")
    t.add_argument("--resident", required=True, metavar="REF")
    t.add_argument("--period", type=_date, required=True, metavar="YYYY-MM-DD")
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
