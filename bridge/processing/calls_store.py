"""Reading and writing the tracker's snapshots (`calls`, `legs`, `recordings`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from bridge.store.schema import calls, legs, recordings

_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert_statement(dialect_name: str, table: Table, keys: tuple[str, ...]) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE for `table`, built once per dialect (building it is costly)."""
    cache_key = (dialect_name, table.name)
    if cache_key not in _UPSERTS:
        dialect = sqlite if dialect_name == "sqlite" else postgresql
        stmt = dialect.insert(table)
        update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        _UPSERTS[cache_key] = stmt.on_conflict_do_update(index_elements=list(keys), set_=update)
    return _UPSERTS[cache_key]


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    if rows:
        conn.execute(_upsert_statement(conn.dialect.name, table, tuple(keys)), rows)


def load_emitted(conn: Connection, entry_id: str) -> tuple[frozenset[str], bool]:
    """The CallEvent keys already emitted for a call, and whether the call row exists."""
    row = conn.execute(select(calls.c.emitted).where(calls.c.entry_id == entry_id)).first()
    if row is None:
        return frozenset(), False
    return frozenset(json.loads(row.emitted)), True


@dataclass
class SnapshotRows:
    """The rows of one or more `TrackResult`s, built before a write transaction so it stays short."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    legs: list[dict[str, Any]] = field(default_factory=list)
    recordings: list[dict[str, Any]] = field(default_factory=list)

    def add(self, result: Any, *, last_event_at: float | None, now: float) -> None:
        call = asdict(result.call)
        call["extensions"] = json.dumps(list(call.get("extensions") or ()))
        call["emitted"] = json.dumps(sorted(result.emitted))
        call["last_event_at"] = last_event_at
        call["updated_at"] = now
        self.calls.append(call)
        self.legs.extend(asdict(leg) for leg in result.legs)
        self.recordings.extend({**asdict(rec), "updated_at": now} for rec in result.recordings)

    def extend(self, other: SnapshotRows) -> None:
        """Add the rows of `other` (another call's)."""
        self.calls.extend(other.calls)
        self.legs.extend(other.legs)
        self.recordings.extend(other.recordings)


def save_rows(conn: Connection, rows: SnapshotRows) -> None:
    """Upsert prepared snapshot rows: one statement per table, however many calls."""
    _upsert(conn, calls, rows.calls, ["entry_id"])
    _upsert(conn, legs, rows.legs, ["call_id"])
    _upsert(conn, recordings, rows.recordings, ["recording_id"])


def save_snapshot(
    conn: Connection,
    result: Any,
    *,
    last_event_at: float | None,
    now: float,
) -> None:
    """Persist a `TrackResult`: the call row (with emitted keys), its legs and recordings."""
    rows = SnapshotRows()
    rows.add(result, last_event_at=last_event_at, now=now)
    save_rows(conn, rows)


def row_to_dict(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    if "extensions" in data and isinstance(data["extensions"], str):
        data["extensions"] = json.loads(data["extensions"])
    data.pop("emitted", None)
    return data


def legs_of(conn: Connection, entry_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    ids = list(entry_ids)
    result: dict[str, list[dict[str, Any]]] = {entry_id: [] for entry_id in ids}
    if not ids:
        return result
    query = select(legs).where(legs.c.entry_id.in_(ids)).order_by(legs.c.appeared_at, legs.c.seq)
    for row in conn.execute(query):
        result[row.entry_id].append(dict(row._mapping))
    return result


def recordings_of(conn: Connection, entry_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    ids = list(entry_ids)
    result: dict[str, list[dict[str, Any]]] = {entry_id: [] for entry_id in ids}
    if not ids:
        return result
    for row in conn.execute(select(recordings).where(recordings.c.entry_id.in_(ids))):
        result[row.entry_id].append(dict(row._mapping))
    return result
