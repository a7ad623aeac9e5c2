"""Mango call-history CSV (`stats/result`): one `;`-separated row per call leg, columns as requested.

Format (API v1.9 §3.4.1.2): no header, no quoting, rows end in `\\n` (some servers send `\\r\\n`),
columns follow the `fields` of the `stats/request`. `records` is `[id1,id2]` or `[]`; `answer` is the
answer time, 0 when not answered. Times are Unix epoch seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

KNOWN_FIELDS: tuple[str, ...] = (
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
    "create",
    "entry_id",
)
"""Every column Mango can put in the CSV."""

MANGO_DEFAULT_FIELDS: tuple[str, ...] = KNOWN_FIELDS[:11]
"""What Mango sends when `fields` is omitted (no `create`, no `entry_id`)."""

DEFAULT_FIELDS: tuple[str, ...] = (*MANGO_DEFAULT_FIELDS, "entry_id")
"""What this client asks for by default: Mango's default plus `entry_id`, the key of the call events."""

_INT_FIELDS = frozenset({"start", "finish", "answer", "disconnect_reason", "create"})


@dataclass(frozen=True)
class StatsRow:
    """One call leg. A field that was not requested, or came empty, is None (`records` is empty)."""

    line_no: int
    records: tuple[str, ...] = ()
    start: int | None = None
    finish: int | None = None
    answer: int | None = None
    from_extension: str | None = None
    from_number: str | None = None
    to_extension: str | None = None
    to_number: str | None = None
    disconnect_reason: int | None = None
    line_number: str | None = None
    location: str | None = None
    create: int | None = None
    entry_id: str | None = None
    raw: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def answered(self) -> bool:
        """True when the leg was picked up (`answer` is a time, not 0)."""
        return bool(self.answer)

    @property
    def talk_seconds(self) -> int:
        """Seconds from answer to finish; 0 when not answered or a time is missing."""
        if not self.answer or self.finish is None:
            return 0
        return max(0, self.finish - self.answer)


@dataclass(frozen=True)
class StatsResult:
    """A ready report: the key it was fetched with, its columns and its rows in Mango's order."""

    key: str
    fields: tuple[str, ...]
    rows: tuple[StatsRow, ...]

    def by_entry(self) -> dict[str, list[StatsRow]]:
        """Rows grouped by `entry_id` (the whole call); needs `entry_id` among the fields."""
        if "entry_id" not in self.fields:
            raise ValueError("group by entry needs 'entry_id' in the requested stats fields")
        groups: dict[str, list[StatsRow]] = {}
        for row in self.rows:
            groups.setdefault(row.entry_id or "", []).append(row)
        return groups


def normalise_fields(fields: str | Sequence[str]) -> tuple[str, ...]:
    """Validate a field list (a sequence, or Mango's comma-separated string) and return it as a tuple."""
    names = fields.split(",") if isinstance(fields, str) else list(fields)
    cleaned = tuple(name.strip() for name in names)
    if not cleaned or any(not name for name in cleaned):
        raise ValueError(f"stats fields must be non-empty names, got {fields!r}")
    unknown = [name for name in cleaned if name not in KNOWN_FIELDS]
    if unknown:
        raise ValueError(f"unknown stats field(s) {unknown}; known fields: {', '.join(KNOWN_FIELDS)}")
    if len(set(cleaned)) != len(cleaned):
        raise ValueError(f"stats fields repeat a name: {list(cleaned)}")
    return cleaned


def parse_records(value: str) -> tuple[str, ...]:
    """`[id1,id2]` -> ('id1', 'id2'); `[]` or empty -> (). Brackets are optional (the doc omits them)."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_int(value: str, name: str, line_no: int) -> int | None:
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"stats CSV line {line_no}: column {name!r} should be an integer, got {value!r}"
        ) from None


def parse_row(values: Sequence[str], fields: Sequence[str], line_no: int) -> StatsRow:
    """One already-split row into a `StatsRow`; `values` must line up with `fields`."""
    if len(values) != len(fields):
        expected = f"{len(fields)} columns ({';'.join(fields)})"
        raise ValueError(f"stats CSV line {line_no}: expected {expected}, got {len(values)}")
    raw = {name: value.strip() for name, value in zip(fields, values, strict=True)}
    parsed: dict[str, object] = {}
    for name, value in raw.items():
        if name == "records":
            parsed[name] = parse_records(value)
        elif name in _INT_FIELDS:
            parsed[name] = _parse_int(value, name, line_no)
        else:
            parsed[name] = value or None
    return StatsRow(line_no=line_no, raw=MappingProxyType(raw), **parsed)  # type: ignore[arg-type]


def parse_stats_csv(text: str, fields: Sequence[str] = DEFAULT_FIELDS) -> list[StatsRow]:
    """Parse a `stats/result` body. Blank lines (e.g. the trailing one) are skipped; a header row
    equal to the field names is skipped; a row with the wrong column count raises ValueError naming
    its 1-based line number.
    """
    columns = normalise_fields(fields)
    rows: list[StatsRow] = []
    body = text.removeprefix("\ufeff")
    for index, line in enumerate(body.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        values = line.split(";")
        if not rows and [value.strip() for value in values] == list(columns):
            continue
        rows.append(parse_row(values, columns, index))
    return rows
