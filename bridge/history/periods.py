"""The period of a history import: dates checked, then split into requests Mango accepts.

Mango's `stats/request` takes at most one month (mango.md §3.1); a period is split into chunks of at most
`CHUNK_DAYS` whole days in the panel's time zone, each from 00:00:00 of its first day to 23:59:59 of its
last (`date_to` is inclusive, as Mango compares leg start times with both ends).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CHUNK_DAYS = 7
"""Days per `stats/request`: well inside Mango's one-month limit, and a progress step a person notices."""

MAX_DAYS = 366
"""The longest period one import may cover."""


class PeriodError(ValueError):
    """The dates cannot be imported. The message says why in plain words; `kind` (bad_date, order,
    future, too_long, zone) and `values` let the panel say it in the user's language."""

    def __init__(self, message: str, kind: str, **values: object) -> None:
        super().__init__(message)
        self.kind = kind
        self.values = values


@dataclass(frozen=True)
class Chunk:
    """One `stats/request`: epoch seconds, both ends inclusive."""

    first_day: date
    last_day: date
    date_from: int
    date_to: int


def parse_day(text: str | None, name: str) -> date:
    """`YYYY-MM-DD` into a date, or PeriodError naming the field."""
    value = (text or "").strip()
    if not value:
        raise PeriodError(f"{name}: give a date as YYYY-MM-DD", "bad_date", value="")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PeriodError(
            f"{name}: {value!r} is not a date; use YYYY-MM-DD, e.g. 2026-03-01", "bad_date", value=value
        ) from None


def zone(name: str) -> ZoneInfo:
    """The time zone `name`, or PeriodError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(
            f"unknown time zone {name!r}; use a name such as Europe/Moscow", "zone", zone=name
        ) from None


def check_period(first: date, last: date, tz: ZoneInfo, *, now: float | None = None) -> None:
    """PeriodError unless `first`..`last` is a real, past-or-today, not too long period."""
    if last < first:
        raise PeriodError(
            f"the period ends ({last}) before it starts ({first})", "order", first=first, last=last
        )
    today = datetime.now(tz).date() if now is None else datetime.fromtimestamp(now, tz).date()
    if first > today:
        raise PeriodError(
            f"the period starts in the future ({first}; today is {today})", "future", first=first, today=today
        )
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise PeriodError(
            f"the period is {days} days long; import at most {MAX_DAYS} days at a time",
            "too_long",
            days=days,
            limit=MAX_DAYS,
        )


def _midnight(day: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(day, time.min, tz).timestamp())


def split(first: date, last: date, tz: ZoneInfo, chunk_days: int = CHUNK_DAYS) -> list[Chunk]:
    """Consecutive chunks covering `first`..`last` (inclusive days in `tz`), oldest first."""
    if chunk_days < 1:
        raise ValueError("chunk_days must be at least 1")
    chunks: list[Chunk] = []
    day = first
    while day <= last:
        end = min(last, day + timedelta(days=chunk_days - 1))
        after = end + timedelta(days=1)
        chunks.append(Chunk(day, end, _midnight(day, tz), _midnight(after, tz) - 1))
        day = after
    return chunks
