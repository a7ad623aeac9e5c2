"""Working hours: per weekday, in the site's time zone (`zoneinfo`), with holiday dates.

Pure functions and a frozen dataclass; no I/O. Times are wall-clock times in the site's zone; an
interval whose end is before its start runs past midnight into the next day (its after-midnight part
belongs to the day it started on, so a holiday closes both parts). "24:00" is the end of the day.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_SEARCH_DAYS = 400


class ScheduleError(ValueError):
    """The working hours cannot be understood; the message names the bad part."""


def _minutes(hours: str, minutes: str, text: str, *, end: bool) -> int:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and (m or not end)):
        raise ScheduleError(f"{text!r}: times run from 00:00 to 24:00")
    return h * 60 + m


def parse_interval(text: str) -> tuple[int, int]:
    """'09:00-18:00' -> (540, 1080) minutes; an end before the start runs past midnight."""
    match = _INTERVAL.match(text)
    if not match:
        raise ScheduleError(f"{text!r}: write working hours as HH:MM-HH:MM, e.g. 09:00-18:00")
    start = _minutes(match[1], match[2], text, end=False)
    stop = _minutes(match[3], match[4], text, end=True) or 1440  # "22:00-00:00" ends at midnight
    if start == stop:
        raise ScheduleError(f"{text!r}: the interval is empty")
    return start, stop


def timezone(name: str) -> ZoneInfo:
    """The zone for an IANA name such as Europe/Moscow; `ScheduleError` if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r}: use an IANA name such as Europe/Moscow") from None


def _day_names(spec: str) -> list[str]:
    names: list[str] = []
    for part in spec.split(","):
        part = part.strip().lower()
        if "-" in part:
            first, _, last = part.partition("-")
            if first not in WEEKDAYS or last not in WEEKDAYS:
                raise ScheduleError(f"{part!r}: days are {', '.join(WEEKDAYS)}")
            i, j = WEEKDAYS.index(first), WEEKDAYS.index(last)
            names.extend(WEEKDAYS[i : j + 1] if i <= j else WEEKDAYS[i:] + WEEKDAYS[: j + 1])
        elif part in WEEKDAYS:
            names.append(part)
        else:
            raise ScheduleError(f"{part!r}: days are {', '.join(WEEKDAYS)}")
    return names


def parse_hours_spec(spec: str) -> dict[str, list[str]]:
    """'mon-fri 09:00-18:00; sat 10:00-14:00,15:00-17:00' -> {'mon': ['09:00-18:00'], ...}.

    Days not named are closed. 'daily' is short for mon-sun; 'mon-sun 00:00-24:00' is always open.
    """
    hours: dict[str, list[str]] = {day: [] for day in WEEKDAYS}
    for clause in spec.split(";"):
        clause = clause.strip()
        if not clause:
            continue
        days, _, intervals = clause.partition(" ")
        days = "mon-sun" if days.lower() == "daily" else days
        if not intervals.strip():
            raise ScheduleError(f"{clause!r}: give days, then intervals, e.g. 'mon-fri 09:00-18:00'")
        parts = [p.strip() for p in intervals.split(",") if p.strip()]
        for part in parts:
            parse_interval(part)
        for day in _day_names(days):
            hours[day].extend(parts)
    return {day: value for day, value in hours.items() if value}


@dataclass(frozen=True)
class Schedule:
    """When the managers take calls. Build it with `Schedule.build`."""

    zone: ZoneInfo
    weekly: tuple[tuple[tuple[int, int], ...], ...]  # per weekday (Monday first): (start, end) minutes
    holidays: frozenset[date]

    @classmethod
    def build(
        cls, zone: str, hours: Mapping[str, Sequence[str]], holidays: Iterable[date | str] = ()
    ) -> Schedule:
        unknown = set(hours) - set(WEEKDAYS)
        if unknown:
            raise ScheduleError(f"unknown day(s) {', '.join(sorted(unknown))}: use {', '.join(WEEKDAYS)}")
        weekly = tuple(tuple(sorted(parse_interval(text) for text in hours.get(day, ()))) for day in WEEKDAYS)
        days = frozenset(d if isinstance(d, date) else date.fromisoformat(d) for d in holidays)
        return cls(timezone(zone), weekly, days)

    def intervals_on(self, day: date) -> list[tuple[int, int]]:
        """The open (start, end) minutes of a local date, including yesterday's overnight spill."""
        result: list[tuple[int, int]] = []
        yesterday = day - timedelta(days=1)
        if yesterday not in self.holidays:
            for start, end in self.weekly[yesterday.weekday()]:
                if end < start:
                    result.append((0, end))
        if day not in self.holidays:
            for start, end in self.weekly[day.weekday()]:
                result.append((start, end if end > start else 1440))
        return sorted(result)

    def local(self, at: datetime | float) -> datetime:
        moment = datetime.fromtimestamp(at, UTC) if isinstance(at, int | float) else at
        if moment.tzinfo is None:
            raise ValueError("give an aware datetime or Unix seconds")
        return moment.astimezone(self.zone)

    def is_open(self, at: datetime | float) -> bool:
        local = self.local(at)
        minute = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 60e6
        return any(start <= minute < end for start, end in self.intervals_on(local.date()))

    def next_opening(self, at: datetime | float) -> datetime | None:
        """`at` itself (in UTC) when open, else the next moment the schedule opens; None if never."""
        local = self.local(at)
        if self.is_open(local):
            return local.astimezone(UTC)
        for offset in range(_SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            for start, _end in self.intervals_on(day):
                wall = datetime.combine(day, time(start // 60, start % 60), tzinfo=self.zone)
                moment = wall.astimezone(UTC)
                if moment > local:
                    return moment
        return None

    @property
    def never_open(self) -> bool:
        return not any(self.weekly)
