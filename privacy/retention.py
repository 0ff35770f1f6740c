"""How long each kind of record is kept, and the daily job that deletes what has expired.

The periods are the ``[retention]`` configuration table (README); each registered table
that has a retention names its period and the column that dates a row
(:mod:`privacy.registry`). A row expires when that date is *before* the cutoff, ``now``
minus the period in calendar years (or days): a call record made at 10:00 on 1 March
2024 is kept through 10:00 on 1 March 2026 and deleted by the first run after. Deleting
follows foreign keys (:func:`privacy.rows.delete_where`): an expired alert takes its
history with it; an expired call record leaves the attendance it proved, without the
link. Residents' and workers' own rows are never expired by age — that is an erasure
decision (``carecall privacy erase``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

from sqlalchemy import Date, func, select
from sqlalchemy.orm import Session

from carecall.config import ConfigError, register_table
from ivr.models import AuditEntry
from privacy.registry import entries
from privacy.rows import delete_where

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


@register_table("retention")
@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    enabled: bool = True  # run the daily job in the server
    run_at: str = "03:30"  # local time of the daily run
    call_records_years: int = 2
    attendances_years: int = 6  # finance: the evidence behind invoices
    visits_years: int = 6
    invoices_years: int = 6  # HMRC: six years
    alerts_years: int = 6
    audit_years: int = 6
    views_years: int = 6
    login_failures_days: int = 30  # the lockout looks back an hour; a month shows a pattern

    def __post_init__(self) -> None:
        if not _HHMM.match(self.run_at):
            raise ConfigError(f"[retention] run_at must be HH:MM, got {self.run_at!r}")
        for f in dataclasses.fields(self):
            if f.name.endswith(("_years", "_days")) and getattr(self, f.name) < 1:
                raise ConfigError(f"[retention] {f.name} must be at least 1")

    def cutoff(self, key: str, now: dt.datetime) -> dt.datetime:
        n = getattr(self, key)
        if key.endswith("_days"):
            return now - dt.timedelta(days=n)
        try:
            return now.replace(year=now.year - n)
        except ValueError:  # 29 February
            return now.replace(year=now.year - n, day=28)


@dataclasses.dataclass(frozen=True)
class Expiry:
    table: str
    title: str
    period: str
    cutoff: dt.datetime
    rows: int


def run(session: Session, policy: RetentionPolicy, now: dt.datetime, *, dry_run: bool,
        actor: str = "retention") -> list[Expiry]:
    """Count (dry run) or delete every expired row; one transaction; returns the report."""
    report = []
    for e in entries():
        if e.retention is None:
            continue
        table = e.sa_table
        col = table.c[e.retention.column]
        cut = policy.cutoff(e.retention.policy, now)
        bound: dt.datetime | dt.date = cut.date() if isinstance(col.type, Date) else cut
        cond = col < bound
        if dry_run:
            n = session.scalar(select(func.count()).select_from(table).where(cond)) or 0
        else:
            n = session.scalar(select(func.count()).select_from(table).where(cond)) or 0
            if n:
                delete_where(session, table, cond)
        report.append(Expiry(e.table, e.title, e.retention.policy, cut, n))
    if not dry_run and any(x.rows for x in report):
        session.add(AuditEntry(at=now, actor=actor, action="retention", entity="retention", entity_id="*",
                               after=json.dumps({x.table: x.rows for x in report if x.rows})))
    return report


def report_lines(report: list[Expiry], *, dry_run: bool, tz: dt.tzinfo) -> list[str]:
    verb = "would delete" if dry_run else "deleted"
    out = []
    for x in report:
        when = x.cutoff.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        out.append(f"{x.title:<28} {verb} {x.rows:>7}  (older than {when}, {x.period.replace('_', ' ')})")
    return out
