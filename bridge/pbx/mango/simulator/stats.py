"""Call history as `stats/result` returns it (mango.md §3.1, PDF §3.4.1): one CSV row per leg.

Built from the `/events/call` and `/events/recording` notifications the simulator has played: `;` between
fields, `\\n` between rows, no quoting, columns in the order of the request's `fields`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .poster import NotificationLike

DEFAULT_FIELDS = (
    "records",
    "start",
    "finish",
    "answer",
    "from_extension",
    "from_number",
    "to_extension",
    "to_number",
    "disconnect_reason",
    "line_number",
    "location",
)
ALL_FIELDS = (*DEFAULT_FIELDS, "create", "entry_id")
MAX_PERIOD_SECONDS = 31 * 24 * 3600  # "no more than a month"


class StatsRequestError(ValueError):
    """A `stats/request` Mango would refuse (answered with result 3100)."""


@dataclass
class LegRow:
    """What the history knows about one leg (`call_id`)."""

    entry_id: str
    call_id: str
    create: int = 0
    start: int = 0
    finish: int = 0
    answer: int = 0
    from_extension: str = ""
    from_number: str = ""
    to_extension: str = ""
    to_number: str = ""
    disconnect_reason: str = ""
    line_number: str = ""
    location: str = ""
    records: list[str] = field(default_factory=list)

    def value(self, name: str) -> str:
        if name == "records":
            return "[" + ",".join(self.records) + "]"
        value = getattr(self, name)
        return str(value) if value is not None else ""


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def legs_from_notifications(notifications: Iterable[NotificationLike]) -> list[LegRow]:
    """Fold call and recording notifications into one row per leg, ordered by start time."""
    calls: dict[str, list[Mapping[str, Any]]] = {}
    recordings: dict[str, list[str]] = {}
    added: dict[str, list[str]] = {}
    for note in notifications:
        payload = note.payload
        if note.path.strip("/") == "events/call" and payload.get("call_id"):
            calls.setdefault(str(payload["call_id"]), []).append(payload)
        elif note.path.strip("/") == "events/recording" and payload.get("call_id"):
            ids = recordings.setdefault(str(payload["call_id"]), [])
            if payload.get("recording_id") and payload["recording_id"] not in ids:
                ids.append(str(payload["recording_id"]))
        elif note.path.strip("/") == "events/record/added" and payload.get("entry_id"):
            added.setdefault(str(payload["entry_id"]), []).append(str(payload.get("recording_id", "")))

    rows: list[LegRow] = []
    created: dict[str, int] = {}
    for call_id, events in calls.items():
        events.sort(key=lambda p: (_int(p.get("seq")), _int(p.get("timestamp"))))
        row = LegRow(entry_id=_text(events[0].get("entry_id")), call_id=call_id)
        stamps = [_int(p.get("timestamp")) for p in events]
        row.start = min(stamps)
        row.finish = max(stamps)
        for payload in events:
            from_ = payload.get("from") or {}
            to = payload.get("to") or {}
            row.from_extension = row.from_extension or _text(from_.get("extension"))
            row.from_number = row.from_number or _text(from_.get("number"))
            row.to_extension = row.to_extension or _text(to.get("extension"))
            row.to_number = row.to_number or _text(to.get("number"))
            row.line_number = row.line_number or _text(
                to.get("line_number") or from_.get("line_number") or payload.get("line_number")
            )
            row.location = _text(payload.get("location") or payload.get("locaton")) or row.location
            if payload.get("call_state") == "Connected" and not row.answer:
                row.answer = _int(payload.get("timestamp"))
            if payload.get("call_state") == "Disconnected":
                row.finish = _int(payload.get("timestamp"))
                row.disconnect_reason = _text(payload.get("disconnect_reason"))
        row.records = list(recordings.get(call_id, []))
        created[row.entry_id] = min(created.get(row.entry_id, row.start), row.start)
        rows.append(row)
    for row in rows:
        row.create = created[row.entry_id]
    # A recording known only from /events/record/added goes to the first answered leg of its entry.
    for entry_id, ids in added.items():
        legs = [r for r in rows if r.entry_id == entry_id]
        known = {rid for r in legs for rid in r.records}
        missing = [rid for rid in ids if rid and rid not in known]
        target = next((r for r in legs if r.answer), None)
        if missing and target is not None:
            target.records.extend(missing)
    rows.sort(key=lambda r: (r.start, r.entry_id, r.call_id))
    return rows


def parse_fields(text: str | None) -> tuple[str, ...]:
    """The request's `fields` string ("records, start, ...") as a tuple; the default set when absent."""
    if text is None or not str(text).strip():
        return DEFAULT_FIELDS
    names = tuple(part.strip() for part in str(text).split(",") if part.strip())
    unknown = [n for n in names if n not in ALL_FIELDS]
    if unknown:
        raise StatsRequestError(f"unknown stats field(s): {', '.join(unknown)}")
    return names


def _party_matches(filter_: Mapping[str, Any] | None, extension: str, number: str) -> bool:
    if not filter_:
        return True
    want_ext = _text(filter_.get("extension"))
    want_num = _text(filter_.get("number"))
    if want_ext and want_ext != extension:
        return False
    return not (want_num and want_num != number)


def select_rows(rows: Sequence[LegRow], request: Mapping[str, Any]) -> list[LegRow]:
    """Apply a `stats/request` filter: the period (by leg start) and the from/to/call_party parties."""
    try:
        date_from = int(request["date_from"])
        date_to = int(request["date_to"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StatsRequestError("date_from and date_to must be Unix timestamps") from exc
    if date_to < date_from or date_to - date_from > MAX_PERIOD_SECONDS:
        raise StatsRequestError("the period must be at most one month, date_from <= date_to")
    call_party = request.get("call_party")
    if call_party and (request.get("from") or request.get("to")):
        raise StatsRequestError("call_party cannot be combined with from/to")
    selected = []
    for row in rows:
        if not date_from <= row.start <= date_to:
            continue
        if call_party and not (
            _party_matches(call_party, row.from_extension, row.from_number)
            or _party_matches(call_party, row.to_extension, row.to_number)
        ):
            continue
        if not _party_matches(request.get("from"), row.from_extension, row.from_number):
            continue
        if not _party_matches(request.get("to"), row.to_extension, row.to_number):
            continue
        selected.append(row)
    return selected


def render_csv(rows: Iterable[LegRow], fields: Sequence[str] = DEFAULT_FIELDS) -> str:
    """`;`-separated fields, `\\n`-separated rows, no quoting (values never hold reserved characters)."""
    return "\n".join(";".join(row.value(name) for name in fields) for row in rows)
