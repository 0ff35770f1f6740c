"""The on-call rota: overnight entries, clock-change nights, gaps, and who is rung when."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from ivr.db import unit_of_work
from scheduler.oncall import (
    OfficeHours,
    RotaError,
    board_warning,
    local_range,
    on_rota,
    rota_gaps,
    who_to_ring,
)
from scheduler.oncall_models import RotaEntry
from tests.helpers import factory_for
from web.models import User

LONDON = ZoneInfo("Europe/London")
T = dt.time


def utc(y, mo, d, h, mi=0):
    return dt.datetime(y, mo, d, h, mi, tzinfo=dt.UTC)


def test_overnight_entry_is_one_range_across_midnight():
    start, end = local_range(dt.date(2026, 3, 10), T(20), T(8), LONDON)  # GMT: local = UTC
    assert (start, end) == (utc(2026, 3, 10, 20), utc(2026, 3, 11, 8))
    start, end = local_range(dt.date(2026, 7, 1), T(20), T(8), LONDON)  # BST: UTC+1
    assert (start, end) == (utc(2026, 7, 1, 19), utc(2026, 7, 2, 7))
    # Same start and end: a whole day.
    assert local_range(dt.date(2026, 3, 10), T(9), T(9), LONDON)[1] == utc(2026, 3, 11, 9)


def test_clock_change_nights_are_as_long_as_they_really_are():
    # Last Sunday of October 2026 (25th): 02:00 BST becomes 01:00 GMT, the night has 13 hours.
    start, end = local_range(dt.date(2026, 10, 24), T(20), T(8), LONDON)
    assert (start, end) == (utc(2026, 10, 24, 19), utc(2026, 10, 25, 8)) and end - start == dt.timedelta(hours=13)
    # Last Sunday of March 2026 (29th): 01:00 GMT becomes 02:00 BST, 11 hours.
    start, end = local_range(dt.date(2026, 3, 28), T(20), T(8), LONDON)
    assert (start, end) == (utc(2026, 3, 28, 20), utc(2026, 3, 29, 7)) and end - start == dt.timedelta(hours=11)


def test_a_time_the_clocks_skip_is_refused_and_a_repeated_one_covers_the_whole_hour():
    with pytest.raises(RotaError, match="does not exist on 29 Mar 2026"):
        local_range(dt.date(2026, 3, 29), T(1, 30), T(8), LONDON)
    with pytest.raises(RotaError, match="end time 01:30"):
        local_range(dt.date(2026, 3, 28), T(20), T(1, 30), LONDON)
    # 01:30 happens twice on 25 October: an end means the second (01:30 GMT), a start the first (00:30 UTC).
    assert local_range(dt.date(2026, 10, 24), T(20), T(1, 30), LONDON)[1] == utc(2026, 10, 25, 1, 30)
    assert local_range(dt.date(2026, 10, 25), T(1, 30), T(8), LONDON)[0] == utc(2026, 10, 25, 0, 30)


def test_office_hours_and_the_stretches_outside_them():
    office = OfficeHours(("mon", "tue", "wed", "thu", "fri"), T(9), T(17))
    assert office.is_open(utc(2026, 3, 10, 9)) and not office.is_open(utc(2026, 3, 10, 17))
    assert office.is_open(utc(2026, 7, 1, 8))  # 09:00 BST
    assert not office.is_open(utc(2026, 3, 14, 12))  # Saturday
    # Friday 13 March 12:00 → Monday 16 March 12:00: closed from Fri 17:00 to Mon 09:00.
    assert office.closed_intervals(utc(2026, 3, 13, 12), utc(2026, 3, 16, 12)) == [
        (utc(2026, 3, 13, 17), utc(2026, 3, 16, 9))]
    assert OfficeHours(()).closed_intervals(utc(2026, 3, 13, 12), utc(2026, 3, 13, 13)) == [
        (utc(2026, 3, 13, 12), utc(2026, 3, 13, 13))]


def _users(factory):
    with unit_of_work(factory) as s:
        people = [User(username=n, role=r, password_hash="-", phone_e164=p, active=a) for n, r, p, a in (
            ("alice", "coordinator", "+447700900001", True), ("bob", "coordinator", "+447700900002", True),
            ("mgr", "manager", "+447700900009", True), ("gone", "coordinator", "+447700900003", False))]
        s.add_all(people)
        s.flush()
        return {u.username: u.id for u in people}


def _entry(factory, user_id, start, end, position="on_call"):
    with unit_of_work(factory) as s:
        s.add(RotaEntry(user_id=user_id, position=position, starts_at=start, ends_at=end))


def test_who_is_rung_overnight_across_midnight_and_at_the_end_of_the_shift(settings):
    factory = factory_for(settings)
    ids = _users(factory)
    _entry(factory, ids["alice"], *local_range(dt.date(2026, 3, 10), T(20), T(8), LONDON))
    with factory() as s:
        for moment in (utc(2026, 3, 10, 20), utc(2026, 3, 10, 23, 59), utc(2026, 3, 11, 0, 1),
                       utc(2026, 3, 11, 7, 59)):
            person = who_to_ring(s, "on_call", moment)
            assert person is not None and (person.username, person.phone, person.why) == (
                "alice", "+447700900001", "on the rota")
        # 08:00 is the end (exclusive): a gap, so the manager.
        gap = who_to_ring(s, "on_call", utc(2026, 3, 11, 8))
        assert gap is not None and (gap.username, gap.why) == ("mgr", "rota gap: the manager")
        # Nobody second on the rota: that step is skipped (None), not the manager twice.
        assert who_to_ring(s, "second", utc(2026, 3, 10, 22)) is None
        assert who_to_ring(s, "manager", utc(2026, 3, 10, 22)).username == "mgr"


def test_on_the_clock_change_night_the_extra_hour_is_covered(settings):
    factory = factory_for(settings)
    ids = _users(factory)
    _entry(factory, ids["bob"], *local_range(dt.date(2026, 10, 24), T(20), T(8), LONDON))
    with factory() as s:
        # 07:30 UTC on 25 Oct is 07:30 GMT: still Bob's (under a naive "+12 h" it would be 06:00 UTC, a gap).
        assert who_to_ring(s, "on_call", utc(2026, 10, 25, 7, 30)).username == "bob"
        assert who_to_ring(s, "on_call", utc(2026, 10, 24, 19)).username == "bob"  # 20:00 BST
        assert who_to_ring(s, "on_call", utc(2026, 10, 24, 18, 59)).username == "mgr"


def test_overlapping_entries_latest_wins_and_an_inactive_user_falls_back_to_the_manager(settings):
    factory = factory_for(settings)
    ids = _users(factory)
    _entry(factory, ids["alice"], utc(2026, 3, 10, 17), utc(2026, 3, 11, 9))
    _entry(factory, ids["bob"], utc(2026, 3, 10, 22), utc(2026, 3, 11, 2))  # Bob swaps in for part of it
    _entry(factory, ids["gone"], utc(2026, 3, 12, 17), utc(2026, 3, 13, 9))
    with factory() as s:
        assert on_rota(s, utc(2026, 3, 10, 21)).user_id == ids["alice"]
        assert who_to_ring(s, "on_call", utc(2026, 3, 10, 23)).username == "bob"
        assert who_to_ring(s, "on_call", utc(2026, 3, 11, 3)).username == "alice"
        assert who_to_ring(s, "on_call", utc(2026, 3, 12, 20)).username == "mgr"


def test_gaps_out_of_hours_and_the_board_warning(settings):
    factory = factory_for(settings)
    ids = _users(factory)
    office = OfficeHours(("mon", "tue", "wed", "thu", "fri"), T(9), T(17))
    # Friday 13 March: covered Fri 17:00 → Sat 09:00 and Sun 09:00 → Mon 09:00; Saturday day to Sunday is a gap.
    _entry(factory, ids["alice"], *local_range(dt.date(2026, 3, 13), T(17), T(9), LONDON))
    _entry(factory, ids["bob"], *local_range(dt.date(2026, 3, 15), T(9), T(9), LONDON))
    with factory() as s:
        assert rota_gaps(s, utc(2026, 3, 13, 12), utc(2026, 3, 16, 12), office) == [
            (utc(2026, 3, 14, 9), utc(2026, 3, 15, 9))]
        assert board_warning(s, utc(2026, 3, 13, 12), office, hours=12) == ""  # nothing within 12 h
        warning = board_warning(s, utc(2026, 3, 13, 12), office)
        assert warning == ("The on-call rota has a gap Sat 14/03 09:00–Sun 15/03 09:00: "
                           "alerts then ring the manager (mgr).")
        now_warning = board_warning(s, utc(2026, 3, 14, 10), office)
        assert now_warning == ("Nobody is on the on-call rota now (until Sun 15/03 09:00): "
                               "alerts ring the manager (mgr).")
        # Two gaps within 3 days: the first, "and later".
        assert board_warning(s, utc(2026, 3, 14, 10), office, hours=72).endswith(
            "(until Sun 15/03 09:00) and later: alerts ring the manager (mgr).")
        assert board_warning(s, utc(2026, 3, 20, 10), OfficeHours(())) == (
            "Nobody is on the on-call rota now (for the next week): alerts ring the manager (mgr).")
