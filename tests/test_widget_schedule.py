"""Working hours: weekdays, time zones, holidays, overnight intervals, DST, next opening (pure logic)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from widget.schedule import Schedule, ScheduleError, parse_hours_spec, parse_interval

WEEKDAYS_9_18 = {day: ["09:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_open_inside_the_weekday_hours_in_the_sites_time_zone() -> None:
    moscow = Schedule.build("Europe/Moscow", WEEKDAYS_9_18)
    # Monday 2025-03-03: 06:00 UTC is 09:00 in Moscow (UTC+3).
    assert moscow.is_open(utc(2025, 3, 3, 6, 0))
    assert not moscow.is_open(utc(2025, 3, 3, 5, 59))
    assert moscow.is_open(utc(2025, 3, 3, 14, 59))
    assert not moscow.is_open(utc(2025, 3, 3, 15, 0))  # 18:00 is closed: the end is exclusive


def test_same_moment_differs_by_zone() -> None:
    moment = utc(2025, 3, 3, 6, 30)  # 09:30 in Moscow, 06:30 in London
    assert Schedule.build("Europe/Moscow", WEEKDAYS_9_18).is_open(moment)
    assert not Schedule.build("Europe/London", WEEKDAYS_9_18).is_open(moment)


def test_weekend_and_holiday_are_closed_and_next_opening_skips_them() -> None:
    schedule = Schedule.build("Europe/Moscow", WEEKDAYS_9_18, holidays=[date(2025, 3, 10)])
    saturday = utc(2025, 3, 8, 9, 0)
    assert not schedule.is_open(saturday)
    # Monday the 10th is a holiday: next opening is Tuesday 09:00 Moscow = 06:00 UTC.
    assert schedule.next_opening(saturday) == utc(2025, 3, 11, 6, 0)
    assert not schedule.is_open(utc(2025, 3, 10, 8, 0))


def test_next_opening_is_now_when_open_and_later_today_before_opening() -> None:
    schedule = Schedule.build("Europe/Moscow", WEEKDAYS_9_18)
    now = utc(2025, 3, 3, 7, 0)
    assert schedule.next_opening(now) == now
    assert schedule.next_opening(utc(2025, 3, 3, 4, 0)) == utc(2025, 3, 3, 6, 0)
    assert schedule.next_opening(utc(2025, 3, 3, 16, 0)) == utc(2025, 3, 4, 6, 0)


def test_overnight_interval_runs_into_the_next_day() -> None:
    schedule = Schedule.build("UTC", {"fri": ["22:00-02:00"]})
    assert schedule.is_open(utc(2025, 3, 7, 23, 0))  # Friday night
    assert schedule.is_open(utc(2025, 3, 8, 1, 59))  # Saturday small hours belong to Friday
    assert not schedule.is_open(utc(2025, 3, 8, 2, 0))
    assert not schedule.is_open(utc(2025, 3, 7, 1, 0))  # Friday small hours: Thursday had no night
    holiday = Schedule.build("UTC", {"fri": ["22:00-02:00"]}, holidays=["2025-03-07"])
    assert not holiday.is_open(utc(2025, 3, 8, 1, 0))


def test_always_open_and_never_open() -> None:
    always = Schedule.build("Asia/Almaty", parse_hours_spec("daily 00:00-24:00"))
    assert always.is_open(utc(2025, 1, 1, 0, 0)) and always.is_open(utc(2025, 7, 6, 23, 59))
    never = Schedule.build("UTC", {})
    assert never.never_open and never.next_opening(utc(2025, 1, 1)) is None


def test_daylight_saving_change_keeps_wall_clock_hours() -> None:
    berlin = Schedule.build("Europe/Berlin", WEEKDAYS_9_18)
    # Winter: 09:00 CET = 08:00 UTC. Summer (after 30 March 2025): 09:00 CEST = 07:00 UTC.
    assert berlin.next_opening(utc(2025, 3, 28, 18, 0)) == utc(2025, 3, 31, 7, 0)
    assert berlin.is_open(utc(2025, 3, 27, 8, 0)) and not berlin.is_open(utc(2025, 3, 27, 7, 30))
    assert berlin.is_open(utc(2025, 3, 31, 7, 0))


def test_hours_spec_and_interval_parsing() -> None:
    assert parse_hours_spec("mon-fri 09:00-18:00; sat 10:00-14:00,15:00-17:00") == {
        **WEEKDAYS_9_18,
        "sat": ["10:00-14:00", "15:00-17:00"],
    }
    assert parse_hours_spec("fri-mon 10:00-12:00").keys() == {"fri", "sat", "sun", "mon"}
    assert parse_interval("22:00-00:00") == (1320, 1440)
    for bad in ("9-18", "09:00-09:00", "25:00-26:00", "09:60-10:00", "24:00-10:00"):
        with pytest.raises(ScheduleError):
            parse_interval(bad)
    with pytest.raises(ScheduleError, match="days are"):
        parse_hours_spec("weekdays 09:00-18:00")
    with pytest.raises(ScheduleError, match="unknown time zone"):
        Schedule.build("Mars/Olympus", {})
