"""An unanswered-mode attendance is flagged wherever it is evidence: the board, invoices and
timesheets (method), the timesheet flags and the KPI return."""

from __future__ import annotations

import datetime as dt

import jinja2
import pytest_twisted
from sqlalchemy import update

from billing.rules import UNANSWERED_METHOD, AttendanceRow, method_of
from ivr.clock import format_local
from ivr.models import Worker
from reports.kpi import compute
from tests.callhelpers import R001_LINE, T0, attendances, start_server
from tests.helpers import add_visits, factory_for, import_world
from web.board import board_rows

MIN = dt.timedelta(minutes=1)
ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def row(**kw) -> AttendanceRow:
    base = dict(attendance_id=1, visit_ref="V1", resident_id=1, worker_number="1001", planned_start=T0,
                planned_end=T0 + 30 * MIN, arrival_at=T0, arrival_method="phone", arrival_entered_at=None,
                departure_at=T0 + 30 * MIN, departure_method="phone", departure_entered_at=None)
    return AttendanceRow(**(base | kw))


def test_billing_method_phone_unanswered_and_manual():
    assert method_of(row()) == "phone"
    assert method_of(row(departure_unanswered=True)) == UNANSWERED_METHOD
    assert method_of(row(arrival_unanswered=True, departure_method="manual")) == "manual"
    assert len(UNANSWERED_METHOD) <= 8  # billing_invoice_lines.method is String(8)


@pytest_twisted.inlineCallbacks
def test_board_and_kpi_show_the_unanswered_attendance(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    with factory.begin() as s:
        s.execute(update(Worker).where(Worker.worker_number == "1001").values(
            unanswered_ddi="+442079460001", unanswered_enabled=True))
    add_visits(settings, factory, ("V1", "R001", T0, 30, "1001"))
    server = start_server(settings)
    try:
        server.at(T0 + 1 * MIN)
        yield server.call(script="unanswered", callerid=R001_LINE, args=["02079460001"])
        server.at(T0 + 31 * MIN)
        yield server.call(callerid=R001_LINE, digits=["1001", "1234"])  # departure by PIN
    finally:
        yield server.stop()
    [att] = attendances(factory)
    assert att.arrival_unanswered and not att.departure_unanswered

    day = T0.astimezone(settings.tz).date()
    with factory() as s:
        rows = board_rows(s, day, "", T0 + 40 * MIN, settings)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT / "web" / "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["hm"] = lambda v: format_local(v, settings.tz, "%H:%M") if v else ""
    html = env.get_template("_board_rows.html").render(rows=rows, team="")
    arrival_cell = html.split('data-label="Arrived"')[1].split("</td>")[0]
    departure_cell = html.split('data-label="Left"')[1].split("</td>")[0]
    assert 'class="unanswered"' in arrival_cell and "no PIN" in arrival_cell
    assert 'class="unanswered"' not in departure_cell

    report = compute(factory, settings, day, day, now=T0 + 2 * 60 * MIN)
    assert report.compliance.unanswered == 1
    assert report.compliance.share.overall.numerator == 1  # still logged by phone at both ends
