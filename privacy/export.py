"""Subject access (UK GDPR art. 15) and portability (art. 20): everything held about one
resident or worker, as one JSON file and one readable PDF.

Built by walking :mod:`privacy.registry`, so a table registered later is exported
without a change here. Rows are exported whole (ids of other records included, so the
file can be read against the care record), except secret columns: a PIN is held only as
a keyed hash and said so; a sealed NI number is opened for its owner, and that reveal is
the export's own logged view. The export is recorded in the person's view log in the
same transaction that reads it, so the file lists its own making.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.sealed import Sealer
from ivr.sensitive import open_ni
from privacy import viewlog
from privacy.models import Channel
from privacy.people import load_person
from privacy.registry import WORKER, Person, PersonalTable, for_kind
from privacy.rows import plain

TEMPLATES = Path(__file__).with_name("templates")
SECRET_NOTE = "(held only as a keyed hash or sealed; not exportable)"


@dataclasses.dataclass
class Export:
    person: Person
    generated_at: dt.datetime
    generated_by: str
    sections: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": {"kind": self.person.kind, "reference": self.person.key},
            "generated_at": plain(self.generated_at),
            "generated_by": self.generated_by,
            "tables": {s["table"]: {"title": s["title"], "why": s["why"], "rows": s["rows"]} for s in self.sections},
        }

    def json_bytes(self) -> bytes:
        return json.dumps(self.as_json(), indent=2, ensure_ascii=False, sort_keys=False).encode("utf-8")

    @property
    def filename_stem(self) -> str:
        return f"subject-access-{self.person.kind}-{self.person.id}-{self.generated_at:%Y%m%d-%H%M%S}"


def _rows(session: Session, e: PersonalTable, person: Person, sealer: Sealer | None) -> list[dict[str, Any]]:
    table = e.sa_table
    order = list(table.primary_key.columns)
    out = []
    for row in session.execute(select(table).where(e.where(person.kind, person)).order_by(*order)).mappings():
        item = {k: plain(v) for k, v in row.items()}
        for col in e.secret:
            if col in item:
                item[col] = SECRET_NOTE
        if e.table == "worker_ni_numbers" and sealer is not None:
            item["ni_number"] = open_ni(session, sealer, row["worker_id"])
        out.append(item)
    return out


def build_export(session: Session, kind: str, subject_id: int, *, actor: str, role: str, channel: str,
                 sealer: Sealer | None, now: dt.datetime) -> Export:
    """Log the export, then read every registered table for the person (one transaction)."""
    person = load_person(session, kind, subject_id)
    what = "subject-access export" + (" (NI number opened)" if kind == WORKER else "")
    viewlog.record(session, actor=actor, role=role, channel=channel, kind=kind, subject_id=subject_id, what=what,
                   at=now)
    session.flush()
    sections = []
    for e in for_kind(kind):
        rows = _rows(session, e, person, sealer)
        sections.append({"table": e.table, "title": e.title, "why": e.why, "rows": rows})
    return Export(person, now, actor, sections)


def _cell(value: Any, tz: Any) -> str:
    """A value as a person reads it: UK local times, yes/no, nothing for empty."""
    if value is None or value == "":
        return ""
    if value is True or value is False:
        return "yes" if value else "no"
    if isinstance(value, str) and len(value) >= 20 and value[4] == "-" and value[10] == "T" and value.endswith("Z"):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(tz).strftime("%d %b %Y %H:%M")
        except ValueError:
            return value
    return str(value)


def _printable(section: dict[str, Any], tz: Any) -> dict[str, Any]:
    """One section for the PDF: columns that are empty in every row are left out (the JSON has them all)."""
    rows = section["rows"]
    cols = [c for c in (rows[0].keys() if rows else []) if any(r[c] not in (None, "") for r in rows)]
    return {**section, "cols": cols, "cells": [[_cell(r[c], tz) for c in cols] for r in rows]}


def render_html(export: Export, tz: Any) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def local(v: dt.datetime) -> str:
        return v.astimezone(tz).strftime("%d %b %Y %H:%M")

    env.filters["local"] = local
    sections = [_printable(s, tz) for s in export.sections]
    return env.get_template("export.html").render(x=export, sections=sections)


def render_pdf(export: Export, tz: Any) -> bytes:
    from weasyprint import HTML

    return HTML(string=render_html(export, tz), base_url=str(TEMPLATES)).write_pdf()


def write_files(export: Export, out_dir: Path, tz: Any) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{export.filename_stem}.json"
    pdf_path = out_dir / f"{export.filename_stem}.pdf"
    json_path.write_bytes(export.json_bytes())
    pdf_path.write_bytes(render_pdf(export, tz))
    return json_path, pdf_path


def export_person(factory: Any, kind: str, key_or_id: str | int, *, actor: str, role: str = "",
                  channel: str = Channel.CLI, sealer: Sealer | None = None,
                  now: dt.datetime | None = None) -> Export:
    """Find the person by reference / worker number (str) or id (int) and export them."""
    from ivr.db import unit_of_work
    from ivr.models import utcnow
    from privacy.people import find_id

    with unit_of_work(factory) as session:
        subject_id = key_or_id if isinstance(key_or_id, int) else find_id(session, kind, key_or_id)
        return build_export(session, kind, subject_id, actor=actor, role=role, channel=channel, sealer=sealer,
                            now=now or utcnow())
