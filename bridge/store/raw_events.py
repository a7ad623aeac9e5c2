"""Writing and reading the raw notification log (`raw_events`)."""

from __future__ import annotations

import sqlite3
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


_SQLITE_INSERT = (
    "INSERT INTO raw_events (path, dedup_key, entry_id, payload, received_at) VALUES {} "
    "ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key"
)


def insert_raw_events_sqlite(db: sqlite3.Connection, records: Sequence[RawRecord]) -> set[str]:
    """The hot path on SQLite: one multi-row INSERT ... RETURNING on a raw connection, one commit.

    `db` must be in autocommit mode (isolation_level=None); the batch is at most a few hundred rows,
    well under SQLite's parameter limit.
    """
    unique: dict[str, RawRecord] = {}
    for record in records:
        unique.setdefault(record.dedup_key, record)
    if not unique:
        return set()
    sql = _SQLITE_INSERT.format(",".join(["(?,?,?,?,?)"] * len(unique)))
    params = [
        value
        for r in unique.values()
        for value in (r.path, r.dedup_key, r.entry_id, r.payload, r.received_at)
    ]
    db.execute("BEGIN IMMEDIATE")
    try:
        fresh = {row[0] for row in db.execute(sql, params)}
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return fresh
