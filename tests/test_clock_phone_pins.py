"""Local time, phone numbers and PIN hashing: the small rules everything else leans on."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from ivr.clock import LocalTimeError, format_local, local_day_bounds, parse_local, zone
from ivr.phone import PhoneNumberError, caller_e164, mask, normalise
from ivr.pins import PinHasher, PinKeyError, load_or_create_key

LONDON = zone("Europe/London")


def test_bst_local_time_is_one_hour_ahead_of_utc():
    assert parse_local("2026-06-01 09:00", LONDON) == dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)


def test_time_in_spring_gap_is_refused():
    with pytest.raises(LocalTimeError, match="does not exist"):
        parse_local("2026-03-29 01:30", LONDON)


def test_time_that_happens_twice_is_refused_without_offset_and_accepted_with_one():
    with pytest.raises(LocalTimeError, match="happens twice"):
        parse_local("2026-10-25 01:30", LONDON)
    assert parse_local("2026-10-25 01:30+01:00", LONDON) == dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)
    assert parse_local("2026-10-25 01:30+00:00", LONDON) == dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)


def test_clock_change_day_is_25_hours_long():
    start, end = local_day_bounds(dt.date(2026, 10, 25), LONDON)
    assert end - start == dt.timedelta(hours=25)
    start, end = local_day_bounds(dt.date(2026, 3, 29), LONDON)
    assert end - start == dt.timedelta(hours=23)


def test_format_local_shows_london_time():
    assert format_local(dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC), LONDON) == "2026-07-01 13:00"


@pytest.mark.parametrize("spelling", ["020 8698 9911", "02086989911", "+44 20 8698 9911", "+44 (0)20 8698 9911",
                                      "0044 20 8698 9911", "(020) 8698-9911"])
def test_common_uk_spellings_normalise_to_one_e164(spelling):
    assert normalise(spelling) == "+442086989911"


@pytest.mark.parametrize("callerid", ["", "unknown", "Anonymous", "12", "not a number"])
def test_withheld_or_unusable_caller_id_is_none(callerid):
    assert caller_e164(callerid) is None


def test_invalid_number_error_does_not_echo_the_whole_number():
    with pytest.raises(PhoneNumberError) as info:
        normalise("020 8698 99")
    assert "8698" not in str(info.value)


def test_mask_keeps_only_last_three_digits():
    assert mask("+442086989911") == "*********911"


def test_pin_key_is_created_private_and_reused(tmp_path):
    path = tmp_path / "k" / "carecall.key"
    key = load_or_create_key(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == key
    os.chmod(path, 0o644)
    with pytest.raises(PinKeyError, match="chmod 600"):
        load_or_create_key(path)


def test_same_pin_for_two_workers_hashes_differently(tmp_path):
    hasher = PinHasher(load_or_create_key(tmp_path / "key"))
    assert hasher.hash("1001", "1234") != hasher.hash("1002", "1234")
    other = PinHasher(b"x" * 32)
    assert other.hash("1001", "1234") != hasher.hash("1001", "1234")
