"""Writing and reading the raw notification log (`raw_events`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from bridge.store.schema import raw_events

if TYPE_CHECKING:
    from bridge.ingest.writer import RawRecord


def _insert_ignoring_duplicates(conn: Connection) -> Any:
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    return dialect.insert(raw_events).on_conflict_do_nothing(index_elements=["dedup_key"])


def insert_raw_events(conn: Connection, records: Sequence[RawRecord]) -> set[str]:
    """Insert records, skipping dedup keys already stored; return the keys that were new."""
    if not records:
        return set()
    keys = [r.dedup_key for r in records]
    existing = set(
        conn.execute(select(raw_events.c.dedup_key).where(raw_events.c.dedup_key.in_(keys))).scalars()
    )
    rows, fresh = [], set()
    for record in records:
        if record.dedup_key in existing or record.dedup_key in fresh:
            continue
        fresh.add(record.dedup_key)
        rows.append(
            {
                "path": record.path,
                "dedup_key": record.dedup_key,
                "entry_id": record.entry_id,
                "payload": record.payload,
                "received_at": record.received_at,
            }
        )
    if rows:
        # on-conflict guards against a concurrent writer in another process inserting the same key.
        conn.execute(_insert_ignoring_duplicates(conn), rows)
    return fresh
