"""Writing imported calls: one `calls` row per call, with its legs and recordings, never over a known call.

A call already in the store (received live, or imported before) is left exactly as it is: rows are
inserted with ON CONFLICT DO NOTHING, so re-running an import changes nothing and a call that arrives
live at the same moment wins. No raw events and no outbox rows are written, so the processor and the
connectors never see imported calls; the call row carries the tracker's emitted keys, so should the
same call's live events ever arrive, they do not announce it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from bridge.history.calls import fold_history, usable
from bridge.pbx.mango.stats import StatsRow
from bridge.store.schema import calls, legs, recordings
from bridge.store.write_lock import write_transaction

BATCH = 200  # calls per transaction: short write-lock holds next to the live writers


@dataclass(frozen=True)
class Written:
    """What one batch of report rows did to the store."""

    rows: int = 0  # report rows read (legs)
    imported: int = 0  # new calls written
    skipped: int = 0  # calls already in the store
    unusable: int = 0  # rows without an entry id or a start time


def _insert_new(conn: Connection, table: Table, rows: list[dict[str, Any]], key: str) -> int:
    if not rows:
        return 0
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    inserted = 0
    for row in rows:
        stmt = dialect.insert(table).values(**row).on_conflict_do_nothing(index_elements=[key])
        inserted += conn.execute(stmt.returning(table.c[key])).first() is not None
    return inserted


def _known(conn: Connection, entry_ids: Sequence[str]) -> set[str]:
    found = conn.execute(select(calls.c.entry_id).where(calls.c.entry_id.in_(list(entry_ids))))
    return {row.entry_id for row in found}


def _write_call(conn: Connection, entry_id: str, rows: Sequence[StatsRow], now: float) -> bool:
    result = fold_history(entry_id, rows, now=now)
    call = asdict(result.call)
    call.update(
        extensions=json.dumps(list(call["extensions"])),
        emitted=json.dumps(sorted(result.emitted)),
        last_event_at=None,
        updated_at=now,
    )
    if not _insert_new(conn, calls, [call], "entry_id"):
        return False  # it arrived live meanwhile
    _insert_new(conn, legs, [asdict(leg) for leg in result.legs], "call_id")
    _insert_new(
        conn, recordings, [{**asdict(rec), "updated_at": now} for rec in result.recordings], "recording_id"
    )
    return True


def group_rows(rows: Iterable[StatsRow]) -> tuple[dict[str, list[StatsRow]], int]:
    """Usable rows by entry id (report order kept), and how many rows were unusable."""
    groups: dict[str, list[StatsRow]] = {}
    unusable = 0
    for row in rows:
        if usable(row):
            groups.setdefault(str(row.entry_id), []).append(row)
        else:
            unusable += 1
    return groups, unusable


def write_calls(engine: Engine, rows: Sequence[StatsRow], *, now: float | None = None) -> Written:
    """Store the calls of `rows` (one report) that the store does not know yet."""
    now = time.time() if now is None else now
    groups, unusable = group_rows(rows)
    entry_ids = list(groups)
    imported = skipped = 0
    for start in range(0, len(entry_ids), BATCH):
        batch = entry_ids[start : start + BATCH]
        with write_transaction(engine) as conn:
            assert isinstance(conn, Connection)
            known = _known(conn, batch)
            for entry_id in batch:
                if entry_id not in known and _write_call(conn, entry_id, groups[entry_id], now):
                    imported += 1
                else:
                    skipped += 1
    return Written(rows=len(rows), imported=imported, skipped=skipped, unusable=unusable)
