"""The board's late / missed / no-departure colours start at the alert rules' own deadlines."""

from __future__ import annotations

import datetime as dt

from ivr.models import Visit
from scheduler.rules import Rules
from web.board import State, visit_deadlines, visit_state

START = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
SEC = dt.timedelta(seconds=1)


def visit(minutes: int = 60, time_critical: bool = False) -> Visit:
    return Visit(id=1, visit_ref="V1", resident_id=1, planned_start=START, planned_end=START + minutes * MIN,
                 time_critical=time_critical, status="scheduled", workers_required=1)


def test_late_starts_at_the_alert_rules_late_deadline_time_critical_sooner():
    rules = Rules()  # defaults: late 30 min, time-critical 15 min, no departure 30 min
    due = visit_deadlines(visit(), "R001", rules)
    assert visit_state("scheduled", [], START + 30 * MIN - SEC, due) == State.DUE
    assert visit_state("scheduled", [], START + 30 * MIN, due) == State.LATE
    tc = visit_deadlines(visit(time_critical=True), "R001", rules)
    assert visit_state("scheduled", [], START + 15 * MIN - SEC, tc) == State.DUE
    assert visit_state("scheduled", [], START + 15 * MIN, tc) == State.LATE


def test_missed_at_the_planned_end_and_no_departure_after_its_threshold():
    rules = Rules()
    due = visit_deadlines(visit(45), "R001", rules)
    assert visit_state("scheduled", [], START + 45 * MIN - SEC, due) == State.LATE
    assert visit_state("scheduled", [], START + 45 * MIN, due) == State.MISSED
    on_site = [(START + 5 * MIN, None)]
    # Planned end 09:45 + 30 min no-departure threshold = 10:15.
    assert visit_state("scheduled", on_site, START + 75 * MIN - SEC, due) == State.ON_SITE
    assert visit_state("scheduled", on_site, START + 75 * MIN, due) == State.NO_DEPARTURE
    assert visit_state("scheduled", [(START + 5 * MIN, START + 40 * MIN)], START + 90 * MIN, due) == State.DONE
    assert visit_state("cancelled", [], START + 90 * MIN, due) == State.CANCELLED


def test_a_site_setting_in_alerts_moves_the_board_too():
    rules = Rules.from_section({"late_minutes": 20, "no_departure_minutes": 10})
    due = visit_deadlines(visit(), "R001", rules)
    assert visit_state("scheduled", [], START + 20 * MIN, due) == State.LATE
    assert visit_state("scheduled", [(START, None)], START + 70 * MIN, due) == State.NO_DEPARTURE
