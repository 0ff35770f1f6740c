"""The rows and scope the KPI figures and the alert figures share.

Their own module so that :mod:`reports.kpi` (which assembles the report, alert figures
included) and :mod:`reports.alerts` (which computes those) both import it and not each
other: the two used to import each other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from ivr.models import Resident


@dataclasses.dataclass
class VisitRow:
    """One visit (or attendance) behind a figure: what the drill-down lists."""

    visit_id: int | None
    visit_ref: str | None
    resident_ref: str
    planned_start: dt.datetime | None
    first_arrival: dt.datetime | None = None
    attendance_id: int | None = None
    worker_number: str | None = None
    detail: str = ""


@dataclasses.dataclass
class AlertKindFigures:
    kind: str
    raised: int
    acknowledged: int
    ack_median_seconds: int | None
    ack_p90_seconds: int | None


@dataclasses.dataclass
class Alerts:
    """Counts by kind, time to acknowledge (nearest-rank median and 90th percentile), no-replies."""

    available: bool
    reason: str = ""
    by_kind: list[AlertKindFigures] = dataclasses.field(default_factory=list)
    raised: int = 0
    acknowledged: int = 0
    ack_median_seconds: int | None = None
    ack_p90_seconds: int | None = None
    no_reply_by_status: dict[str, int] = dataclasses.field(default_factory=dict)
    no_reply_rows: list[VisitRow] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Scope:
    """The range in UTC and the filters, shared by every query."""

    date_from: dt.date
    date_to: dt.date
    lo: dt.datetime
    hi: dt.datetime
    now: dt.datetime
    tz: Any
    funder: str | None
    team: str | None

    def resident_filters(self, resident: Any = Resident) -> list[Any]:
        out = []
        if self.funder is not None:
            out.append(resident.funder == self.funder)
        if self.team is not None:
            out.append(resident.team == self.team)
        return out
