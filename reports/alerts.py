"""Alert figures: counts by kind, time to acknowledge, what became of no-reply alerts.

The alert table belongs to ``scheduler`` (``scheduler.models.Alert``). This module reads
only the columns every alert has (``kind``, ``raised_at``, ``acknowledged_at``,
``status``, and ``resident_id`` or ``visit_id`` for the funder / team filter); until the
table exists it reports the figures as unavailable instead of failing the whole return.

Percentiles are nearest-rank (the value at rank ``ceil(p/100 * n)`` in ascending order;
for an even count the median is the lower middle value), computed in SQL with window
functions that SQLite (3.25+) and PostgreSQL both have.
"""

from __future__ import annotations

import importlib
from typing import Any

from sqlalchemy import and_, func, inspect, select
from sqlalchemy.orm import Session

from ivr.clock import format_local
from ivr.models import Resident, Visit
from reports.config import KpiConfig
from reports.rows import AlertKindFigures, Alerts, Scope, VisitRow
from reports.sqlfn import epoch_seconds


def alert_model() -> Any | None:
    """``scheduler.models.Alert`` if this checkout has it, else None."""
    try:
        module = importlib.import_module("scheduler.models")
    except ModuleNotFoundError as exc:
        if exc.name in ("scheduler.models", "scheduler"):
            return None
        raise
    return getattr(module, "Alert", None)


def _table_exists(session: Session, model: Any) -> bool:
    return bool(inspect(session.connection()).has_table(model.__tablename__))


def _percentile_rows(session: Session, stmt: Any, percents: tuple[int, ...]) -> dict[tuple[str | None, int], int]:
    """{(kind or None, p): seconds} for nearest-rank percentiles, per kind and overall (kind None)."""
    sub = stmt.subquery("acks")
    ranked_kind = select(
        sub.c.kind, sub.c.secs,
        func.row_number().over(partition_by=sub.c.kind, order_by=sub.c.secs).label("rn"),
        func.count().over(partition_by=sub.c.kind).label("n"),
    ).subquery("rk")
    ranked_all = select(
        sub.c.secs,
        func.row_number().over(order_by=sub.c.secs).label("rn"),
        func.count().over().label("n"),
    ).subquery("ra")
    out: dict[tuple[str | None, int], int] = {}
    for p in percents:
        def at_rank(r: Any, p: int = p) -> Any:
            return and_(r.c.rn * 100 >= p * r.c.n, (r.c.rn - 1) * 100 < p * r.c.n)

        for kind, secs in session.execute(select(ranked_kind.c.kind, ranked_kind.c.secs).where(at_rank(ranked_kind))):
            out[(kind, p)] = int(secs)
        for (secs,) in session.execute(select(ranked_all.c.secs).where(at_rank(ranked_all))):
            out[(None, p)] = int(secs)
    return out


def alert_figures(session: Session, scope: Scope, cfg: KpiConfig, model: Any | None = None) -> Alerts:
    """The figures from ``model`` (default: the scheduler's Alert, when this checkout has it)."""
    model = model if model is not None else alert_model()
    if model is None:
        return Alerts(available=False, reason="alert records are not on this installation yet (scheduler.models.Alert)")
    if not _table_exists(session, model):
        return Alerts(available=False, reason="the alerts table has not been created: run `carecall migrate`")

    where = [model.raised_at >= scope.lo, model.raised_at < scope.hi, model.raised_at <= scope.now]
    joins: list[tuple[Any, Any]] = []
    if hasattr(model, "visit_id"):
        joins.append((Visit, Visit.id == model.visit_id))
    if hasattr(model, "resident_id"):
        joins.append((Resident, Resident.id == model.resident_id))
    elif hasattr(model, "visit_id"):
        joins.append((Resident, Resident.id == Visit.resident_id))
    filters = scope.resident_filters()
    if filters and not any(j[0] is Resident for j in joins):
        return Alerts(available=False, reason="alerts cannot be filtered by funder or team (no resident link)")

    def base(*cols: Any) -> Any:
        stmt = select(*cols)
        for target, on in joins:
            stmt = stmt.outerjoin(target, on)
        return stmt.where(*where, *filters)

    acked = model.acknowledged_at.is_not(None)
    counts = base(model.kind, func.count(), func.count(model.acknowledged_at)).group_by(model.kind)
    by_kind = {kind: (int(n), int(k)) for kind, n, k in session.execute(counts)}
    secs = (epoch_seconds(model.acknowledged_at) - epoch_seconds(model.raised_at)).label("secs")
    pct = _percentile_rows(session, base(model.kind, secs).where(acked), (50, 90))

    figures = Alerts(available=True)
    for kind in sorted(by_kind):
        n, k = by_kind[kind]
        figures.by_kind.append(AlertKindFigures(kind, n, k, pct.get((kind, 50)), pct.get((kind, 90))))
        figures.raised += n
        figures.acknowledged += k
    figures.ack_median_seconds = pct.get((None, 50))
    figures.ack_p90_seconds = pct.get((None, 90))

    is_no_reply = model.kind == cfg.no_reply_kind
    for status, n in session.execute(base(model.status, func.count()).where(is_no_reply).group_by(model.status)):
        figures.no_reply_by_status[str(status)] = int(n)
    cols: list[Any] = [model.id, model.raised_at, model.status]
    has_visit = any(j[0] is Visit for j in joins)
    has_resident = any(j[0] is Resident for j in joins)
    cols.append(Visit.id if has_visit else model.id.label("no_visit"))
    cols.append(Visit.visit_ref if has_visit else model.kind.label("no_ref"))
    cols.append(Resident.reference if has_resident else model.kind.label("no_resident"))
    for r in session.execute(base(*cols).where(is_no_reply).order_by(model.raised_at, model.id)):
        figures.no_reply_rows.append(VisitRow(
            r[3] if has_visit else None, r[4] if has_visit else None, r[5] if has_resident else "",
            None, None, detail=f"alert {r[0]} raised {format_local(r[1], scope.tz)}, {r[2]}"))
    return figures
