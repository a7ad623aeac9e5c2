"""Writing and reading the raw notification log (`raw_events`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Select, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bridge.store.engine import reader
from bridge.store.schema import raw_events
from bridge.store.write_lock import write_transaction


@dataclass(frozen=True)
class RawRecord:
    """A signed, parsed notification ready to be stored."""

    path: str
    dedup_key: str
    entry_id: str | None
    payload: str
    received_at: float


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


# -- quarantine: events the processor could not fold ------------------------------------------------------

ERROR_LIMIT = 1000

# Waiting to be folded: neither processed nor quarantined.
UNPROCESSED: ColumnElement[bool] = and_(
    raw_events.c.processed_at.is_(None), raw_events.c.quarantined_at.is_(None)
)


def pending(limit: int) -> Select[Any]:
    """The oldest `limit` raw events waiting to be folded (by `ix_raw_events_unprocessed`)."""
    columns = [raw_events.c[name] for name in ("id", "path", "entry_id", "payload", "received_at")]
    return select(*columns).where(UNPROCESSED).order_by(raw_events.c.id).limit(limit)


@dataclass(frozen=True)
class QuarantinedEvent:
    """A raw event set aside by the processor, with the reason."""

    id: int
    path: str
    entry_id: str | None
    received_at: float
    quarantined_at: float
    error: str


def quarantine(conn: Connection, ids: Sequence[int], error: str, now: float) -> int:
    """Set unprocessed raw events aside with `error` (bounded); returns how many were set aside."""
    if not ids:
        return 0
    return conn.execute(
        update(raw_events)
        .where(raw_events.c.id.in_(list(ids)), UNPROCESSED)
        .values(quarantined_at=now, error=error[:ERROR_LIMIT])
    ).rowcount


def count_quarantined(conn: Connection) -> int:
    query = select(func.count()).select_from(raw_events).where(raw_events.c.quarantined_at.is_not(None))
    return conn.execute(query).scalar_one()


def list_quarantined(engine: Engine, limit: int = 100) -> list[QuarantinedEvent]:
    """Quarantined events, newest first."""
    query = (
        select(
            raw_events.c.id,
            raw_events.c.path,
            raw_events.c.entry_id,
            raw_events.c.received_at,
            raw_events.c.quarantined_at,
            raw_events.c.error,
        )
        .where(raw_events.c.quarantined_at.is_not(None))
        .order_by(raw_events.c.id.desc())
        .limit(limit)
    )
    with reader(engine).connect() as conn:
        return [QuarantinedEvent(*(tuple(row[:5]) + (row.error or "",))) for row in conn.execute(query)]


def release_quarantined(engine: Engine, event_id: int) -> bool:
    """Put a quarantined event back to be folded again; False when it is not quarantined."""
    with write_transaction(engine) as conn:
        done = conn.execute(
            update(raw_events)
            .where(raw_events.c.id == event_id, raw_events.c.quarantined_at.is_not(None))
            .values(quarantined_at=None, error=None)
        ).rowcount
    return bool(done)


def quarantine_state(engine: Engine, event_id: int) -> tuple[str, str | None] | None:
    """('processed' | 'quarantined' | 'waiting', error) for a raw event, or None if there is none."""
    query = select(raw_events.c.processed_at, raw_events.c.quarantined_at, raw_events.c.error).where(
        raw_events.c.id == event_id
    )
    with reader(engine).connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    if row.quarantined_at is not None:
        return "quarantined", row.error
    return ("processed" if row.processed_at is not None else "waiting"), None
