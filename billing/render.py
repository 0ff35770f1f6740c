"""HTML, PDF and CSV for invoices and timesheets, from Jinja2 templates (autoescaped).

The PDF is the same HTML laid out by WeasyPrint, so what finance previews in a browser
is what it sends. Times are shown in local time (Europe/London by default).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import jinja2

from billing.rules import BillingConfig
from ivr import csvsafe

TEMPLATES = Path(__file__).with_name("templates")


def _environment(config: BillingConfig) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def local(t: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return t.astimezone(config.tz).strftime(fmt) if t else ""

    def money(v: Decimal) -> str:
        return f"£{v:,.2f}" if v >= 0 else f"−£{-v:,.2f}"

    def hours(minutes: int) -> str:
        sign = "−" if minutes < 0 else ""
        h, m = divmod(abs(minutes), 60)
        return f"{sign}{h}:{m:02d}"

    env.filters.update(local=local, money=money, hours=hours, day=lambda d: f"{d:%d %b %Y}")
    return env


def render_html(doc: Any, config: BillingConfig, template: str = "invoice.html") -> str:
    """An invoice (or, with ``template="timesheet.html"``, a timesheet) as one HTML page."""
    return _environment(config).get_template(template).render(doc=doc, config=config)


def render_pdf(doc: Any, config: BillingConfig, template: str = "invoice.html") -> bytes:
    from weasyprint import HTML

    return HTML(string=render_html(doc, config, template), base_url=str(TEMPLATES)).write_pdf()


def write_csv(header: Iterable[str], rows: Iterable[list[str]], out: TextIO) -> int:
    """Stream rows to ``out`` (one row in memory at a time); returns the number of data rows."""
    writer = csvsafe.writer(out)  # every cell neutralised (ivr/csvsafe.py)
    writer.writerow(list(header))
    n = 0
    for row in rows:
        writer.writerow(row)
        n += 1
    return n


def csv_text(header: Iterable[str], rows: Iterable[list[str]]) -> str:
    buf = io.StringIO()
    write_csv(header, rows, buf)
    return buf.getvalue()
