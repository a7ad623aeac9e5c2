"""The call log: filters from the query string onto `bridge.api.calls_query.list_calls`, pages, CSV."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from admin_module.csv_export import csv_lines
from bridge.api.calls_query import STATUSES, CallFilter, list_calls

DIRECTIONS = ("incoming", "outgoing", "internal")
PAGE_SIZE = 25


@dataclass(frozen=True)
class LogFilter:
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    direction: str | None = None
    status: str | None = None
    employee: str | None = None
    number: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> LogFilter:
        """Unknown or malformed values are ignored (a filter never turns into an error page)."""
        digits = "".join(ch for ch in args.get("number", "") if ch.isdigit())[-10:]
        employee = "".join(ch for ch in args.get("employee", "") if ch.isalnum())[:32]
        return cls(
            date_from=_date(args.get("date_from")),
            date_to=_date(args.get("date_to")),
            direction=args.get("direction") if args.get("direction") in DIRECTIONS else None,
            status=args.get("status") if args.get("status") in STATUSES else None,
            employee=employee or None,
            number=digits or None,
        )

    def with_employee(self, extension: str | None) -> LogFilter:
        return dataclasses.replace(self, employee=extension)

    def query_args(self) -> dict[str, str]:
        values = {
            "date_from": self.date_from.isoformat() if self.date_from else "",
            "date_to": self.date_to.isoformat() if self.date_to else "",
            "direction": self.direction or "",
            "status": self.status or "",
            "employee": self.employee or "",
            "number": self.number or "",
        }
        return {k: v for k, v in values.items() if v}

    def call_filter(self, tz: ZoneInfo) -> CallFilter:
        since = datetime.combine(self.date_from, time(), tz).timestamp() if self.date_from else None
        until = (
            datetime.combine(self.date_to + timedelta(days=1), time(), tz).timestamp()
            if self.date_to
            else None
        )
        return CallFilter(
            since=since,
            until=until,
            status=self.status,
            extension=self.employee,
            number_digits=self.number,
            direction=self.direction,
        )


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def page(
    engine: Engine, flt: LogFilter, tz: ZoneInfo, *, cursor: str | None, limit: int = PAGE_SIZE
) -> dict[str, Any]:
    """One page of calls, newest first: {"items": [...], "next_cursor": str | None}."""
    return list_calls(engine, flt.call_filter(tz), limit=limit, cursor=cursor)


def iterate(engine: Engine, flt: LogFilter, tz: ZoneInfo, *, batch: int = 500) -> Iterator[dict[str, Any]]:
    """Every call matching `flt`, newest first, read in batches."""
    cursor: str | None = None
    call_filter = flt.call_filter(tz)
    while True:
        result = list_calls(engine, call_filter, limit=batch, cursor=cursor)
        yield from result["items"]
        cursor = result["next_cursor"]
        if cursor is None:
            return


def load_calls(engine: Engine, since: float | None, until: float | None = None) -> list[dict[str, Any]]:
    """Every call started in [since, until), for statistics and follow-ups."""
    cursor: str | None = None
    items: list[dict[str, Any]] = []
    while True:
        result = list_calls(engine, CallFilter(since=since, until=until), limit=1000, cursor=cursor)
        items.extend(result["items"])
        cursor = result["next_cursor"]
        if cursor is None:
            return items


CSV_COLUMNS = (
    "entry_id",
    "started_at",
    "direction",
    "status",
    "customer_number",
    "line_number",
    "answered_by",
    "responsible",
    "wait_seconds",
    "talk_seconds",
    "duration",
)


def csv_rows(rows: Iterator[dict[str, Any]], tz: ZoneInfo) -> Iterator[list[Any]]:
    """The call log's rows as CSV cells in `CSV_COLUMNS` order, times in `tz`."""
    for row in rows:
        values = []
        for column in CSV_COLUMNS:
            value = row.get(column)
            if column == "started_at" and value is not None:
                value = datetime.fromtimestamp(value, tz).isoformat(timespec="seconds")
            values.append(value)
        yield values


def to_csv(rows: Iterator[dict[str, Any]], tz: ZoneInfo, separator: str = ",") -> Iterator[str]:
    """The call log as CSV lines (a BOM first), see `admin_module.csv_export`."""
    return csv_lines(CSV_COLUMNS, csv_rows(rows, tz), separator)
