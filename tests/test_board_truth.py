"""The board tells the truth: each alert kind's visit shows the state its alert stands for.

Stored visits, attendances and alerts (both engines) read back through ``board_rows``
at a fixed ``now``: no reply, late (and "arrived 72 min late" after the fact), short
visit, missed, no departure, double-up apart, failed login, substitute and unscheduled
attendances; the counts at the top are the rows' own; worker names come with numbers;
the visit page's word comes from the same function.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from ivr.models import Attendance, Resident, Visit, VisitWorker, Worker
from scheduler.models import AlertKind
from scheduler.store import raise_alert
from tests.helpers import factory_for
from web.board import State, board_rows, count_states
from web.pages import _visit_detail

DAY = dt.date(2026, 3, 10)  # GMT: local = UTC
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def at(hhmm: str) -> dt.datetime:
    h, m = hhmm.split(":")
    return dt.datetime(2026, 3, 10, int(h), int(m), tzinfo=dt.UTC)


class World:
    def __init__(self, s: Session) -> None:
        self.s = s
        self.res = Resident(reference="R1", name="Alice Brown", postcode="SE6 1AA")
        self.w1 = Worker(worker_number="1001", name="Wendy Walker", pin_hash="x")
        self.w2 = Worker(worker_number="1002", name="Sam Smith", pin_hash="x")
        s.add_all([self.res, self.w1, self.w2])
        s.flush()
        self.n = 0

    def visit(self, start: str, end: str, *workers: Worker, status: str = "scheduled") -> Visit:
        self.n += 1
        v = Visit(visit_ref=f"V{self.n}", resident_id=self.res.id, planned_start=at(start), planned_end=at(end),
                  workers_required=len(workers) or 1, status=status)
        v.assignments = [VisitWorker(worker_id=w.id, position=i + 1) for i, w in enumerate(workers)]
        self.s.add(v)
        self.s.flush()
        return v

    def came(self, v: Visit | None, w: Worker, arrive: str, leave: str | None = None,
             kind: str = "scheduled") -> Attendance:
        a = Attendance(visit_id=v.id if v else None, resident_id=self.res.id, worker_id=w.id, kind=kind,
                       arrival_at=at(arrive), arrival_method="phone",
                       departure_at=at(leave) if leave else None, departure_method="phone" if leave else None)
        self.s.add(a)
        self.s.flush()
        return a

    def alert(self, kind: str, v: Visit | None, w: Worker | None, when: str, **kw: int) -> None:
        raise_alert(self.s, kind=kind, visit_id=v.id if v else None, worker_id=w.id if w else None,
                    resident_id=self.res.id, at=at(when), due_at=at(when), **kw)


def rows_by_ref(s: Session, settings) -> dict[str, dict]:
    return {r["visit_ref"]: r for r in board_rows(s, DAY, "", NOW, settings)}


def test_every_alert_kind_shows_as_its_state_and_the_counts_add_up(settings):
    factory = factory_for(settings)
    with factory() as s:
        w = World(s)
        v_noreply = w.visit("11:30", "12:30", w.w1)
        w.alert(AlertKind.NO_REPLY, v_noreply, w.w1, "11:40")
        v_late = w.visit("11:15", "12:30", w.w1)  # late deadline 11:45, nobody yet
        w.alert(AlertKind.LATE, v_late, w.w1, "11:45")
        v_late_after = w.visit("09:00", "10:30", w.w2)  # arrived 10:12: 72 min late, then stayed 48 of 90
        w.came(v_late_after, w.w2, "10:12", "11:00")
        w.alert(AlertKind.LATE, v_late_after, w.w2, "09:30")
        v_short = w.visit("08:00", "09:00", w.w1)
        a_short = w.came(v_short, w.w1, "08:00", "08:10")
        w.alert(AlertKind.SHORT_VISIT, v_short, w.w1, "08:10", attendance_id=a_short.id)
        v_missed = w.visit("07:00", "07:30", w.w2)
        w.alert(AlertKind.MISSED, v_missed, w.w2, "07:30")
        v_nodep = w.visit("10:00", "10:30", w.w1)
        a_nodep = w.came(v_nodep, w.w1, "10:02")
        w.alert(AlertKind.NO_DEPARTURE, v_nodep, w.w1, "11:00", attendance_id=a_nodep.id)
        v_double = w.visit("06:00", "07:00", w.w1, w.w2)
        w.came(v_double, w.w1, "06:00", "07:00")
        w.came(v_double, w.w2, "06:20", "07:00")  # 20 min after the first: apart, but not short
        w.alert(AlertKind.DOUBLE_UP_APART, v_double, None, "06:15")
        v_sub = w.visit("05:00", "05:30", w.w1)
        a_sub = w.came(v_sub, w.w2, "05:00", "05:30", kind="substitute")
        w.alert(AlertKind.SUBSTITUTE, v_sub, w.w2, "05:00", attendance_id=a_sub.id)
        a_uns = w.came(None, w.w2, "04:00", "04:30", kind="unscheduled")  # no visit: not a board row
        w.alert(AlertKind.UNSCHEDULED, None, w.w2, "04:00", attendance_id=a_uns.id)
        v_done = w.visit("04:00", "05:00", w.w1)
        w.came(v_done, w.w1, "04:01", "05:00")
        v_onsite = w.visit("11:50", "12:40", w.w2)
        w.came(v_onsite, w.w2, "11:52")
        v_due = w.visit("13:00", "13:30", w.w1)
        v_cancel = w.visit("14:00", "14:30", w.w1, status="cancelled")
        s.commit()
        rows = rows_by_ref(s, settings)
        got = {ref: (r["state"], r["note"]) for ref, r in rows.items()}
        assert got[v_noreply.visit_ref] == (State.NO_REPLY, "worker reported no reply at the door")
        assert got[v_late.visit_ref] == (State.LATE, "not arrived, 45 min after the start")
        assert got[v_late_after.visit_ref] == (State.LATE, "arrived 72 min late")
        assert got[v_short.visit_ref] == (State.SHORT_VISIT, "stayed 10 of 60 min")
        assert got[v_missed.visit_ref] == (State.MISSED, "no arrival by the planned end")
        assert got[v_nodep.visit_ref] == (State.NO_DEPARTURE, "no departure logged, 90 min after the planned end")
        assert got[v_double.visit_ref] == (State.DONE, "double-up: second worker not there in time")
        assert got[v_sub.visit_ref] == (State.DONE, "")
        assert got[v_done.visit_ref] == (State.DONE, "")
        assert got[v_onsite.visit_ref] == (State.ON_SITE, "")
        assert got[v_due.visit_ref] == (State.DUE, "")
        assert got[v_cancel.visit_ref] == (State.CANCELLED, "")
        assert len(rows) == 12  # the unscheduled attendance has no visit, so no row
        counts = count_states(list(rows.values()))
        assert sum(counts.values()) == len(rows)
        assert counts[State.LATE] == 2 and counts[State.DONE] == 3 and counts[State.NO_REPLY] == 1
        # Workers by name as well as number; the substitute is marked as such.
        sub = rows[v_sub.visit_ref]["workers"]
        assert [(p["number"], p["name"], p["kind"]) for p in sub] == [("1001", "Wendy Walker", "scheduled"),
                                                                     ("1002", "Sam Smith", "substitute")]


def test_a_failed_login_alert_changes_no_visit_and_a_no_reply_then_arrival_is_on_site(settings):
    factory = factory_for(settings)
    with factory() as s:
        w = World(s)
        v = w.visit("11:45", "12:45", w.w1)
        raise_alert(s, kind=AlertKind.FAILED_LOGIN, resident_id=w.res.id, at=at("11:35"),
                    key="failed_login:line:+442086989911:2026031011")
        s.commit()
        assert rows_by_ref(s, settings)[v.visit_ref]["state"] == State.DUE
        w.alert(AlertKind.NO_REPLY, v, w.w1, "11:50")
        w.came(v, w.w1, "11:55")  # the resident opened the door after all
        s.commit()
        row = rows_by_ref(s, settings)[v.visit_ref]
        assert (row["state"], row["note"]) == (State.ON_SITE, "no reply reported earlier")


def test_the_visit_page_uses_the_boards_word_and_lists_its_alerts(settings):
    from web.board import alert_rules

    factory = factory_for(settings)
    with factory() as s:
        w = World(s)
        v = w.visit("10:00", "10:30", w.w1)
        a = w.came(v, w.w1, "10:02")
        w.alert(AlertKind.NO_DEPARTURE, v, w.w1, "11:00", attendance_id=a.id)
        s.commit()
        board = rows_by_ref(s, settings)[v.visit_ref]
        detail = _visit_detail(s, v.id, NOW, alert_rules(settings), None)
        assert (detail["state"], detail["state_note"]) == (board["state"], board["note"]) == (
            State.NO_DEPARTURE, "no departure logged, 90 min after the planned end")
        assert [(x["label"], x["status"]) for x in detail["alerts"]] == [("no departure", "open")]
