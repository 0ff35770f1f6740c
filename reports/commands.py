"""``carecall kpi``: the contract-monitoring return, and ``carecall kpi export``: its anonymised data."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from carecall.config import Settings
from ivr.db import make_engine, session_factory


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from exc


def _write(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    Path(out).write_text(text, encoding="utf-8")


def cmd_kpi(args: argparse.Namespace, settings: Settings) -> int:
    from reports.kpi import KpiRangeError, compute, make_scope

    engine = make_engine(settings.db_url)
    try:
        factory = session_factory(engine)
        if args.action == "export":
            from reports.export import write_export

            if args.out is None:
                print("carecall kpi export: --out FILE.csv is required", file=sys.stderr)
                return 2
            try:
                scope = make_scope(settings, args.date_from, args.date_to, args.funder, args.team, None)
            except KpiRangeError as exc:
                print(f"carecall kpi: {exc}", file=sys.stderr)
                return 2
            tmp = Path(args.out + ".part")
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                n = write_export(factory, settings, scope, fh)
            tmp.replace(args.out)
            print(f"{n} rows written to {args.out}", file=sys.stderr)
            return 0
        try:
            report = compute(factory, settings, args.date_from, args.date_to, args.funder, args.team)
        except KpiRangeError as exc:
            print(f"carecall kpi: {exc}", file=sys.stderr)
            return 2
        from reports.render import render

        _write(render(report, args.format), args.out)
        return 0
    finally:
        engine.dispose()


def register(sub: Any) -> None:
    p = sub.add_parser("kpi", help="contract-monitoring figures for a date range (or: kpi export, anonymised CSV)")
    p.add_argument("action", nargs="?", choices=("report", "export"), default="report",
                   help="report (default): the figures; export: anonymised visit data for the council")
    p.add_argument("--from", dest="date_from", type=_date, required=True, metavar="YYYY-MM-DD",
                   help="first local date (inclusive)")
    p.add_argument("--to", dest="date_to", type=_date, required=True, metavar="YYYY-MM-DD",
                   help="last local date (inclusive)")
    p.add_argument("--format", choices=("html", "csv", "json"), default="html")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--funder", help="only residents / packages of this funder")
    p.add_argument("--team", help="only residents of this team")
    p.set_defaults(func=cmd_kpi)
