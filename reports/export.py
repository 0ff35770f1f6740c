"""The anonymised visit export a provider can send to the council (spec 004 §17.2).

No names, addresses, phone numbers or references: residents, workers and visits appear
as pseudonyms, an HMAC-SHA256 of the database id under a key derived from the site
secret. The same person keeps the same pseudonym from one month's export to the next
(so the council can follow consistency over time), but nobody without the key file can
turn a pseudonym back into a person, or test a guess: the ids are not guessable inputs
to a public hash, they are inputs to a keyed one.

Rows are streamed from the database in batches and written as they come.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import IO, Any

from sqlalchemy import and_, literal, null, select, union_all
from sqlalchemy.orm import Session, sessionmaker

from carecall.config import Settings
from ivr import csvsafe
from ivr.clock import format_local
from ivr.models import Attendance, Resident, Visit, VisitStatus
from ivr.pins import load_or_create_key
from reports.kpi import Scope

COLUMNS = (
    "visit", "resident", "worker", "funder", "kind", "planned_start", "planned_minutes", "time_critical",
    "workers_required", "arrival", "arrival_method", "departure", "departure_method", "minutes_delivered",
)
# Bumping this changes every pseudonym: do it only if the key is believed leaked.
PSEUDONYM_CONTEXT = b"carecall/kpi-export/pseudonym/v1"


class Pseudonymiser:
    """Stable, keyed, irreversible labels for ids: ``R-3fa9…`` for resident 42, every month."""

    def __init__(self, site_key: bytes) -> None:
        # A key of its own, so export pseudonyms can never be compared with PIN hashes.
        self._key = hmac.new(site_key, PSEUDONYM_CONTEXT, hashlib.sha256).digest()
        self._cache: dict[tuple[str, int], str] = {}

    def __call__(self, prefix: str, ident: int | None) -> str:
        if ident is None:
            return ""
        key = (prefix, ident)
        found = self._cache.get(key)
        if found is None:
            digest = hmac.new(self._key, f"{prefix}:{ident}".encode(), hashlib.sha256).hexdigest()
            found = self._cache[key] = f"{prefix}-{digest[:16]}"
        return found


def _rows(session: Session, scope: Scope) -> Iterator[Any]:
    a = Attendance
    visit_cols = (Visit.id.label("visit_id"), Visit.resident_id, a.worker_id, Resident.funder,
                  a.kind, Visit.planned_start, Visit.planned_end, Visit.time_critical, Visit.workers_required,
                  a.arrival_at, a.arrival_method, a.departure_at, a.departure_method)
    scheduled = (
        select(*visit_cols)
        .join(Resident, Resident.id == Visit.resident_id)
        .outerjoin(a, a.visit_id == Visit.id)
        .where(Visit.status == VisitStatus.SCHEDULED, Visit.planned_start >= scope.lo, Visit.planned_start < scope.hi,
               *scope.resident_filters())
    )
    unscheduled = (
        select(null().label("visit_id"), a.resident_id, a.worker_id, Resident.funder, a.kind,
               null().label("planned_start"), null().label("planned_end"), literal(False).label("time_critical"),
               null().label("workers_required"), a.arrival_at, a.arrival_method, a.departure_at, a.departure_method)
        .join(Resident, Resident.id == a.resident_id)
        .where(and_(a.visit_id.is_(None), a.arrival_at >= scope.lo, a.arrival_at < scope.hi),
               *scope.resident_filters())
    )
    both = union_all(scheduled, unscheduled).subquery("rows")
    stmt = select(both).order_by(both.c.planned_start, both.c.arrival_at, both.c.visit_id, both.c.worker_id)
    yield from session.execute(stmt.execution_options(yield_per=5000))


def write_export(factory: sessionmaker[Session], settings: Settings, scope: Scope, out: IO[str]) -> int:
    """Write the CSV to ``out``; returns the number of data rows."""
    from ivr.models import UTCDateTime

    pseudo = Pseudonymiser(load_or_create_key(settings.secret_path))
    tz = settings.tz
    utc = UTCDateTime()

    def instant(value: Any) -> Any:
        # Through a union the column types are lost on some engines: re-attach UTC.
        if value is None or getattr(value, "tzinfo", None) is not None:
            return value
        if isinstance(value, str):
            import datetime as dt

            value = dt.datetime.fromisoformat(value)
        return utc.process_result_value(value, None)

    writer = csvsafe.writer(out)  # every cell neutralised (ivr/csvsafe.py)
    writer.writerow(COLUMNS)
    n = 0
    with factory() as session:
        for r in _rows(session, scope):
            ps, pe = instant(r.planned_start), instant(r.planned_end)
            arr, dep = instant(r.arrival_at), instant(r.departure_at)
            kind = r.kind or "missed"
            writer.writerow((
                pseudo("V", r.visit_id), pseudo("R", r.resident_id), pseudo("W", r.worker_id), r.funder or "",
                kind, format_local(ps, tz), "" if ps is None else int((pe - ps).total_seconds() // 60),
                "yes" if r.time_critical else "no", r.workers_required or "",
                format_local(arr, tz), r.arrival_method or "", format_local(dep, tz), r.departure_method or "",
                "" if arr is None or dep is None else int((dep - arr).total_seconds() // 60),
            ))
            n += 1
    return n
