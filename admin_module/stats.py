"""Statistics per employee and per day, week or month (pure functions over call rows).

Definitions (the same as the docs' table, and what the tests compute by hand):
- a call belongs to `missed.employee_of(call)` (who answered, else responsible, else the first that rang);
- its period is the day / ISO week (starting Monday) / month of `started_at` in the account's time zone;
- incoming / outgoing: by direction; answered: incoming calls that were answered; missed: the tracker's
  `missed` flag; average wait: mean `wait_seconds` of answered incoming calls; average talk: mean
  `talk_seconds` of answered calls of either direction; called back: share of missed calls with a
  follow-up (see `missed.follow_ups`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from admin_module.missed import FollowUp, employee_of, is_answered

PERIODS = ("day", "week", "month")
ALL = "*"  # the employee key of the totals row


def period_of(started_at: float, period: str, tz: ZoneInfo) -> str:
    local = datetime.fromtimestamp(started_at, tz)
    if period == "day":
        return local.date().isoformat()
    if period == "week":
        return (local.date() - timedelta(days=local.weekday())).isoformat()
    if period == "month":
        return f"{local.year:04d}-{local.month:02d}"
    raise ValueError(f"unknown period {period!r}; expected one of {', '.join(PERIODS)}")


@dataclass
class Row:
    employee: str  # extension, "" for calls nobody took, ALL for totals
    period: str
    incoming: int = 0
    outgoing: int = 0
    answered: int = 0
    missed: int = 0
    called_back: int = 0
    _waits: list[int] = field(default_factory=list, repr=False)
    _talks: list[int] = field(default_factory=list, repr=False)

    @property
    def avg_wait(self) -> float | None:
        return sum(self._waits) / len(self._waits) if self._waits else None

    @property
    def avg_talk(self) -> float | None:
        return sum(self._talks) / len(self._talks) if self._talks else None

    @property
    def called_back_share(self) -> float | None:
        return self.called_back / self.missed if self.missed else None

    def add(self, call: Mapping[str, Any], follow_up: FollowUp | None) -> None:
        direction = call.get("direction")
        answered = is_answered(call)
        if direction == "incoming":
            self.incoming += 1
            if answered:
                self.answered += 1
                if call.get("wait_seconds") is not None:
                    self._waits.append(int(call["wait_seconds"]))
        elif direction == "outgoing":
            self.outgoing += 1
        if answered and call.get("talk_seconds") is not None and direction in ("incoming", "outgoing"):
            self._talks.append(int(call["talk_seconds"]))
        if call.get("missed"):
            self.missed += 1
            if follow_up is not None and follow_up.done:
                self.called_back += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "employee": self.employee,
            "period": self.period,
            "incoming": self.incoming,
            "outgoing": self.outgoing,
            "answered": self.answered,
            "missed": self.missed,
            "avg_wait": self.avg_wait,
            "avg_talk": self.avg_talk,
            "called_back": self.called_back,
            "called_back_share": self.called_back_share,
        }


def compute(
    calls: Iterable[Mapping[str, Any]],
    follow_ups: Mapping[str, FollowUp],
    *,
    period: str,
    tz: ZoneInfo,
) -> list[Row]:
    """One row per (employee, period), sorted by period then employee, then one ALL row per period."""
    rows: dict[tuple[str, str], Row] = {}
    for call in calls:
        if call.get("started_at") is None or call.get("direction") not in ("incoming", "outgoing"):
            continue
        when = period_of(float(call["started_at"]), period, tz)
        follow_up = follow_ups.get(call["entry_id"])
        for who in (employee_of(call) or "", ALL):
            rows.setdefault((when, who), Row(who, when)).add(call, follow_up)
    return [rows[key] for key in sorted(rows, key=lambda k: (k[0], k[1] == ALL, k[1]))]


def totals_by_period(rows: Iterable[Row]) -> list[Row]:
    return [row for row in rows if row.employee == ALL]


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    seconds = round(value)
    return f"{seconds // 60}:{seconds % 60:02d}"


def fmt_share(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"
